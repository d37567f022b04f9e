//! Gossip datagrams to a real member, as anyone on the internal network can send them (the first
//! byte odd: the rest sent as is, which the seal must refuse) and as a holder of the gossip key
//! could (even: the rest sealed, reaching chitchat's decoder), then whatever state they put in,
//! projected by stackring (`members()`, the `reach` values) in a loop. A panic anywhere in the
//! member aborts the process, which libFuzzer reports.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::UdpSocket;
use std::sync::OnceLock;

fn socket() -> &'static UdpSocket {
    static SOCKET: OnceLock<UdpSocket> = OnceLock::new();
    SOCKET.get_or_init(|| UdpSocket::bind("127.0.0.1:0").expect("a socket"))
}

fuzz_target!(|data: &[u8]| {
    let member = stackring::fuzzing::fuzz_gossip_listener();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let datagram = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        member.seal(rest)
    };
    // Datagrams over the UDP maximum are refused by the kernel, as they would be on the wire.
    if datagram.len() <= 65_507 {
        let _ = socket().send_to(&datagram, member.to);
    }
});
