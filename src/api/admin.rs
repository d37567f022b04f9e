//! Admin requests as they arrive (HTTP JSON bodies, gRPC messages) → typed values for the agent.
//! Both servers use these, so a request is refused with the same words on either.

use crate::core::cluster::{parse_external_addrs, ExternalOp};
use crate::core::config::echo;
use crate::core::net::{parse_address, AddrRole};
use crate::core::refusal::Refusal;
use std::net::IpAddr;

/// `POST /v1/nodes/{id}/external_addr` body.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalChange {
    #[schema(pattern = "^(add|set|remove)$", example = "add")]
    pub action: String,
    /// Single unicast addresses clients can reach (no CIDR, loopback, link-local); at most 64.
    #[schema(example = json!(["198.51.100.7"]))]
    pub addrs: Vec<String>,
}

/// `POST /v1/nodes/{id}/addr` body.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddrChange {
    /// An address peers can dial, of the cluster's family.
    #[schema(example = "2001:db8::7")]
    pub addr: String,
}

/// `action` and `addrs` of an external-address change: an operation and typed addresses.
pub(crate) fn external_change(
    action: &str,
    addrs: &[String],
) -> Result<(ExternalOp, Vec<IpAddr>), Refusal> {
    let op = ExternalOp::parse(action).ok_or_else(|| {
        Refusal::invalid(format!(
            "action: '{}' is not add, set or remove; fix: use one of them",
            echo(action)
        ))
    })?;
    let addrs = parse_external_addrs("addrs", addrs).map_err(Refusal::invalid)?;
    Ok((op, addrs))
}

/// `addr` of an internal-address change: an address peers can dial.
pub(crate) fn addr_change(addr: &str) -> Result<IpAddr, Refusal> {
    parse_address(addr, AddrRole::Advertised).map_err(|p| {
        Refusal::invalid(format!(
            "addr: '{}' {}; fix: {}",
            echo(addr),
            p.problem,
            p.fix
        ))
    })
}
