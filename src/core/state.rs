//! What the daemon publishes to its servers (HTTP, gRPC) and writes to `identity.env`: the current
//! identity or the reason there is none, with a generation that increases on every change.

use crate::core::decide::{Endpoint, Identity};
use crate::core::snapshot::Family;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) generation: u64,
    /// The last decided identity; kept while not ready so consumers still see the old values.
    pub(crate) identity: Option<Identity>,
    /// Why the node is not ready; `None` when ready.
    pub(crate) not_ready: Option<String>,
}

impl Published {
    pub(crate) fn ready(&self) -> bool {
        self.identity.is_some() && self.not_ready.is_none()
    }

    pub(crate) fn view(&self) -> IdentityView {
        IdentityView::new(
            self.identity.as_ref(),
            self.not_ready.clone(),
            self.generation,
        )
    }
}

/// The JSON shape of an identity, shared by `inspect --json` and `GET /v1/identity`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct IdentityView {
    pub(crate) ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    pub(crate) generation: u64,
    pub(crate) id: Option<String>,
    pub(crate) zone: Option<String>,
    pub(crate) family: Option<Family>,
    pub(crate) family_reason: Option<String>,
    #[schema(value_type = Option<String>)]
    pub(crate) internal_addr: Option<IpAddr>,
    pub(crate) internal_interface: Option<String>,
    #[serde(serialize_with = "crate::core::ipfmt::serialize_list")]
    #[schema(value_type = Vec<String>)]
    pub(crate) external_addrs: Vec<IpAddr>,
    pub(crate) grpc: Option<Endpoint>,
    pub(crate) http: Option<Endpoint>,
    pub(crate) https: Option<Endpoint>,
    pub(crate) gossip: Option<Endpoint>,
}

impl IdentityView {
    pub(crate) fn new(
        identity: Option<&Identity>,
        reason: Option<String>,
        generation: u64,
    ) -> IdentityView {
        IdentityView {
            ready: identity.is_some() && reason.is_none(),
            reason,
            generation,
            id: identity.map(|i| i.id.clone()),
            zone: identity.map(|i| i.zone.clone()),
            family: identity.map(|i| i.family),
            family_reason: identity.map(|i| i.family_reason.clone()),
            internal_addr: identity.map(|i| i.internal_addr),
            internal_interface: identity.map(|i| i.internal_interface.clone()),
            external_addrs: identity
                .map(|i| i.external_addrs.clone())
                .unwrap_or_default(),
            grpc: identity.map(|i| i.grpc),
            http: identity.map(|i| i.http),
            https: identity.map(|i| i.https),
            gossip: identity.map(|i| i.gossip),
        }
    }
}
