//! The daemon's moving parts: netlink, the cluster node, gossip membership, systemd, metrics,
//! durable files. Each owns its state; the pure rules they apply live in [`crate::core`].
pub(crate) mod fsutil;
pub(crate) mod membership;
pub(crate) mod metrics;
pub(crate) mod netlink;
pub(crate) mod node;
pub(crate) mod systemd;
