//! stackring: the network-identity and membership agent of a clustered appliance.
//!
//! Module map (pure core first, I/O at the edges):
//! - [`snapshot`]: our own types for links, addresses and default routes; events that change them.
//! - [`config`]: YAML (Tempo/dskit keys) → validated [`config::Settings`]; errors name key, value, fix.
//! - [`decide`]: snapshot + settings (+ cluster family, previous identity) → [`decide::Identity`].
pub mod config;
pub mod decide;
pub mod snapshot;
