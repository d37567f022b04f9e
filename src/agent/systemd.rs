//! systemd glue that never fails the daemon: notifications are no-ops without `NOTIFY_SOCKET`,
//! logs go to journald when it is there and to stderr otherwise.

use sd_notify::NotifyState;
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

/// Notifications waiting to be sent before new ones are dropped (with a log line).
const NOTIFY_QUEUE: usize = 64;

/// Sends notification states to `NOTIFY_SOCKET`, in order, from a thread of its own: a service
/// manager that is slow to read (the socket queue holds ~10 datagrams) must never stall the daemon.
/// Without `NOTIFY_SOCKET` this does nothing.
pub(crate) fn notify(states: &[NotifyState<'_>]) {
    static SENDER: OnceLock<Option<SyncSender<String>>> = OnceLock::new();
    let sender = SENDER.get_or_init(|| {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let (tx, rx) = sync_channel::<String>(NOTIFY_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                for message in rx {
                    if let Err(e) = send_datagram(&path, &message) {
                        log::warn!("sd_notify to {}: {e}", path.to_string_lossy());
                    }
                }
            });
        spawned.ok().map(|_| tx)
    });
    let Some(sender) = sender else { return };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    if let Err(TrySendError::Full(m)) = sender.try_send(message) {
        log::warn!(
            "sd_notify queue full, dropped: {}",
            m.trim_end().replace('\n', " ")
        );
    }
}

fn send_datagram(path: &std::ffi::OsStr, message: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // '@' names a socket in the abstract namespace (sd_notify(3)).
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

pub(crate) fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub(crate) fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd ≥ 253 requires for `Type=notify-reload`.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub(crate) fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

pub(crate) fn watchdog_ping() {
    notify(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Installs the logger: journald (with structured fields) when stderr is connected to the journal
/// or `STACKRING_LOG=journal`, plain stderr otherwise.
pub(crate) fn init_logging(verbose: bool) {
    let level = if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let want_journal = match std::env::var("STACKRING_LOG").as_deref() {
        Ok("journal") => true,
        Ok("stderr") => false,
        _ => systemd_journal_logger::connected_to_journal(),
    };
    if want_journal {
        if let Ok(logger) = systemd_journal_logger::JournalLog::new() {
            let logger = logger.with_syslog_identifier("stackring".to_string());
            if logger.install().is_ok() {
                log::set_max_level(level);
                return;
            }
        }
    }
    if log::set_boxed_logger(Box::new(StderrLog)).is_ok() {
        log::set_max_level(level);
    }
}

/// A warning that outsiders can trigger at will (forged relayed changes, refused ring-page
/// forms) is logged at most once per window, with the count suppressed meanwhile in the next
/// one: otherwise any host that reaches a port could fill the journal at thousands of lines a
/// second. One static per message.
pub(crate) struct LogOnce {
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogOnce {
    pub(crate) const EVERY_MS: u64 = 10_000;

    pub(crate) const fn new() -> LogOnce {
        LogOnce {
            last_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(how many were suppressed since the last one)` when this one may be logged.
    pub(crate) fn admit(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_ms.load(Relaxed);
        if now_ms.saturating_sub(last) >= Self::EVERY_MS
            && self
                .last_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Relaxed));
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }

    /// The end of the admitted line: `; N more refused since the last such message`, or nothing.
    pub(crate) fn suppressed(more: u64) -> String {
        if more > 0 {
            format!("; {more} more refused since the last such message")
        } else {
            String::new()
        }
    }
}

/// `LEVEL message key=value …` on stderr; the key-values are what journald would get as fields.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // Library chatter (hyper, h2, tonic) only at debug level and above of their own.
        let target = record.target();
        if !target.starts_with("stackring") && record.level() > log::Level::Warn {
            return;
        }
        struct Fields(String);
        impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
            fn visit_pair(
                &mut self,
                k: log::kv::Key<'kvs>,
                v: log::kv::Value<'kvs>,
            ) -> Result<(), log::kv::Error> {
                self.0
                    .push_str(&format!(" {}={}", k.as_str().to_ascii_uppercase(), v));
                Ok(())
            }
        }
        let mut fields = Fields(String::new());
        let _ = record.key_values().visit(&mut fields);
        let _ = writeln!(
            std::io::stderr().lock(),
            "{:<5} {}{}",
            record.level(),
            record.args(),
            fields.0
        );
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod log_once_tests {
    use super::LogOnce;

    #[test]
    fn logs_once_per_window_and_counts_the_rest() {
        let l = LogOnce::new();
        assert_eq!(l.admit(100_000), Some(0));
        assert_eq!(l.admit(100_001), None);
        assert_eq!(l.admit(105_000), None);
        assert_eq!(l.admit(110_000), Some(2));
        assert_eq!(l.admit(110_000), None);
        assert_eq!(LogOnce::suppressed(0), "");
        assert_eq!(
            LogOnce::suppressed(2),
            "; 2 more refused since the last such message"
        );
    }
}
