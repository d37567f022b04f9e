//! Gossip datagrams as anyone on the internal network can send them, to a real member: chitchat's
//! own datagram decoder (not public, so reached over UDP on loopback) and whatever state the
//! datagrams put in, projected by stackring (`members()`, the `reach` values) in a loop. A panic
//! anywhere in the member aborts the process, which libFuzzer reports.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::UdpSocket;
use std::sync::OnceLock;

fn sender() -> &'static (UdpSocket, std::net::SocketAddr) {
    static SENDER: OnceLock<(UdpSocket, std::net::SocketAddr)> = OnceLock::new();
    SENDER.get_or_init(|| {
        let to = stackring::fuzzing::fuzz_gossip_listener();
        (UdpSocket::bind("127.0.0.1:0").expect("a socket"), to)
    })
}

fuzz_target!(|data: &[u8]| {
    let (socket, to) = sender();
    // Datagrams over the UDP maximum are refused by the kernel, as they would be on the wire.
    if data.len() <= 65_507 {
        let _ = socket.send_to(data, to);
    }
});
