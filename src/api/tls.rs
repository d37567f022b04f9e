//! TLS on the servers' sockets. The gRPC port speaks both: a connection that opens with a TLS
//! record is TLS (every node-to-node call: `Join`, `ApplyChange`, `Admin`), any other is
//! plaintext HTTP/2 (the read-only services local programs use: `Identity`, health, reflection,
//! as `grpcurl -plaintext` does). The calls that carry credentials or change state refuse
//! plaintext themselves (`api::grpc`).

use crate::agent::pki;
use crate::agent::systemd::LogOnce;
use crate::agent::tls::NodeTls;
use crate::api::limits::{self, Guarded, Limits};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Who is on the other end of a gRPC connection (in each request's extensions).
#[derive(Clone, Debug)]
pub(crate) struct GrpcPeer {
    pub(crate) remote: SocketAddr,
    pub(crate) tls: bool,
    /// The node id of a client certificate signed by this cluster's CA (verified in the
    /// handshake), when one was presented.
    pub(crate) member: Option<String>,
}

pub(crate) enum GrpcConn {
    Plain(Guarded<TcpStream>, SocketAddr),
    Tls(
        Box<tokio_rustls::server::TlsStream<Guarded<TcpStream>>>,
        SocketAddr,
    ),
}

impl tonic::transport::server::Connected for GrpcConn {
    type ConnectInfo = GrpcPeer;

    fn connect_info(&self) -> GrpcPeer {
        match self {
            GrpcConn::Plain(_, remote) => GrpcPeer {
                remote: *remote,
                tls: false,
                member: None,
            },
            GrpcConn::Tls(stream, remote) => GrpcPeer {
                remote: *remote,
                tls: true,
                member: stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| pki::node_id_of(leaf))
                    .map(|id| id.as_str().to_string()),
            },
        }
    }
}

impl AsyncRead for GrpcConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            GrpcConn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GrpcConn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            GrpcConn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            GrpcConn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            GrpcConn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens a TLS session on an admitted connection, within the first-bytes deadline (a client that
/// stalls in the handshake holds a slot no longer than one that stalls before HTTP/2).
pub(crate) async fn handshake(
    config: Arc<rustls::ServerConfig>,
    stream: Guarded<TcpStream>,
) -> io::Result<tokio_rustls::server::TlsStream<Guarded<TcpStream>>> {
    tokio::time::timeout(
        limits::FIRST_BYTES_TIMEOUT,
        tokio_rustls::TlsAcceptor::from(config).accept(stream),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake too slow"))?
}

/// The gRPC server's connections: admitted (`limits`), each classified and, when TLS, opened in
/// its own task so that a slow handshake never holds up the next accept.
pub(crate) fn grpc_incoming(
    listener: tokio::net::TcpListener,
    limits: Arc<Limits>,
    tls: Arc<NodeTls>,
) -> impl futures::Stream<Item = io::Result<GrpcConn>> {
    let (ready, incoming) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio::spawn(async move {
        loop {
            let (stream, remote, slot) = limits::accept(&listener, &limits, false).await;
            let (ready, tls) = (ready.clone(), tls.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                let peeked =
                    tokio::time::timeout(limits::FIRST_BYTES_TIMEOUT, stream.peek(&mut first))
                        .await;
                if !matches!(peeked, Ok(Ok(1))) {
                    return;
                }
                let guarded = Guarded::new(stream, Some(slot), limits::STALL_TIMEOUT)
                    .first_bytes(limits::H2_FIRST_BYTES, limits::FIRST_BYTES_TIMEOUT);
                let conn = if first[0] == TLS_HANDSHAKE {
                    match handshake(tls.grpc_server(), guarded).await {
                        Ok(s) => GrpcConn::Tls(Box::new(s), remote),
                        Err(e) => {
                            log_refused_certificate(remote, &e);
                            return;
                        }
                    }
                } else {
                    GrpcConn::Plain(guarded, remote)
                };
                let _ = ready.send(Ok(conn)).await;
            });
        }
    });
    AbortOnDrop(
        acceptor,
        tokio_stream::wrappers::ReceiverStream::new(incoming),
    )
}

/// Client certificates refused in a gRPC handshake, logged at most once per [`LogOnce`] window.
static REFUSED_CERT_LOG: LogOnce = LogOnce::new();

/// Says why a gRPC handshake failed when it was the client's certificate (another cluster's CA,
/// expired, not yet valid): the caller reads only a TLS alert. Other failures (timeouts, garbage,
/// a client that gave up) are not logged.
fn log_refused_certificate(remote: SocketAddr, err: &io::Error) {
    let Some(rustls::Error::InvalidCertificate(why)) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return;
    };
    if let Some(more) = REFUSED_CERT_LOG.admit(crate::agent::now_ms()) {
        log::warn!(
            "gRPC: refused the client certificate of {remote}: {why}; only certificates this cluster's CA signed, within their dates, are taken (a node of another cluster, or one whose certificate expired){}",
            LogOnce::suppressed(more)
        );
    }
}

/// The HTTPS listener's connections for [`limits::serve_http`]: admitted (`limits`), each
/// handshake in its own task within the first-bytes deadline (a silent or garbage-sending client
/// never holds up the next accept), with the certificate `tls` holds at that moment (self-signed
/// before the node is a member, its node certificate after: no restart). The accept loop ends
/// when the returned function is dropped (the server stopped).
pub(crate) fn https_incoming(
    listener: tokio::net::TcpListener,
    limits: Arc<Limits>,
    tls: Arc<NodeTls>,
) -> impl FnMut() -> futures::future::BoxFuture<
    'static,
    (
        tokio_rustls::server::TlsStream<Guarded<TcpStream>>,
        SocketAddr,
    ),
> {
    let (ready, incoming) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio::spawn(async move {
        loop {
            let (stream, remote, slot) = limits::accept(&listener, &limits, false).await;
            let (ready, config) = (ready.clone(), tls.https_server());
            tokio::spawn(async move {
                let guarded = Guarded::new(stream, Some(slot), limits::STALL_TIMEOUT);
                if let Ok(tls) = handshake(config, guarded).await {
                    let _ = ready.send((tls, remote)).await;
                }
            });
        }
    });
    let incoming = Arc::new(tokio::sync::Mutex::new(incoming));
    let guard = Arc::new(AbortOnDrop(acceptor, ()));
    move || {
        let (incoming, _guard) = (incoming.clone(), guard.clone());
        Box::pin(async move {
            match incoming.lock().await.recv().await {
                Some(conn) => conn,
                // The acceptor is gone: nothing more comes.
                None => std::future::pending().await,
            }
        })
    }
}

/// The incoming stream; dropping it (the server stopped) stops accepting.
struct AbortOnDrop<S>(tokio::task::JoinHandle<()>, S);

impl<S> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<S: futures::Stream + Unpin> futures::Stream for AbortOnDrop<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.1).poll_next(cx)
    }
}
