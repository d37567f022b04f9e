//! What keeps clients from starving the daemon (SPEC §8 "every listener has timeouts and connection
//! limits"): connection caps per listener and per peer address, a stall timeout on every
//! connection, a first-bytes deadline, the process's descriptor budget, and the HTTP/1 accept loop
//! with a header-read timeout and a body timeout.
//!
//! The admission rule is pure ([`Admission::decide`]); the accept loops, timers and sockets are the
//! edge around it.

use axum::extract::ConnectInfo;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A half-sent request (slowloris) is dropped after this long. hyper's timer also runs while an
/// HTTP/1 keep-alive connection waits for its next request, so it bounds idle keep-alive too.
/// Bootstrap bodies are a few hundred bytes; anything much larger is refused before parsing.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A request body must arrive whole within this.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A read or a write that makes no progress for this long ends the connection (a peer that stops
/// reading our answer, a peer that stops talking). gRPC peers answer keepalive pings far sooner.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A new gRPC connection must send the HTTP/2 preface and its first frame header within this.
pub(crate) const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 client preface (24 bytes) + one frame header (9): a real client sends its SETTINGS at once.
pub(crate) const H2_FIRST_BYTES: u64 = 24 + 9;
/// gRPC (HTTP/2): ping an idle connection this often, and drop it when the ping is not answered.
pub(crate) const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub(crate) const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// A gRPC call must produce its answer (for a stream: its first message) within this. `Join`
/// waits for the bounded credential queue, never longer than the joiner's own 15 s.
pub(crate) const GRPC_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest Cluster or Admin request decoded (tonic's default is 4 MiB). The largest real one,
/// an `ApplyChange` with the most external addresses a node may have, is under 4 KiB: eight
/// forged 4 MB requests at once took 58 MB of RSS; now each is refused from its length prefix.
pub(crate) const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Connections one peer address may hold on one listener.
pub(crate) const PER_PEER: usize = 128;
/// Connections a listener holds at most (less when descriptors are short, see [`budget`]).
pub(crate) const PER_LISTENER: usize = 4096;
/// The last connections of a listener go only to peers holding fewer than this many: one busy
/// (or hostile) peer never takes the slot a health check needs.
pub(crate) const LIGHT_PEER: usize = 4;
/// Descriptors kept for everything that is not a client connection (netlink, gossip, files,
/// outgoing gRPC, the admin socket).
pub(crate) const RESERVED_FDS: u64 = 256;

/// Raises the soft descriptor limit to the hard one (systemd's advice to programs that do not use
/// `select()`: the default soft limit of 1,024 exists only for those that do), and says what the
/// listeners may hold. Returns (soft limit now, connections per listener).
pub(crate) fn raise_nofile(listeners: u64) -> (u64, usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    let soft: u64 = lim.rlim_cur;
    (soft, budget(soft, listeners))
}

/// Connections per listener that `soft` descriptors allow for `listeners` TCP listeners.
pub(crate) fn budget(soft: u64, listeners: u64) -> usize {
    let free = soft.saturating_sub(RESERVED_FDS) / listeners.max(1);
    (free as usize).clamp(16, PER_LISTENER)
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The peer already holds [`Limits::per_peer`] connections.
    PerPeer,
    /// The listener is full (or only light peers may still come in).
    Listener,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::PerPeer => "per_peer",
            Refusal::Listener => "listener",
        }
    }
}

/// The admission rule, pure: `total` connections open on the listener, `from_peer` of them from
/// this peer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission {
    pub(crate) max_total: usize,
    pub(crate) per_peer: usize,
    /// Slots at the top kept for light peers.
    pub(crate) reserve: usize,
}

impl Admission {
    pub(crate) fn decide(&self, total: usize, from_peer: usize) -> Result<(), Refusal> {
        if total >= self.max_total {
            return Err(Refusal::Listener);
        }
        if from_peer >= self.per_peer {
            return Err(Refusal::PerPeer);
        }
        if total >= self.max_total.saturating_sub(self.reserve) && from_peer >= LIGHT_PEER {
            return Err(Refusal::Listener);
        }
        Ok(())
    }
}

/// Open connections of one listener, by peer.
pub(crate) struct Limits {
    name: &'static str,
    rule: Admission,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    metrics: Arc<crate::agent::metrics::Metrics>,
}

/// One admitted connection; dropping it frees the slot.
pub(crate) struct Slot {
    limits: Arc<Limits>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let emptied = {
            let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
            open.0 = open.0.saturating_sub(1);
            if let Some(n) = open.1.get_mut(&self.peer) {
                *n -= 1;
                if *n == 0 {
                    open.1.remove(&self.peer);
                }
            }
            open.0
        };
        self.limits.gauge().set(emptied as i64);
        if emptied <= BURST_OVER && BURST_PEAK.swap(0, std::sync::atomic::Ordering::Relaxed) > BURST
        {
            release_memory();
        }
    }
}

impl Limits {
    pub(crate) fn new(
        name: &'static str,
        max_total: usize,
        per_peer: usize,
        metrics: Arc<crate::agent::metrics::Metrics>,
    ) -> Arc<Limits> {
        Arc::new(Limits {
            name,
            rule: Admission {
                max_total,
                per_peer: per_peer.min(max_total),
                reserve: (max_total / 16).clamp(1, 64),
            },
            open: Mutex::new((0, HashMap::new())),
            metrics,
        })
    }

    fn gauge(&self) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics
            .connections
            .get_or_create(&vec![("listener".into(), self.name.into())])
            .clone()
    }

    /// A slot for a connection from `peer`, or why not.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let total = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let from_peer = open.1.get(&peer).copied().unwrap_or(0);
            if let Err(why) = self.rule.decide(open.0, from_peer) {
                drop(open);
                self.metrics
                    .connections_refused
                    .get_or_create(&vec![
                        ("listener".into(), self.name.into()),
                        ("reason".into(), why.as_str().into()),
                    ])
                    .inc();
                return Err(why);
            }
            open.0 += 1;
            *open.1.entry(peer).or_insert(0) += 1;
            open.0
        };
        BURST_PEAK.fetch_max(total, std::sync::atomic::Ordering::Relaxed);
        self.gauge().set(total as i64);
        Ok(Slot {
            limits: self.clone(),
            peer,
        })
    }
}

/// A burst: more than this many connections open on one listener at once.
const BURST: usize = 64;
/// The burst is over when a listener is back to this many.
const BURST_OVER: usize = 8;
/// The highest connection count of any listener since the last release.
static BURST_PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// After a burst of connections has gone, give the freed heap back to the kernel: glibc keeps it
/// in its arenas otherwise (2,000 closed connections left 55 MB resident).
fn release_memory() {
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A connection with a slot, a stall timeout on reads and writes, and (optionally) a deadline for
/// its first bytes.
pub(crate) struct Guarded<T> {
    inner: T,
    _slot: Option<Slot>,
    stall: Duration,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Until `first_bytes` bytes have arrived, reads must finish by `first_deadline`.
    first_bytes: u64,
    first_deadline: Instant,
    read_total: u64,
}

impl<T> Guarded<T> {
    pub(crate) fn new(inner: T, slot: Option<Slot>, stall: Duration) -> Guarded<T> {
        Guarded {
            inner,
            _slot: slot,
            stall,
            read_timer: None,
            write_timer: None,
            first_bytes: 0,
            first_deadline: Instant::now(),
            read_total: 0,
        }
    }

    /// The peer must send `bytes` within `within` of now.
    pub(crate) fn first_bytes(mut self, bytes: u64, within: Duration) -> Guarded<T> {
        self.first_bytes = bytes;
        self.first_deadline = Instant::now() + within;
        self
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string())
}

/// Polls `timer` (armed at `deadline` when first needed); `true` when it has fired.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    t.as_mut().poll(cx).is_ready()
}

use std::future::Future;

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_total += (buf.filled().len() - before) as u64;
                this.read_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let (deadline, what) = if this.read_total < this.first_bytes {
                    (this.first_deadline, "the peer did not start talking")
                } else {
                    (Instant::now() + this.stall, "the peer stopped talking")
                };
                if expired(&mut this.read_timer, deadline, cx) {
                    return Poll::Ready(Err(timed_out(what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                this.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if expired(&mut this.write_timer, Instant::now() + this.stall, cx) {
                    return Poll::Ready(Err(timed_out("the peer stopped reading")));
                }
                Poll::Pending
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if expired(&mut this.write_timer, Instant::now() + this.stall, cx) {
                    return Poll::Ready(Err(timed_out("the peer stopped reading")));
                }
                Poll::Pending
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Guarded<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts from `listener` until it fails for good, admitting each connection through `limits`.
/// Refused connections are closed at once (an HTTP listener first gets a `503` line written
/// without reading anything). Descriptor exhaustion (EMFILE) pauses accepting briefly instead of
/// spinning.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    limits: &Arc<Limits>,
    http: bool,
) -> (tokio::net::TcpStream, SocketAddr, Slot) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                accept_error(&e).await;
                continue;
            }
        };
        match limits.admit(canonical(peer.ip())) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer, slot);
            }
            Err(why) => {
                if http {
                    let _ = stream.try_write(busy_answer(why).as_bytes());
                }
                // Dropped: closed now; the kernel sends a reset if the peer already wrote.
            }
        }
    }
}

fn busy_answer(why: Refusal) -> String {
    let body = match why {
        Refusal::PerPeer => "too many connections from your address; close some and retry\n",
        Refusal::Listener => "too many connections; retry in a second\n",
    };
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `::ffff:192.0.2.1` (a `[::]` socket's view of an IPv4 peer) counts as `192.0.2.1`.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

pub(crate) async fn accept_error(e: &std::io::Error) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if LOGGED.swap(now, Ordering::Relaxed) + 10 <= now {
        log::warn!(
            "accept: {e}; fix: raise LimitNOFILE= in the unit if this is 'Too many open files'"
        );
    }
    // EMFILE/ENFILE/ENOBUFS: the connection stays in the backlog; try again shortly.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Where an HTTP connection comes from (`ConnectInfo<SocketAddr>` in handlers); the admin socket
/// reports `[::]:0`.
pub(crate) const UNIX_PEER: SocketAddr =
    SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0);

/// Serves `router` over HTTP/1 on connections from `next` until `stop` resolves, then lets the
/// open requests finish.
pub(crate) async fn serve_http<F, Fut, IO>(
    router: axum::Router,
    mut next: F,
    stop: impl Future<Output = ()>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = (IO, SocketAddr)>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    tokio::pin!(stop);
    loop {
        let (io, peer) = tokio::select! {
            c = next() => c,
            () = &mut stop => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                use tower_service::Service;
                router.call(request).await
            }
        });
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the peer's (reset, timeout): nothing to report.
            let _ = connection.await;
        });
    }
    if tokio::time::timeout(Duration::from_secs(4), graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!("HTTP connections still open after 4 s; closing them");
    }
}

/// Middleware: the body must arrive whole (and within [`MAX_BODY_BYTES`]) within
/// [`BODY_TIMEOUT`]; a slow body gets `408`, an oversized one `413`.
pub(crate) async fn body_deadline(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let refuse = |status: axum::http::StatusCode, code: &str, description: String| {
        let body = crate::core::refusal::ErrorBody::new(code, None, description);
        let mut response = (status, axum::Json(body)).into_response();
        if status == axum::http::StatusCode::REQUEST_TIMEOUT {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    };
    /// The most of a refused body read before the 413 (see below).
    const LINGER_BYTES: u64 = 1024 * 1024;
    let (parts, body) = request.into_parts();
    // A declared length over the limit is refused without parsing the body.
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > MAX_BODY_BYTES as u64) {
        // Up to 1 MiB is read and dropped first (a lingering close): a client that is already
        // sending (its `Expect` wait ran out on a busy node) would otherwise get a reset for its
        // unread bytes instead of the 413. Larger bodies are refused at once.
        if declared <= LINGER_BYTES {
            let drain = axum::body::to_bytes(body, LINGER_BYTES as usize);
            let _ = tokio::time::timeout(BODY_TIMEOUT, drain).await;
        }
        let mut response = refuse(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!(
                "the body is over {} bytes; fix: send a smaller request",
                MAX_BODY_BYTES
            ),
        );
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    }
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_big {
                refuse(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "PayloadTooLarge",
                    format!(
                        "the body is over {} bytes; fix: send a smaller request",
                        MAX_BODY_BYTES
                    ),
                )
            } else {
                refuse(
                    axum::http::StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    format!("the body could not be read ({e}); fix: send the whole body"),
                )
            };
        }
        Err(_) => {
            return refuse(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                format!(
                    "the body did not arrive within {} s; fix: send the whole request at once",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_caps_peers_and_keeps_the_last_slots_for_light_peers() {
        let rule = Admission {
            max_total: 100,
            per_peer: 50,
            reserve: 10,
        };
        for (total, from_peer, want) in [
            (0, 0, Ok(())),
            (10, 49, Ok(())),
            (10, 50, Err(Refusal::PerPeer)),
            (89, 20, Ok(())),
            // The reserve: only a peer with fewer than LIGHT_PEER connections gets in.
            (90, 20, Err(Refusal::Listener)),
            (90, LIGHT_PEER - 1, Ok(())),
            (99, 0, Ok(())),
            (100, 0, Err(Refusal::Listener)),
        ] {
            assert_eq!(rule.decide(total, from_peer), want, "{total} {from_peer}");
        }
    }

    #[test]
    fn descriptor_budget_leaves_room_for_the_rest() {
        assert_eq!(budget(1024, 2), (1024 - RESERVED_FDS as usize) / 2);
        assert_eq!(budget(20_000, 2), PER_LISTENER);
        assert_eq!(budget(100, 2), 16);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_dropped_after_the_first_bytes_deadline() {
        use tokio::io::AsyncReadExt;
        let (client, server) = tokio::io::duplex(64);
        let mut guarded =
            Guarded::new(server, None, STALL_TIMEOUT).first_bytes(33, Duration::from_secs(5));
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 5);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_talking_peer_is_held_until_it_stalls() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = Guarded::new(server, None, Duration::from_secs(60))
            .first_bytes(4, Duration::from_secs(5));
        client.write_all(b"abcd").await.unwrap();
        let mut buf = [0u8; 4];
        guarded.read_exact(&mut buf).await.unwrap();
        let started = Instant::now();
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 60);
    }
}
