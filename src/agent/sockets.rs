//! Listening sockets as the daemon needs them (HTTP, gRPC, the gossip port's TCP side).

use tokio::net::TcpListener;

/// A TCP listener. `[::]` accepts both families (`IPV6_V6ONLY` off, whatever
/// `net.ipv6.bindv6only` says); an explicit address may be bound before the kernel has it
/// (`IP_FREEBIND`), so a listen address that comes up after the daemon is not a start failure.
pub(crate) fn listen_socket(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    match addr {
        std::net::SocketAddr::V6(v6) => {
            if v6.ip().is_unspecified() {
                socket.set_only_v6(false)?;
            } else {
                socket.set_only_v6(true)?;
                socket.set_freebind_v6(true)?;
            }
        }
        std::net::SocketAddr::V4(v4) => {
            if !v4.ip().is_unspecified() {
                socket.set_freebind_v4(true)?;
            }
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
