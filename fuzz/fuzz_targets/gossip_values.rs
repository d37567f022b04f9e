//! What stackring decodes out of gossip: chitchat 0.13 decodes the datagrams themselves (its
//! codec is `pub(crate)`, no public API reaches it), then stackring reads two kinds of values out
//! of the keys: a member's `NodeEntry` (JSON) and the admin `Override`s waiting for a down node.
//! A `NodeEntry` that decodes encodes back to the same entry; `newest_override` returns the newest
//! change made after the cut-off, or none, whatever the other values are, and the addresses it
//! carries, when they decode, print back to themselves.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use stackring::clusterd::{newest_override, Override};
use stackring::membership::NodeEntry;
use std::net::IpAddr;

#[derive(Debug, Arbitrary)]
struct Input {
    values: Vec<String>,
    after_ms: u64,
}

fuzz_target!(|input: Input| {
    for v in &input.values {
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
