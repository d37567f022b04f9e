//! Member projection, pure: what each node published in gossip, plus what the failure detector
//! and the `forget/` keys say, becomes one row per node id (its newest generation), OK or DOWN,
//! LEFT when it said LEAVING before going silent.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `forget/<id>` = the newest generation of `<id>` to hide (set by whichever node forgot it).
pub(crate) const FORGET_PREFIX: &str = "forget/";
/// `override/<id>/<what>` = an admin change for node `<id>`, carried by the node that took it.
pub(crate) const OVERRIDE_PREFIX: &str = "override/";

/// A node's place in the cluster's life cycle, as it publishes it (LEFT is derived, see
/// `MemberView`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeState {
    Joining,
    Active,
    Leaving,
    Left,
}

impl NodeState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "JOINING",
            NodeState::Active => "ACTIVE",
            NodeState::Leaving => "LEAVING",
            NodeState::Left => "LEFT",
        }
    }
}

/// Whether the failure detector hears the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Health {
    Ok,
    Down,
}

impl Health {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Down => "DOWN",
        }
    }
}

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeEntry {
    pub(crate) id: String,
    pub(crate) hostname: String,
    /// JOINING, ACTIVE, LEAVING as published; LEFT in a view when a node that said LEAVING
    /// has gone silent (a graceful stop, unlike a crash, which stays ACTIVE and DOWN).
    pub(crate) state: NodeState,
    pub(crate) family: String,
    pub(crate) addr: String,
    pub(crate) external_addrs: Vec<String>,
    pub(crate) advertised_grpc: String,
    pub(crate) advertised_http: String,
    pub(crate) advertised_gossip: String,
    pub(crate) listen_grpc: String,
    pub(crate) zone: String,
    pub(crate) registered_unix: u64,
    /// Why the node is not ACTIVE (e.g. its new address is not bound), empty otherwise.
    #[serde(default)]
    pub(crate) reason: String,
    /// How many admin changes this node has applied to itself.
    #[serde(default)]
    pub(crate) admin_version: u64,
    /// When (ms) the newest admin change it applied was made: gossiped changes older than this
    /// are already in its entry.
    #[serde(default)]
    pub(crate) applied_ms: u64,
    /// The stackring build the node runs (rladmin's VERSION column).
    #[serde(default)]
    pub(crate) version: String,
    /// When the node's certificate expires (unix seconds; 0 before it has one). It renews
    /// itself once two thirds of its life have passed.
    #[serde(default)]
    pub(crate) cert_expires_unix: u64,
}

/// A member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct MemberView {
    #[serde(flatten)]
    pub(crate) entry: NodeEntry,
    /// OK, or DOWN when the failure detector considers the node dead.
    pub(crate) status: Health,
    pub(crate) last_seen_ms_ago: u64,
    pub(crate) local: bool,
    /// Chitchat generation (start time, ms) of the row shown: `forget` hides this one.
    pub(crate) generation: u64,
    /// The one wording of state and health that the CLI, `/ring` and the JSON all show.
    pub(crate) summary: String,
    /// What the node found probing its peers (`core::reach` encoding), as it published it.
    #[serde(skip)]
    pub(crate) reach: String,
}

impl MemberView {
    pub(crate) fn healthy(&self) -> bool {
        self.status == Health::Ok
    }
}

/// "OK" for a healthy active node; otherwise the health and whatever else an operator should
/// know: `OK, JOINING: <why>`, `OK, LEAVING`, `LEFT, last seen 2.5s ago`, `DOWN, last seen 33s ago`.
pub(crate) fn summary(
    status: Health,
    state: NodeState,
    reason: &str,
    last_seen_ms_ago: u64,
) -> String {
    let seen = match last_seen_ms_ago {
        u64::MAX => "never seen".to_string(),
        ms if ms < 10_000 => format!("last seen {:.1}s ago", ms as f64 / 1000.0),
        ms => format!("last seen {}s ago", ms / 1000),
    };
    let because = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    match (status, state) {
        (Health::Ok, NodeState::Active) => "OK".into(),
        (Health::Ok, state) => format!("OK, {}{because}", state.as_str()),
        (Health::Down, NodeState::Left) => format!("LEFT, {seen}"),
        (Health::Down, _) => format!("DOWN, {seen}"),
    }
}

/// One node state as gossip holds it: a (node id, generation) pair and its published entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GossipRow {
    pub(crate) node_id: String,
    pub(crate) generation: u64,
    /// The `node` key's value, if any (JSON of a [`NodeEntry`]).
    pub(crate) value: Option<String>,
    /// The failure detector hears it (always true for this node itself).
    pub(crate) alive: bool,
    pub(crate) local: bool,
    /// `u64::MAX`: never seen.
    pub(crate) last_seen_ms_ago: u64,
    /// The `reach` key's value, if any.
    pub(crate) reach: Option<String>,
}

/// node id → newest generation some node asked to forget, from `(key, value)` pairs of the
/// `forget/` keys (malformed ones are ignored: anything can arrive over gossip).
pub(crate) fn forgotten<'a>(
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for (key, value) in keys {
        let (Some(id), Ok(cutoff)) = (key.strip_prefix(FORGET_PREFIX), value.parse::<u64>()) else {
            continue;
        };
        let e = out.entry(id.to_string()).or_default();
        *e = (*e).max(cutoff);
    }
    out
}

/// Every node known, one row per node id (its newest generation not forgotten), sorted by id.
/// Rows without a readable entry are skipped (a node that has not published yet, a forgery).
pub(crate) fn project(rows: Vec<GossipRow>, forgotten: &HashMap<String, u64>) -> Vec<MemberView> {
    let mut newest: HashMap<String, MemberView> = HashMap::new();
    for row in rows {
        let Some(mut entry) = row
            .value
            .as_deref()
            .and_then(|v| serde_json::from_str::<NodeEntry>(v).ok())
        else {
            continue;
        };
        let hidden = forgotten
            .get(&row.node_id)
            .is_some_and(|cutoff| row.generation <= *cutoff);
        let older = newest
            .get(&row.node_id)
            .is_some_and(|m| m.generation > row.generation);
        if hidden || older {
            continue;
        }
        let alive = row.local || row.alive;
        if !alive && entry.state == NodeState::Leaving {
            entry.state = NodeState::Left;
        }
        let status = if alive { Health::Ok } else { Health::Down };
        let last_seen_ms_ago = if row.local { 0 } else { row.last_seen_ms_ago };
        let summary = summary(status, entry.state, &entry.reason, last_seen_ms_ago);
        newest.insert(
            row.node_id,
            MemberView {
                entry,
                status,
                last_seen_ms_ago,
                local: row.local,
                generation: row.generation,
                summary,
                reach: row.reach.unwrap_or_default(),
            },
        );
    }
    let mut members: Vec<MemberView> = newest.into_values().collect();
    members.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, state: NodeState) -> String {
        serde_json::to_string(&NodeEntry {
            id: id.into(),
            hostname: id.into(),
            state,
            family: "ipv6".into(),
            addr: "2001:db8::1".into(),
            external_addrs: vec![],
            advertised_grpc: "[2001:db8::1]:9095".into(),
            advertised_http: "[2001:db8::1]:3200".into(),
            advertised_gossip: "[2001:db8::1]:7946".into(),
            listen_grpc: "[::]:9095".into(),
            zone: String::new(),
            registered_unix: 0,
            reason: String::new(),
            admin_version: 0,
            applied_ms: 0,
            version: String::new(),
            cert_expires_unix: 0,
        })
        .unwrap()
    }

    fn row(
        id: &str,
        generation: u64,
        value: Option<String>,
        alive: bool,
        local: bool,
    ) -> GossipRow {
        GossipRow {
            node_id: id.into(),
            generation,
            value,
            alive,
            local,
            last_seen_ms_ago: if alive { 100 } else { 5_000 },
            reach: None,
        }
    }

    /// The rules of the member view, each row a case: the newest generation wins whatever the
    /// order gossip lists them in; `forget` hides generations up to its cutoff (a later restart
    /// shows again); LEAVING then silent is LEFT, ACTIVE then silent is DOWN; a node without a
    /// readable entry (not yet published, or a forgery) is not listed; this node is always OK.
    #[test]
    fn projection_rules() {
        use Health::*;
        use NodeState::*;
        let forget = |pairs: &[(&str, &str)]| forgotten(pairs.iter().copied());
        type Want = Vec<(&'static str, u64, Health, NodeState)>;
        type Case = (&'static str, Vec<GossipRow>, HashMap<String, u64>, Want);
        let cases: Vec<Case> =
            vec![
            (
                "newest generation wins, in either order",
                vec![
                    row("b", 2, Some(entry("b", Active)), true, false),
                    row("b", 1, Some(entry("b", Active)), false, false),
                    row("c", 1, Some(entry("c", Active)), false, false),
                    row("c", 3, Some(entry("c", Joining)), true, false),
                ],
                forget(&[]),
                vec![("b", 2, Ok, Active), ("c", 3, Ok, Joining)],
            ),
            (
                "silent after LEAVING is LEFT; silent while ACTIVE is DOWN",
                vec![
                    row("b", 1, Some(entry("b", Leaving)), false, false),
                    row("c", 1, Some(entry("c", Active)), false, false),
                    row("d", 1, Some(entry("d", Leaving)), true, false),
                ],
                forget(&[]),
                vec![("b", 1, Down, Left), ("c", 1, Down, Active), ("d", 1, Ok, Leaving)],
            ),
            (
                "forget hides up to its cutoff, the newest cutoff counts, a restart shows again",
                vec![
                    row("b", 5, Some(entry("b", Active)), false, false),
                    row("c", 5, Some(entry("c", Active)), false, false),
                    row("c", 9, Some(entry("c", Active)), true, false),
                ],
                forget(&[("forget/b", "3"), ("forget/b", "5"), ("forget/c", "5")]),
                vec![("c", 9, Ok, Active)],
            ),
            (
                "unreadable entries and malformed forget keys are ignored",
                vec![
                    row("b", 1, None, true, false),
                    row("c", 1, Some("{\"id\": 1}".into()), true, false),
                    row("d", 1, Some(entry("d", Active)), true, false),
                ],
                forget(&[("forget/d", "not a number"), ("other/d", "9")]),
                vec![("d", 1, Ok, Active)],
            ),
            (
                "this node is OK even before the failure detector lists it",
                vec![row("a", 1, Some(entry("a", Joining)), false, true)],
                forget(&[]),
                vec![("a", 1, Ok, Joining)],
            ),
        ];
        for (case, rows, forgotten, want) in cases {
            let got: Want = project(rows, &forgotten)
                .into_iter()
                .map(|m| {
                    let id: &'static str = Box::leak(m.entry.id.clone().into_boxed_str());
                    (id, m.generation, m.status, m.entry.state)
                })
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }

    /// One wording of state and health for every view; a node that is joining or was stopped
    /// never reads as plain "OK", and a recent death does not read "0s ago".
    #[test]
    fn summary_shows_health_and_any_state_but_active() {
        let never = u64::MAX;
        use Health::*;
        use NodeState::*;
        for (status, state, reason, ago, want) in [
            (Ok, Active, "", 0, "OK"),
            (Ok, Joining, "", 0, "OK, JOINING"),
            (
                Ok,
                Joining,
                "fd00::9 is not bound",
                0,
                "OK, JOINING: fd00::9 is not bound",
            ),
            (Ok, Leaving, "", 0, "OK, LEAVING"),
            (Down, Left, "", 3_400, "LEFT, last seen 3.4s ago"),
            (Down, Active, "", 850, "DOWN, last seen 0.8s ago"),
            (Down, Active, "", 33_999, "DOWN, last seen 33s ago"),
            (Down, Active, "", never, "DOWN, never seen"),
        ] {
            assert_eq!(
                summary(status, state, reason, ago),
                want,
                "{status:?} {state:?}"
            );
        }
    }
}
