//! Admin request bodies: `POST /v1/nodes/{id}/external_addr` (`ExternalChange`) and
//! `POST /v1/nodes/{id}/addr` (`AddrChange`), parsed by `jsonbody::parse` as the daemon does, then
//! each address by `net::parse_address` in every role. Errors name a key and a fix; an address that parses
//! prints back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stackring::fuzzing::{parse_address, AddrRole, ExternalOp};
use stackring::fuzzing::{AddrChange, ExternalChange};
use stackring::fuzzing::ConfigError;

fn check(e: &ConfigError) {
    assert!(!e.key.is_empty(), "an error without a key: {e:?}");
    assert!(!e.problem.is_empty(), "an error without a problem: {e:?}");
    assert!(!e.fix.is_empty(), "an error without a fix: {e:?}");
    assert!(e.value.chars().count() <= 110, "long echo: {e:?}");
}

fn address(text: &str) {
    for role in [AddrRole::Listen, AddrRole::Usable, AddrRole::Advertised, AddrRole::External] {
        match parse_address(text, role) {
            Ok(ip) => assert_eq!(parse_address(&ip.to_string(), role), Ok(ip)),
            Err(p) => assert!(!p.problem.is_empty() && !p.fix.is_empty(), "{p:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the endpoint, the rest is the body.
    let Some((which, body)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        match stackring::fuzzing::parse_json_body::<ExternalChange>(body) {
            Ok(change) => {
                if let Some(op) = ExternalOp::parse(&change.action) {
                    assert_eq!(op.as_str(), change.action);
                }
                change.addrs.iter().for_each(|a| address(a));
            }
            Err(e) => check(&e),
        }
    } else {
        match stackring::fuzzing::parse_json_body::<AddrChange>(body) {
            Ok(change) => address(&change.addr),
            Err(e) => check(&e),
        }
    }
});
