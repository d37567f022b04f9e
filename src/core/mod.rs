//! The pure core: no I/O, no async. Snapshot + config (+ cluster facts) → identity, join validation,
//! cluster rules, member projection, and the texts operators read. Tested with tables.
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod decide;
pub(crate) mod firewall;
pub(crate) mod firstboot;
pub(crate) mod hosts;
pub(crate) mod ipfmt;
pub(crate) mod members;
pub(crate) mod mix;
pub(crate) mod net;
pub(crate) mod peer;
pub(crate) mod pin;
pub(crate) mod preflight;
pub(crate) mod products;
pub(crate) mod reach;
pub(crate) mod refusal;
pub(crate) mod render;
pub(crate) mod ring;
pub(crate) mod seal;
pub(crate) mod snapshot;
pub(crate) mod state;
pub(crate) mod swim;
pub(crate) mod token;
