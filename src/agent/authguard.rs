//! Password guessing (SPEC §8: "password checks are rate limited per source and shed load with
//! 429, never by timing out a legitimate join").
//!
//! Every credential check (HTTP Basic on the admin calls, gRPC `Join` and `Admin`) goes through one
//! [`AuthGuard`]: a source that keeps failing is told to come back later (exponential backoff, 429
//! with `Retry-After` / `RESOURCE_EXHAUSTED`) without any argon2 work; one source runs at most
//! [`PER_SOURCE_IN_FLIGHT`] checks at a time; and the checks waiting for argon2 are bounded
//! ([`QUEUE_MAX`]): beyond it the answer is an immediate "busy, retry in N s", so a queue of
//! guesses can never grow into a join's timeout. The backoff rule is pure ([`backoff`]).

use crate::agent::metrics::Metrics;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failures a source may make before it has to wait.
pub(crate) const FREE_TRIES: u32 = 5;
/// The longest a source is made to wait.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Checks one source may have waiting or running at once.
pub(crate) const PER_SOURCE_IN_FLIGHT: usize = 2;
/// Checks waiting or running at once, all sources together: at ~40 ms of argon2 each, the last
/// one in the queue waits about a second.
pub(crate) const QUEUE_MAX: usize = 24;
/// Of the queue, the places only sources without a recent failure may take: a flood of guesses
/// (each guessing source has failed) never fills the queue a first-time joiner needs.
pub(crate) const CLEAN_RESERVE: usize = 8;
/// Sources remembered at once (a failure table that cannot grow without bound).
const MAX_SOURCES: usize = 16_384;
/// A source's record is forgotten this long after its last failure (when not blocked).
const FORGET_AFTER: Duration = Duration::from_secs(900);

/// How long a source that has failed `failures` times in a row must wait before its next check.
pub(crate) fn backoff(failures: u32) -> Duration {
    if failures < FREE_TRIES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_TRIES).min(16);
    (Duration::from_secs(1) * (1u32 << doublings)).min(MAX_BACKOFF)
}

pub(crate) use crate::core::cluster::Outcome;

/// Why a check was not passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    /// Wrong or missing credentials (401 / UNAUTHENTICATED).
    Invalid,
    /// The source failed too often: it must wait (429 / RESOURCE_EXHAUSTED).
    Backoff { retry_after: Duration },
    /// The verification queue is full, or the source already has checks running (429).
    Busy { retry_after: Duration },
}

impl Denied {
    /// Whole seconds for `Retry-After` (at least 1).
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Denied::Invalid => None,
            Denied::Backoff { retry_after } | Denied::Busy { retry_after } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
        }
    }

    pub(crate) fn message(&self, source: Option<IpAddr>) -> String {
        let from = source.map(|s| format!(" from {s}")).unwrap_or_default();
        match self {
            Denied::Invalid => {
                "the cluster refused the credentials: check username and password".into()
            }
            Denied::Backoff { .. } => format!(
                "too many failed credential checks{from}; retry after {} s",
                self.retry_after_secs().unwrap_or(1)
            ),
            Denied::Busy { .. } => format!(
                "too many credential checks in progress; retry after {} s",
                self.retry_after_secs().unwrap_or(1)
            ),
        }
    }
}

#[derive(Debug)]
struct Source {
    failures: u32,
    blocked_until: Option<Instant>,
    in_flight: usize,
    last: Instant,
}

pub(crate) struct AuthGuard {
    sources: Mutex<HashMap<IpAddr, Source>>,
    queued: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// A place in the verification queue; dropping it (also on cancellation) gives it back.
struct Ticket<'a> {
    guard: &'a AuthGuard,
    source: IpAddr,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.guard.queued.fetch_sub(1, Ordering::SeqCst);
        let mut sources = self.guard.lock();
        if let Some(s) = sources.get_mut(&self.source) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

/// Checks without a known source (the address could not be read) share one key.
const UNKNOWN: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

impl AuthGuard {
    pub(crate) fn new(metrics: Arc<Metrics>) -> AuthGuard {
        AuthGuard {
            sources: Mutex::new(HashMap::new()),
            queued: AtomicUsize::new(0),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Source>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, reason: &str) {
        self.metrics
            .auth_failures
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    /// Runs `verify` for `source` unless the source must wait or the queue is full.
    pub(crate) async fn check<F>(&self, source: Option<IpAddr>, verify: F) -> Result<(), Denied>
    where
        F: std::future::Future<Output = Outcome>,
    {
        let key = source.unwrap_or(UNKNOWN);
        let _ticket = self.admit(key)?;
        let outcome = verify.await;
        let now = Instant::now();
        let mut sources = self.lock();
        match outcome {
            Outcome::Valid => {
                if let Some(s) = sources.get_mut(&key) {
                    s.failures = 0;
                    s.blocked_until = None;
                }
                Ok(())
            }
            failed => {
                self.fail(match failed {
                    Outcome::WrongUsername => "wrong_username",
                    Outcome::WrongPassword => "wrong_password",
                    Outcome::WrongToken => "wrong_token",
                    _ => "missing",
                });
                if let Some(s) = sources.get_mut(&key) {
                    s.failures = s.failures.saturating_add(1);
                    s.last = now;
                    let wait = backoff(s.failures);
                    if !wait.is_zero() {
                        s.blocked_until = Some(now + wait);
                    }
                }
                Err(Denied::Invalid)
            }
        }
    }

    fn admit(&self, key: IpAddr) -> Result<Ticket<'_>, Denied> {
        let now = Instant::now();
        let mut sources = self.lock();
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&key) {
            sources.retain(|_, s| {
                s.in_flight > 0
                    || s.blocked_until.is_some_and(|t| t > now)
                    || now.duration_since(s.last) < FORGET_AFTER
            });
        }
        let tracked = sources.len() < MAX_SOURCES || sources.contains_key(&key);
        let mut clean = !tracked;
        if tracked {
            let s = sources.entry(key).or_insert(Source {
                failures: 0,
                blocked_until: None,
                in_flight: 0,
                last: now,
            });
            if let Some(until) = s.blocked_until.filter(|t| *t > now) {
                drop(sources);
                self.fail("backoff");
                return Err(Denied::Backoff {
                    retry_after: until - now,
                });
            }
            clean = s.failures == 0;
            if s.in_flight >= PER_SOURCE_IN_FLIGHT {
                drop(sources);
                self.metrics.auth_shed.inc();
                return Err(Denied::Busy {
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        let queued = self.queued.fetch_add(1, Ordering::SeqCst);
        let room = if clean {
            QUEUE_MAX
        } else {
            QUEUE_MAX - CLEAN_RESERVE
        };
        if queued >= room {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            drop(sources);
            self.metrics.auth_shed.inc();
            return Err(Denied::Busy {
                retry_after: Duration::from_secs(1),
            });
        }
        if let Some(s) = sources.get_mut(&key) {
            s.in_flight += 1;
        }
        Ok(Ticket {
            guard: self,
            source: key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cluster::constant_time_eq;

    #[test]
    fn backoff_starts_after_the_free_tries_and_doubles_to_a_cap() {
        for (failures, secs) in [
            (0, 0),
            (FREE_TRIES - 1, 0),
            (FREE_TRIES, 1),
            (FREE_TRIES + 1, 2),
            (FREE_TRIES + 4, 16),
            (FREE_TRIES + 30, MAX_BACKOFF.as_secs()),
        ] {
            assert_eq!(backoff(failures).as_secs(), secs, "{failures}");
        }
    }

    #[test]
    fn usernames_compare_whole() {
        assert!(constant_time_eq(b"admin", b"admin"));
        assert!(!constant_time_eq(b"admin", b"admim"));
        assert!(!constant_time_eq(b"admin", b"admin2"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[tokio::test]
    async fn a_guessing_source_waits_and_others_do_not() {
        let guard = AuthGuard::new(Arc::new(Metrics::new()));
        let (bad, good): (IpAddr, IpAddr) = (
            "2001:db8::66".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        );
        for _ in 0..FREE_TRIES {
            let r = guard
                .check(Some(bad), async { Outcome::WrongPassword })
                .await;
            assert_eq!(r, Err(Denied::Invalid));
        }
        let r = guard.check(Some(bad), async { Outcome::Valid }).await;
        assert!(matches!(r, Err(Denied::Backoff { .. })), "{r:?}");
        assert_eq!(r.unwrap_err().retry_after_secs(), Some(1));
        assert_eq!(
            guard.check(Some(good), async { Outcome::Valid }).await,
            Ok(())
        );
        let text = guard.metrics.render();
        assert!(
            text.contains("stackring_auth_failures_total{reason=\"wrong_password\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("stackring_auth_failures_total{reason=\"backoff\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_source_that_has_failed_cannot_take_the_last_places() {
        let guard = Arc::new(AuthGuard::new(Arc::new(Metrics::new())));
        let dirty: IpAddr = "2001:db8::66".parse().unwrap();
        assert_eq!(
            guard
                .check(Some(dirty), async { Outcome::WrongPassword })
                .await,
            Err(Denied::Invalid)
        );
        guard
            .queued
            .store(QUEUE_MAX - CLEAN_RESERVE, Ordering::SeqCst);
        let r = guard
            .check(Some(dirty), async { Outcome::WrongPassword })
            .await;
        assert!(matches!(r, Err(Denied::Busy { .. })), "{r:?}");
        let clean: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(
            guard.check(Some(clean), async { Outcome::Valid }).await,
            Ok(())
        );
        guard.queued.store(0, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let guard = Arc::new(AuthGuard::new(Arc::new(Metrics::new())));
        let (release, wait) = tokio::sync::watch::channel(false);
        let mut held = Vec::new();
        for i in 0..QUEUE_MAX {
            let (guard, mut wait) = (guard.clone(), wait.clone());
            let source: IpAddr = format!("2001:db8::{:x}", i + 1).parse().unwrap();
            held.push(tokio::spawn(async move {
                guard
                    .check(Some(source), async move {
                        let _ = wait.wait_for(|v| *v).await;
                        Outcome::Valid
                    })
                    .await
            }));
        }
        while guard.queued.load(Ordering::SeqCst) < QUEUE_MAX {
            tokio::task::yield_now().await;
        }
        let r = guard
            .check(Some("2001:db8::ff".parse().unwrap()), async {
                Outcome::Valid
            })
            .await;
        assert!(matches!(r, Err(Denied::Busy { .. })), "{r:?}");
        release.send_replace(true);
        for h in held {
            assert_eq!(h.await.unwrap(), Ok(()));
        }
        assert_eq!(guard.queued.load(Ordering::SeqCst), 0);
        drop(wait);
    }
}
