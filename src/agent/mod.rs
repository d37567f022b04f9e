//! The daemon's moving parts: netlink, the cluster node, gossip membership, systemd, metrics,
//! durable files. Each owns its state; the pure rules they apply live in [`crate::core`].
pub(crate) mod authguard;
pub(crate) mod files;
pub(crate) mod firstboot;
pub(crate) mod fsutil;
pub(crate) mod gossip_seal;
pub(crate) mod membership;
pub(crate) mod metrics;
pub(crate) mod netlink;
pub(crate) mod node;
pub(crate) mod pki;
pub(crate) mod procstat;
pub(crate) mod reach;
pub(crate) mod sockets;
pub(crate) mod swim;
pub(crate) mod systemd;
pub(crate) mod tls;

use crate::core::state::Published;
use std::sync::Arc;
use tokio::sync::watch;

/// What the daemon publishes (identity or why not, generation), for the servers and the node.
pub(crate) type StateTx = watch::Sender<Arc<Published>>;
pub(crate) type StateRx = watch::Receiver<Arc<Published>>;

/// Seconds since the epoch (0 if the clock is before it).
pub(crate) fn now_unix() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
