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
