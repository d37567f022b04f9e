//! `PeerAddr::parse` (`memberlist.join_members`, `cluster.nodes`): what it accepts prints back
//! (Display) to text that parses to the same value, `host_port` is what a resolver takes, and a
//! refusal always says what is wrong and how to write it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stackring::fuzzing::{PeerAddr, PeerHost};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PeerAddr::parse(text) {
        Ok(peer) => {
            let shown = peer.to_string();
            assert_eq!(
                PeerAddr::parse(&shown).as_ref(),
                Ok(&peer),
                "{text:?} printed as {shown:?}"
            );
            assert_ne!(peer.port, Some(0), "{text:?}: port 0 accepted");
            assert!(!shown.contains(char::is_whitespace));
            let hp = peer.host_port(7946);
            match &peer.host {
                PeerHost::Ip(ip) => {
                    let sa: std::net::SocketAddr = hp.parse().expect("host_port of an IP");
                    assert_eq!(sa.ip(), *ip);
                    assert_eq!(sa.port(), peer.port.unwrap_or(7946));
                }
                PeerHost::Name(name) => {
                    assert!(!name.is_empty());
                    assert_eq!(name, &name.to_ascii_lowercase());
                    assert_eq!(hp, format!("{name}:{}", peer.port.unwrap_or(7946)));
                }
            }
        }
        Err(p) => {
            assert!(!p.problem.is_empty() && !p.fix.is_empty(), "{p:?}");
        }
    }
});
