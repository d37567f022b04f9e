//! `POST /v1/bootstrap/{create_cluster,join_cluster}` bodies: `jsonbody::parse` into a
//! `BootstrapRequest`, then `validate_bootstrap` for both actions. Every error names a key (a JSON
//! path) and a fix and echoes at most ~100 characters of a value; an accepted request holds only
//! valid values (names, addresses, seeds that print back to themselves).
#![no_main]
use libfuzzer_sys::fuzz_target;
use stackring::fuzzing::{valid_name, validate_bootstrap, Action, BootstrapRequest, Seeds};
use stackring::fuzzing::ConfigError;
use stackring::fuzzing::PeerAddr;

const MAX_VALUE_CHARS: usize = 110;

fn check(e: &ConfigError) {
    assert!(!e.key.is_empty(), "an error without a key: {e:?}");
    assert!(!e.problem.is_empty(), "an error without a problem: {e:?}");
    assert!(!e.fix.is_empty(), "an error without a fix: {e:?}");
    assert!(
        e.value.chars().count() <= MAX_VALUE_CHARS,
        "an error echoes {} characters of a value: {e:?}",
        e.value.chars().count()
    );
}

fuzz_target!(|data: &[u8]| {
    let req = match stackring::fuzzing::parse_json_body::<BootstrapRequest>(data) {
        Ok(req) => req,
        Err(e) => return check(&e),
    };
    for action in [Action::Create, Action::Join] {
        match validate_bootstrap(req.clone(), action) {
            Ok(b) => {
                if let Some(name) = &b.cluster_name {
                    assert!(valid_name(name), "accepted cluster name {name:?}");
                }
                if action == Action::Create {
                    assert!(b.cluster_name.is_some(), "create without a name: {b:?}");
                } else {
                    assert!(!b.seeds.is_empty(), "join without seeds: {b:?}");
                }
                if let Some(name) = &b.name {
                    assert!(valid_name(name), "accepted node name {name:?}");
                }
                if let Some(list) = &b.external_addrs {
                    assert!(!list.is_empty(), "an empty external address list was kept");
                }
                let (Seeds::Nodes(seeds) | Seeds::Gossip(seeds)) = &b.seeds;
                for s in seeds {
                    assert_eq!(PeerAddr::parse(&s.to_string()).as_ref(), Ok(s));
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "Err with no error");
                for e in &errors {
                    check(e);
                }
            }
        }
    }
});
