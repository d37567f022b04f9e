//! `cluster::apply_external`, the rule every node applies to an `external_addr add|set|remove`:
//! with at least one address named (the daemon refuses an empty list before) and a current list
//! without duplicates, a result is never empty, has no duplicates, holds what `set`/`add` named
//! and none of what `remove` named; `remove` of an address the node does not have is refused.
//! And `relay_proof` is deterministic and binds its fields (moving a byte between two fields
//! changes it).
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use stackring::fuzzing::{apply_external, proofs_match, relay_proof, ExternalOp};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Arbitrary)]
struct Input {
    current: Vec<Addr>,
    op: u8,
    addrs: Vec<Addr>,
    key: String,
    fields: Vec<String>,
}

/// Small address space, so that lists overlap often.
#[derive(Debug, Arbitrary)]
enum Addr {
    V4(u8),
    V6(u8),
}

impl Addr {
    fn ip(&self) -> IpAddr {
        match self {
            Addr::V4(n) => IpAddr::V4(Ipv4Addr::new(198, 51, 100, n % 16)),
            Addr::V6(n) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, (n % 16) as u16)),
        }
    }
}

fn no_duplicates(list: &[IpAddr]) -> bool {
    list.iter().enumerate().all(|(i, a)| !list[..i].contains(a))
}

fuzz_target!(|input: Input| {
    let mut current: Vec<IpAddr> = Vec::new();
    for a in &input.current {
        if !current.contains(&a.ip()) {
            current.push(a.ip());
        }
    }
    let addrs: Vec<IpAddr> = input.addrs.iter().map(Addr::ip).collect();
    let op = [ExternalOp::Add, ExternalOp::Set, ExternalOp::Remove][input.op as usize % 3];
    let result = apply_external("node1", &current, op, &addrs);
    if !addrs.is_empty() {
        match &result {
            Ok(next) => {
                assert!(
                    !next.is_empty(),
                    "{op:?} {addrs:?} on {current:?}: empty list"
                );
                assert!(
                    no_duplicates(next),
                    "{op:?} {addrs:?} on {current:?}: {next:?}"
                );
                match op {
                    ExternalOp::Set => {
                        assert!(addrs.iter().all(|a| next.contains(a)));
                        assert!(next.iter().all(|a| addrs.contains(a)));
                    }
                    ExternalOp::Add => {
                        assert!(addrs.iter().all(|a| next.contains(a)));
                        assert!(current.iter().all(|a| next.contains(a)));
                        assert!(next
                            .iter()
                            .all(|a| addrs.contains(a) || current.contains(a)));
                    }
                    ExternalOp::Remove => {
                        assert!(addrs.iter().all(|a| !next.contains(a)));
                        assert!(next.iter().all(|a| current.contains(a)));
                        assert_eq!(
                            next.len() + {
                                let mut named: Vec<IpAddr> = addrs.clone();
                                named.sort();
                                named.dedup();
                                named.len()
                            },
                            current.len()
                        );
                    }
                }
                // Applying the same change again changes nothing (set/add are idempotent).
                if op != ExternalOp::Remove {
                    assert_eq!(apply_external("node1", next, op, &addrs).as_ref(), Ok(next));
                }
            }
            Err(refusal) => {
                assert_eq!(op, ExternalOp::Remove, "{op:?} refused: {refusal:?}");
                assert!(!refusal.sub_code.is_empty() && !refusal.description.is_empty());
                assert!(refusal.description.contains("node1"));
            }
        }
    }

    let proof = relay_proof(&input.key, &input.fields);
    assert_eq!(proof.len(), 128);
    assert!(proofs_match(
        &proof,
        &relay_proof(&input.key, &input.fields)
    ));
    if input.fields.len() >= 2 && !input.fields[0].is_empty() {
        // Move the first character of field 0 to the end of field 1: a different change.
        let mut moved = input.fields.clone();
        let c = moved[0].remove(0);
        moved[1].push(c);
        assert!(!proofs_match(&proof, &relay_proof(&input.key, &moved)));
    }
    let other_key = format!("{}x", input.key);
    assert!(!proofs_match(
        &proof,
        &relay_proof(&other_key, &input.fields)
    ));
});
