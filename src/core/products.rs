//! Where Tempo, Loki and Mimir keep their network settings: the key names of each product's rings,
//! as their own reference documents print them. Data only; `check` and `core::render` read it.
//!
//! Sources (read with the `search` tool when this was written):
//! - Tempo: `docs/sources/tempo/configuration/manifest.md` (grafana/tempo): `ingester.lifecycler`
//!   {`address`, `port`, `interface_names` (default `[eth0]`), `enable_inet6`}; `distributor.ring`,
//!   `metrics_generator.ring`, `live_store.ring`, `backend_worker.ring` {`instance_addr`,
//!   `instance_port`, `instance_interface_names` (default `[eth0, en0]`), `enable_inet6`}; the
//!   seed "Configure IPv6" (Tempo 2.x) adds `compactor.ring`, and Tempo's current IPv6 page
//!   (`docs/sources/tempo/configuration/network/ipv6.md`) lists distributor, backend_worker,
//!   metrics_generator and live_store.
//! - Loki: `pkg/loki/common/common.go` (`common.instance_addr`, `common.instance_interface_names`,
//!   `common.ring`) and `pkg/loki/config_wrapper.go` (grafana/loki): `applyInstanceConfigs` and
//!   `applyConfigToRings` copy the common address, port and interface names into every ring
//!   (`ingester.lifecycler`, `distributor.ring`, `ruler.ring`, `query_scheduler.scheduler_ring`,
//!   `compactor.compactor_ring`, `index_gateway.ring`, `pattern_ingester.lifecycler`) and
//!   `common.instance_addr` into `memberlist.advertise_addr`, but not the IPv6 flag: each ring
//!   needs its own `instance_enable_ipv6` (`enable_inet6` in lifecyclers), which is why
//!   grafana/loki#13416 needed dozens of lines. Ring keys: `util.RingConfig`
//!   (`instance_addr`, `instance_port`, `instance_interface_names`, `instance_enable_ipv6`).
//! - Mimir: the configuration reference (`-ingester.ring.*`, `-distributor.ring.*`,
//!   `-compactor.ring.*` written `compactor.sharding_ring`, `-store-gateway.sharding-ring.*`,
//!   `-query-scheduler.ring.*`, `-ruler.ring.*`, `-alertmanager.sharding-ring.*`) and the
//!   query-frontend's own `frontend.instance_*` keys; every one has `instance_enable_ipv6`.
//! - dskit `ring/util.go` `GetInstanceAddr`: a written address is used as it is; only an empty one
//!   makes the ring read `interface_names` and honour the IPv6 flag.

use serde::Serialize;

/// The products whose configuration stackring renders and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Product {
    Tempo,
    Loki,
    Mimir,
}

impl Product {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Product::Tempo => "Tempo",
            Product::Loki => "Loki",
            Product::Mimir => "Mimir",
        }
    }
}

/// One place where a component registers itself (a ring, a lifecycler, the query-frontend).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring {
    /// The section, dotted: `ingester.lifecycler`.
    pub(crate) path: &'static str,
    pub(crate) addr: &'static str,
    pub(crate) port: &'static str,
    pub(crate) interfaces: &'static str,
    pub(crate) inet6: &'static str,
    /// The interfaces read when none are written, when the product fixes them (Tempo); empty when
    /// the product takes the host's private interfaces (Loki, Mimir), which works by itself.
    pub(crate) default_interfaces: &'static [&'static str],
    /// Runs in the product's default single-binary deployment (`target: all`): checked, with the
    /// product's defaults, even when the file leaves the section out.
    pub(crate) core: bool,
}

/// One product's network keys.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) product: Product,
    pub(crate) rings: &'static [Ring],
    /// Keys an unset ring address falls back to, in order (Loki's `common`).
    pub(crate) inherit_addr: &'static [&'static str],
    pub(crate) inherit_port: &'static [&'static str],
    pub(crate) inherit_interfaces: &'static [&'static str],
    /// Keys that also set the gossip advertise address when `memberlist.advertise_addr` is unset.
    pub(crate) inherit_gossip_addr: &'static [&'static str],
    /// IPv6 flags that look shared but are not copied into the rings (Loki's `common.ring`).
    pub(crate) uncopied_inet6: &'static [&'static str],
}

const LIFECYCLER: Ring = Ring {
    path: "",
    addr: "address",
    port: "port",
    interfaces: "interface_names",
    inet6: "enable_inet6",
    default_interfaces: &[],
    core: false,
};

const TEMPO_RING: Ring = Ring {
    path: "",
    addr: "instance_addr",
    port: "instance_port",
    interfaces: "instance_interface_names",
    inet6: "enable_inet6",
    default_interfaces: &["eth0", "en0"],
    core: true,
};

/// dskit's `RingConfig` as Loki and Mimir name it.
const IPV6_RING: Ring = Ring {
    path: "",
    addr: "instance_addr",
    port: "instance_port",
    interfaces: "instance_interface_names",
    inet6: "instance_enable_ipv6",
    default_interfaces: &[],
    core: true,
};

const fn at(path: &'static str, base: Ring, core: bool) -> Ring {
    Ring { path, core, ..base }
}

pub(crate) static TEMPO: Spec = Spec {
    product: Product::Tempo,
    rings: &[
        Ring {
            path: "ingester.lifecycler",
            default_interfaces: &["eth0"],
            core: true,
            ..LIFECYCLER
        },
        at("distributor.ring", TEMPO_RING, true),
        at("compactor.ring", TEMPO_RING, true),
        at("metrics_generator.ring", TEMPO_RING, true),
        Ring {
            path: "live_store.ring",
            default_interfaces: &["eth0"],
            core: false,
            ..TEMPO_RING
        },
        at("backend_worker.ring", TEMPO_RING, false),
    ],
    inherit_addr: &[],
    inherit_port: &[],
    inherit_interfaces: &[],
    inherit_gossip_addr: &[],
    uncopied_inet6: &[],
};

pub(crate) static LOKI: Spec = Spec {
    product: Product::Loki,
    rings: &[
        Ring {
            path: "ingester.lifecycler",
            core: true,
            ..LIFECYCLER
        },
        at("distributor.ring", IPV6_RING, true),
        at("compactor.compactor_ring", IPV6_RING, true),
        at("ruler.ring", IPV6_RING, true),
        at("query_scheduler.scheduler_ring", IPV6_RING, true),
        at("index_gateway.ring", IPV6_RING, true),
        Ring {
            path: "pattern_ingester.lifecycler",
            ..LIFECYCLER
        },
    ],
    inherit_addr: &["common.ring.instance_addr", "common.instance_addr"],
    inherit_port: &["common.ring.instance_port"],
    inherit_interfaces: &[
        "common.ring.instance_interface_names",
        "common.instance_interface_names",
    ],
    inherit_gossip_addr: &["common.instance_addr"],
    uncopied_inet6: &["common.ring.instance_enable_ipv6"],
};

pub(crate) static MIMIR: Spec = Spec {
    product: Product::Mimir,
    rings: &[
        at("ingester.ring", IPV6_RING, true),
        at("distributor.ring", IPV6_RING, true),
        at("compactor.sharding_ring", IPV6_RING, true),
        at("store_gateway.sharding_ring", IPV6_RING, true),
        at("ruler.ring", IPV6_RING, false),
        at("query_scheduler.ring", IPV6_RING, false),
        at("alertmanager.sharding_ring", IPV6_RING, false),
        at("frontend", IPV6_RING, false),
    ],
    inherit_addr: &[],
    inherit_port: &[],
    inherit_interfaces: &[],
    inherit_gossip_addr: &[],
    uncopied_inet6: &[],
};

pub(crate) fn spec(product: Product) -> &'static Spec {
    match product {
        Product::Tempo => &TEMPO,
        Product::Loki => &LOKI,
        Product::Mimir => &MIMIR,
    }
}

impl Ring {
    /// `section.key`, as the operator writes it.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }
}
