//! What stackring decodes out of gossip. chitchat 0.13 decodes the datagrams themselves:
//! `ChitchatEnvelope::deserialize` is `pub(crate)` and the `Delta`/`Digest` types it is made of
//! are private, so no public API decodes a datagram; the one public piece of that codec,
//! `ChitchatId` (node id, generation, gossip address: in every digest and delta), is decoded here
//! from the raw input and must encode back to what decodes to itself. Then stackring reads two
//! kinds of values out of the keys: a member's `NodeEntry` (JSON), its reachability findings (`reach`)
//! and the admin `Override`s waiting for a down node.
//! A `NodeEntry` that decodes encodes back to the same entry; `newest_override` returns the newest
//! change made after the cut-off, or none, whatever the other values are, and the addresses it
//! carries, when they decode, print back to themselves.
#![no_main]
use chitchat::{ChitchatId, Deserializable, Serializable};
use libfuzzer_sys::fuzz_target;
use stackring::fuzzing::{newest_override, Override};
use stackring::fuzzing::NodeEntry;
use std::net::IpAddr;

struct Input {
    values: Vec<String>,
    after_ms: u64,
}

/// Input bytes: a decimal cut-off (ms) on the first line, then gossip values separated by NUL, as
/// the seeds are written (real values, readable).
fn input(data: &[u8]) -> Option<Input> {
    let text = std::str::from_utf8(data).ok()?;
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    Some(Input {
        after_ms: first.trim().parse().unwrap_or(0),
        values: rest.split('\0').map(str::to_string).collect(),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    if let Ok(id) = ChitchatId::deserialize(&mut buf) {
        let bytes = id.serialize_to_vec();
        assert_eq!(bytes.len(), id.serialized_len());
        assert_eq!(bytes.len(), data.len() - buf.len(), "{id:?}");
        assert_eq!(ChitchatId::deserialize(&mut &bytes[..]).ok(), Some(id));
    }
    let Some(input) = input(data) else { return };
    for v in &input.values {
        // A member's reachability findings: what decodes encodes back to the same findings (the
        // encoding is capped in size, so a huge input comes back as a prefix of itself).
        let findings = stackring::fuzzing::decode_reach(v);
        let again = stackring::fuzzing::decode_reach(&stackring::fuzzing::encode_reach(&findings));
        assert!(again.iter().all(|(target, probes)| findings.get(target) == Some(probes)));
        if let Ok(entry) = serde_json::from_str::<NodeEntry>(v) {
            let again = serde_json::to_string(&entry).expect("an entry encodes");
            assert_eq!(serde_json::from_str::<NodeEntry>(&again).ok(), Some(entry));
        }
    }
    let newest = newest_override(input.values.iter().map(String::as_str), input.after_ms);
    let all: Vec<Override> = input
        .values
        .iter()
        .filter_map(|v| serde_json::from_str::<Override>(v).ok())
        .collect();
    match &newest {
        Some(o) => {
            assert!(o.at_ms > input.after_ms);
            assert!(all.iter().all(|other| other.at_ms <= o.at_ms));
            assert!(all.contains(o));
            if let Ok(list) = serde_json::from_value::<Vec<IpAddr>>(o.value.clone()) {
                let texts: Vec<String> = list.iter().map(|a| a.to_string()).collect();
                assert_eq!(
                    serde_json::from_value::<Vec<IpAddr>>(serde_json::json!(texts)).ok(),
                    Some(list)
                );
            }
        }
        None => assert!(all.iter().all(|o| o.at_ms <= input.after_ms)),
    }
});
