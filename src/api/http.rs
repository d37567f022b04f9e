//! HTTP (axum): `/ready`, `/v1/identity`, `/metrics`, the bootstrap API and `/v1/nodes`.
//! The same router serves the root-only admin unix socket the local CLI uses.

use crate::agent::metrics::Metrics;
use crate::agent::node::ClusterNode;
use crate::agent::systemd::LogOnce;
use crate::agent::StateRx;
use crate::api::error::{denied_response, json_error};
use crate::api::limits::MAX_BODY_BYTES;
use crate::core::cluster::{validate_bootstrap_on, Action, BootstrapRequest};
use crate::core::net::HostAddrs;
use crate::core::refusal::{ErrorBody, Refusal};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) state: StateRx,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) cluster: Arc<ClusterNode>,
    /// Which listener this router serves.
    pub(crate) listener: Listener,
}

/// Where a request came in, which decides what it may do (SPEC §8: credentials never cross the
/// network in clear text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The root-only admin socket: mutating calls need no credentials there.
    AdminSocket,
    /// HTTPS (`server.https_listen_port`): everything, with the cluster credentials.
    Https,
    /// Plain HTTP: reads only. A change or credentials get `403 TlsRequired` naming the same
    /// path on the HTTPS port, and change nothing.
    Plain { https_port: u16 },
}

impl HttpState {
    fn trusted(&self) -> bool {
        self.listener == Listener::AdminSocket
    }
}

/// What `GET /` lists: every endpoint, its method and what it is for.
pub(crate) const ENDPOINTS: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/ready",
        "200 when the identity is decided, else 503 with the reason",
    ),
    ("GET", "/v1/identity", "this node's identity (JSON)"),
    ("GET", "/metrics", "Prometheus metrics"),
    (
        "GET",
        "/v1/bootstrap",
        "bootstrap state and the host's available addresses",
    ),
    (
        "POST",
        "/v1/bootstrap/create_cluster",
        "create a cluster (Redis Enterprise's request shape)",
    ),
    (
        "POST",
        "/v1/bootstrap/join_cluster",
        "join a cluster through one of its nodes",
    ),
    ("GET", "/v1/nodes", "the members as this node sees them"),
    (
        "GET",
        "/v1/reachability",
        "who reaches whom: every node's probes of every peer's advertised gRPC, HTTP and gossip endpoints, and a diagnosis",
    ),
    (
        "POST",
        "/v1/nodes/{id}/external_addr",
        "{\"action\": \"add|set|remove\", \"addrs\": [...]} (cluster credentials)",
    ),
    (
        "POST",
        "/v1/nodes/{id}/addr",
        "{\"addr\": \"...\"} for a node that is down (cluster credentials)",
    ),
    (
        "POST",
        "/v1/nodes/{id}/forget",
        "remove a DOWN node (cluster credentials)",
    ),
    (
        "GET",
        "/v1/cluster/gossip_keys",
        "every member's gossip key ids, the one in use first (admin socket only)",
    ),
    (
        "POST",
        "/v1/cluster/gossip_keys",
        "{\"action\": \"install|use|remove\", \"key\" | \"key_id\": \"...\"} on every live member (admin socket only)",
    ),
    (
        "GET",
        "/v1/cluster/join_tokens",
        "the join tokens this member printed and that are still usable, never their secrets (admin socket only)",
    ),
    (
        "POST",
        "/v1/cluster/join_tokens",
        "{\"ttl\": \"24h\"}: a new one-time join token (seed, secret, CA pin), shown once (admin socket only)",
    ),
    (
        "DELETE",
        "/v1/cluster/join_tokens/{id}",
        "revoke a join token (admin socket only)",
    ),
    (
        "GET",
        "/ring",
        "the ring page (JSON with Accept: application/json)",
    ),
    (
        "POST",
        "/ring/forget",
        "the ring page's Forget form: csrf_token from the page and forget=<id>, same origin",
    ),
    ("GET", "/openapi.json", "this API as an OpenAPI 3.1 document"),
];

pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ready", get(ready))
        .route("/v1/identity", get(identity))
        .route("/metrics", get(metrics))
        .route("/v1/bootstrap", get(bootstrap_status))
        .route("/v1/bootstrap/create_cluster", post(create_cluster))
        .route("/v1/bootstrap/join_cluster", post(join_cluster))
        .route("/v1/nodes", get(nodes))
        .route("/v1/reachability", get(reachability))
        .route("/v1/nodes/{id}/external_addr", post(external_addr))
        .route("/v1/nodes/{id}/addr", post(addr))
        .route("/v1/nodes/{id}/forget", post(forget))
        .route(
            "/v1/cluster/gossip_keys",
            get(gossip_keys_list).post(gossip_keys_change),
        )
        .route(
            "/v1/cluster/join_tokens",
            get(join_tokens_list).post(join_tokens_issue),
        )
        .route(
            "/v1/cluster/join_tokens/{id}",
            axum::routing::delete(join_tokens_revoke),
        )
        .route("/ring", get(ring).layer(map_response(not_framed)))
        .route(
            "/ring/forget",
            post(ring_forget).layer(map_response(not_framed)),
        )
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Bodies arrive whole within a deadline (slow-body attacks), before any handler runs.
        .layer(axum::middleware::from_fn(crate::api::limits::body_deadline))
        .layer(axum::middleware::map_response(plain_errors_as_json))
        // Outermost: over plain HTTP a change or credentials are refused before anything runs.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tls_required,
        ))
        .with_state(state)
}

/// Middleware on plain HTTP: what reads passes; a mutating method (POST, PUT, PATCH, DELETE, …)
/// or an `Authorization` header gets `403 TlsRequired` naming the HTTPS URL of the same path,
/// before the body is read or any handler runs. The credentials are never echoed.
async fn tls_required(
    State(s): State<HttpState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Listener::Plain { https_port } = s.listener else {
        return next.run(request).await;
    };
    use axum::http::Method;
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let credentials = request.headers().contains_key(header::AUTHORIZATION);
    if reads && !credentials {
        return next.run(request).await;
    }
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = https_url(&s, request.headers(), https_port, path);
    let what = if credentials {
        "credentials (an Authorization header) over plain HTTP".to_string()
    } else {
        format!(
            "{} {} over plain HTTP",
            request.method(),
            crate::api::jsonbody::echo(request.uri().path())
        )
    };
    error(
        403,
        ErrorBody::new(
            "TlsRequired",
            None,
            format!(
                "{what}: refused, nothing was changed (changes and credentials travel only over HTTPS); fix: send it to {url}"
            ),
        ),
    )
}

/// `https://<the host the client used>:<https_port><path>`; when the request's `Host` is missing
/// or not a plain host name or address, this node's advertised address.
fn https_url(s: &HttpState, headers: &HeaderMap, https_port: u16, path: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(host_without_port)
        .map(str::to_string)
        .or_else(|| {
            let published = s.state.borrow().clone();
            published
                .identity
                .as_ref()
                .map(|i| match i.https.advertise.ip() {
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    v4 => v4.to_string(),
                })
        })
        .unwrap_or_else(|| "localhost".to_string());
    let path = crate::api::jsonbody::echo(path);
    format!("https://{host}:{https_port}{path}")
}

/// The host part of a `Host` header (`[2001:db8::1]:3200` → `[2001:db8::1]`, `node1:3200` →
/// `node1`), or `None` for anything that is not a host name or an address.
fn host_without_port(host: &str) -> Option<&str> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        let inside = &rest[..end];
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(all_digits)) {
            return None;
        }
        &host[..end + 2]
    } else {
        let name = match host.split_once(':') {
            Some((name, port)) if all_digits(port) => name,
            Some(_) => return None,
            None => host,
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !valid {
            return None;
        }
        name
    };
    Some(name)
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

async fn index() -> Response {
    let endpoints: Vec<serde_json::Value> = ENDPOINTS
        .iter()
        .map(|(method, path, what)| serde_json::json!({"method": method, "path": path, "description": what}))
        .collect();
    Json(serde_json::json!({"service": "stackring", "version": env!("STACKRING_VERSION"), "endpoints": endpoints})).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        404,
        ErrorBody::new(
            "NotFound",
            None,
            format!(
                "no endpoint {}; fix: GET / lists them",
                crate::api::jsonbody::echo(uri.path())
            ),
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let allowed: Vec<&str> = ENDPOINTS
        .iter()
        .filter(|(_, p, _)| path_matches(p, path))
        .map(|(m, _, _)| *m)
        .collect();
    error(
        405,
        ErrorBody::new(
            "MethodNotAllowed",
            None,
            format!(
                "{method} is not allowed on {}; fix: use {}",
                crate::api::jsonbody::echo(path),
                allowed.join(" or ")
            ),
        ),
    )
}

/// `/v1/nodes/{id}/addr` matches `/v1/nodes/node2/addr`.
fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')))
}

/// Errors that axum answers by itself in plain text (413 for a body over the limit, 415, 422)
/// get the documented JSON shape `{error_code, description}` too.
async fn plain_errors_as_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // Only axum's own plain answers: our handlers' plain text (`/ready`'s 503 "not ready: <why>")
    // carries the reason and stays as it is.
    let axums_own = matches!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::BAD_REQUEST
    );
    if !axums_own || is_json {
        return response;
    }
    let (code, description) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "PayloadTooLarge",
            format!("the body is over {MAX_BODY_BYTES} bytes; fix: send a smaller request"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "UnsupportedMediaType",
            "fix: send Content-Type: application/json".to_string(),
        ),
        _ => (
            "Error",
            status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_string(),
        ),
    };
    let retry = response.headers().get(header::RETRY_AFTER).cloned();
    let mut json = error(status.as_u16(), ErrorBody::new(code, None, description));
    if let Some(v) = retry {
        json.headers_mut().insert(header::RETRY_AFTER, v);
    }
    json
}

async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    let published = s.state.borrow().clone();
    if published.ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        let why = published
            .not_ready
            .clone()
            .unwrap_or_else(|| "starting".into());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    }
}

async fn identity(State(s): State<HttpState>) -> impl IntoResponse {
    Json(s.state.borrow().view())
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// `GET /v1/bootstrap`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct BootstrapView {
    #[serde(flatten)]
    status: crate::core::cluster::BootstrapStatus,
    /// The cluster this node belongs to, once bootstrapped.
    cluster: Option<ClusterView>,
    /// The host's addresses usable for cluster traffic.
    available_addrs: Vec<crate::agent::node::AvailableAddr>,
    /// What a client pins to trust this node's TLS (HTTPS, gRPC).
    tls: TlsView,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TlsView {
    /// SHA-256 of the public key, kubeadm's form (`sha256:<hex>`): a joiner's `cluster.ca_pin`.
    pin: String,
    /// The same pin in curl's `--pinnedpubkey` form (`sha256//<base64>`).
    curl_pin: String,
    /// Whose key it is: the cluster CA, or this node's self-signed certificate before it joins.
    pin_of: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ClusterView {
    name: String,
    family: crate::core::snapshot::Family,
    node_id: String,
}

/// `GET /v1/nodes` (and `/ring` as JSON).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct NodesView {
    cluster_name: String,
    nodes: Vec<crate::core::members::MemberView>,
}

/// `GET /v1/reachability`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReachabilityView {
    cluster_name: String,
    /// Member ids: the matrix's rows (who probed) and columns (whom).
    nodes: Vec<String>,
    /// source → target (`*`: the source's own listen addresses) → service → probe.
    #[schema(value_type = Object)]
    rows: std::collections::BTreeMap<String, crate::core::reach::Findings>,
    /// What the failures mean, in words.
    diagnosis: Vec<String>,
}

async fn openapi() -> impl IntoResponse {
    Json(crate::api::openapi::document())
}

async fn bootstrap_status(State(s): State<HttpState>) -> impl IntoResponse {
    let record = s.cluster.record();
    Json(BootstrapView {
        status: s.cluster.status(),
        cluster: record.map(|r| ClusterView {
            name: r.name.clone(),
            family: r.family,
            node_id: r.node_id.clone(),
        }),
        available_addrs: s.cluster.available_addrs(),
        tls: {
            let tls = s.cluster.tls();
            let pin = tls.pin();
            TlsView {
                pin: pin.to_string(),
                curl_pin: pin.curl_form(),
                pin_of: tls.pin_of().to_string(),
            }
        },
    })
}

async fn create_cluster(State(s): State<HttpState>, body: Bytes) -> Response {
    bootstrap(&s, &body, Action::Create).await
}

async fn join_cluster(State(s): State<HttpState>, body: Bytes) -> Response {
    bootstrap(&s, &body, Action::Join).await
}

/// The body parsed and validated, every problem named with its JSON path, value and fix
/// (nothing changes on a 400).
async fn bootstrap(s: &HttpState, body: &[u8], action: Action) -> Response {
    // The admin socket is root on the node: it may bootstrap whatever server.bootstrap_api says.
    let settings = (!s.trusted()).then(|| s.cluster.settings());
    if let Some(settings) =
        settings.filter(|c| c.bootstrap_api == crate::core::config::BootstrapApi::Local)
    {
        return error(
            403,
            ErrorBody::new(
                "NodeBootstrapError",
                Some("bootstrap_api_local"),
                format!(
                    "this node takes {} only on its admin socket (server.bootstrap_api: local); fix: run it as root on the node (curl --unix-socket {}/admin.sock …), or give the node a cluster: section in its configuration",
                    match action {
                        Action::Create => "create_cluster",
                        Action::Join => "join_cluster",
                    },
                    settings.runtime_dir.display()
                ),
            ),
        );
    }
    let request = crate::api::jsonbody::parse::<BootstrapRequest>(body)
        .map_err(|e| Refusal::invalid_fields(vec![e]))
        .and_then(|r| {
            // `node.identity` is this host's: a network there gets one of its addresses as fix.
            let usable: Vec<std::net::IpAddr> = s
                .cluster
                .available_addrs()
                .into_iter()
                .map(|a| a.address)
                .collect();
            validate_bootstrap_on(r, action, HostAddrs::Known(&usable))
                .map_err(Refusal::invalid_fields)
        });
    let result = match request {
        Ok(request) => s.cluster.bootstrap(request, action).await,
        Err(refusal) => Err(refusal),
    };
    match result {
        Ok(status) => (StatusCode::OK, Json(status)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn nodes(State(s): State<HttpState>) -> Response {
    match s.cluster.members() {
        Some((cluster_name, nodes)) => Json(NodesView {
            cluster_name,
            nodes,
        })
        .into_response(),
        None => error(
            409,
            ErrorBody::new("NotInCluster", None, "this node does not belong to a cluster yet; fix: POST /v1/bootstrap/create_cluster or join_cluster"),
        ),
    }
}

async fn reachability(State(s): State<HttpState>) -> Response {
    match s.cluster.reachability() {
        Some((cluster_name, matrix, diagnosis)) => Json(ReachabilityView {
            cluster_name,
            nodes: matrix.nodes,
            rows: matrix.rows,
            diagnosis,
        })
        .into_response(),
        None => error(
            409,
            ErrorBody::new("NotInCluster", None, "this node does not belong to a cluster yet; fix: POST /v1/bootstrap/create_cluster or join_cluster"),
        ),
    }
}

fn error(status: u16, body: ErrorBody) -> Response {
    json_error(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
    )
}

/// Mutating calls over TCP need the cluster credentials (HTTP Basic); the admin socket is trusted.
/// Checks go through the cluster's guard: a source that keeps failing gets 429 with
/// `Retry-After` (no argon2 work), and so does everyone while the verification queue is full.
async fn authorize(s: &HttpState, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Response> {
    if s.trusted() {
        return Ok(());
    }
    if s.cluster.record().is_none() {
        return Err(error(
            409,
            ErrorBody::new(
                "NotInCluster",
                None,
                "this node does not belong to a cluster yet",
            ),
        ));
    }
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(base64_decode)
        .and_then(|b| String::from_utf8(b).ok());
    let source = Some(crate::api::limits::canonical(peer.ip()));
    let given = credentials.as_deref().and_then(|c| c.split_once(':'));
    s.cluster
        .check_credentials(source, given)
        .await
        .map_err(|denied| denied_response(&denied, source))
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim().bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn admin_result<T: serde::Serialize>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn external_addr(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&s, peer, &headers).await {
        return r;
    }
    let change = crate::api::jsonbody::parse::<crate::api::admin::ExternalChange>(&body)
        .map_err(|e| Refusal::invalid(e.to_string()))
        .and_then(|c| crate::api::admin::external_change(&c.action, &c.addrs));
    match change {
        Ok((op, addrs)) => admin_result(s.cluster.change_external(&id, op, addrs).await),
        Err(r) => r.into_response(),
    }
}

async fn addr(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&s, peer, &headers).await {
        return r;
    }
    let change = crate::api::jsonbody::parse::<crate::api::admin::AddrChange>(&body)
        .map_err(|e| Refusal::invalid(e.to_string()))
        .and_then(|c| crate::api::admin::addr_change(&c.addr));
    match change {
        Ok(ip) => admin_result(s.cluster.set_addr(&id, ip).await),
        Err(r) => r.into_response(),
    }
}

async fn forget(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, peer, &headers).await {
        return r;
    }
    admin_result(s.cluster.forget(&id).await)
}

/// Gossip keys and join tokens are managed over the root-only admin socket only: a key or a
/// token never crosses the network in an HTTP body, and their ids are not for every client of
/// the TCP port.
fn admin_socket_only(s: &HttpState, what: &str, command: &str) -> Option<Response> {
    if s.trusted() {
        return None;
    }
    Some(error(
        403,
        ErrorBody::new(
            "AdminError",
            Some("admin_socket_only"),
            format!("{what} are managed over the node's admin socket only; fix: run `stackring cluster {command} …` as root on a member"),
        ),
    ))
}

const GOSSIP_KEYS: (&str, &str) = ("gossip keys", "gossip-key");
const JOIN_TOKENS: (&str, &str) = ("join tokens", "join-token");

async fn join_tokens_list(State(s): State<HttpState>) -> Response {
    if let Some(r) = admin_socket_only(&s, JOIN_TOKENS.0, JOIN_TOKENS.1) {
        return r;
    }
    admin_result(s.cluster.join_tokens().await)
}

/// The request body of `POST /v1/cluster/join_tokens`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinTokenRequest {
    #[serde(default)]
    ttl: Option<String>,
}

async fn join_tokens_issue(State(s): State<HttpState>, body: Bytes) -> Response {
    if let Some(r) = admin_socket_only(&s, JOIN_TOKENS.0, JOIN_TOKENS.1) {
        return r;
    }
    let request = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Ok(JoinTokenRequest::default())
    } else {
        crate::api::jsonbody::parse::<JoinTokenRequest>(&body).map_err(|e| e.to_string())
    };
    let ttl = request.and_then(|r| match r.ttl {
        None => Ok(crate::core::token::DEFAULT_TTL),
        Some(text) => crate::core::token::parse_ttl(&text).map_err(|e| format!("ttl: {e}")),
    });
    match ttl {
        Ok(ttl) => admin_result(s.cluster.issue_join_token(ttl).await),
        Err(why) => Refusal::invalid(why).into_response(),
    }
}

async fn join_tokens_revoke(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    if let Some(r) = admin_socket_only(&s, JOIN_TOKENS.0, JOIN_TOKENS.1) {
        return r;
    }
    match id.parse::<crate::core::token::TokenId>() {
        Ok(id) => admin_result(s.cluster.revoke_join_token(id).await),
        Err(why) => Refusal::invalid(why).into_response(),
    }
}

async fn gossip_keys_list(State(s): State<HttpState>) -> Response {
    if let Some(r) = admin_socket_only(&s, GOSSIP_KEYS.0, GOSSIP_KEYS.1) {
        return r;
    }
    admin_result(s.cluster.gossip_keys().await)
}

/// The request body of `POST /v1/cluster/gossip_keys`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GossipKeysChange {
    action: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    key_id: String,
}

async fn gossip_keys_change(State(s): State<HttpState>, body: Bytes) -> Response {
    if let Some(r) = admin_socket_only(&s, GOSSIP_KEYS.0, GOSSIP_KEYS.1) {
        return r;
    }
    let op = crate::api::jsonbody::parse::<GossipKeysChange>(&body)
        .map_err(|e| e.to_string())
        .and_then(|c| crate::core::seal::KeyringOp::parse(&c.action, &c.key, &c.key_id));
    match op {
        Ok(op) => admin_result(s.cluster.change_gossip_keys(op).await),
        Err(why) => Refusal::invalid(why).into_response(),
    }
}

/// The key of the ring page's Forget tokens: 32 random bytes drawn once per process, never sent
/// anywhere (a restart invalidates the pages rendered before it).
fn form_key() -> &'static crate::core::ring::FormKey {
    static KEY: std::sync::OnceLock<crate::core::ring::FormKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| crate::core::ring::FormKey::new(random_key()))
}

/// From the kernel (`/dev/urandom`); should that be unreadable, from std's per-process random
/// hash keys (also drawn from the OS) with the time and pid mixed in.
fn random_key() -> [u8; 32] {
    use std::io::Read;
    let mut key = [0u8; 32];
    let urandom = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
    if let Err(e) = urandom {
        log::warn!("/dev/urandom: {e}; the ring page's form key comes from std's random hash keys");
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u32(std::process::id());
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    key
}

/// The ring page has a Forget button: no other site may frame it (clickjacking), in the words of
/// today's browsers (CSP `frame-ancestors`) and of older ones (`X-Frame-Options`); and no
/// browser may read a response as anything but its declared type.
async fn not_framed(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// HTML for people, JSON for `Accept: application/json`. Every render embeds a fresh Forget
/// token bound to this node and the time.
async fn ring(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    let (name, members) = s.cluster.members().unwrap_or_default();
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        Json(serde_json::json!({"cluster_name": name, "nodes": members})).into_response()
    } else {
        let node_id = s
            .cluster
            .record()
            .map(|r| r.node_id.clone())
            .unwrap_or_default();
        let now = crate::agent::now_unix();
        let token = crate::core::ring::form_token(form_key(), &node_id, now);
        let https_page;
        let forget = match s.listener {
            // Plain HTTP takes no Forget post: the page says where the one with the form is.
            Listener::Plain { https_port } => {
                https_page = https_url(&s, &headers, https_port, "/ring");
                crate::core::ring::Forget::ElsewhereAt {
                    https_url: &https_page,
                }
            }
            Listener::Https | Listener::AdminSocket => {
                crate::core::ring::Forget::Form { csrf_token: &token }
            }
        };
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // The page carries a token: no shared cache keeps it.
                (header::CACHE_CONTROL, "no-store"),
            ],
            // stackring nodes own no tokens: dskit's Tokens and Ownership columns stay hidden.
            crate::core::ring::page(&name, &members, &[], forget, now),
        )
            .into_response()
    }
}

/// Refused Forget posts, logged at most once per [`LogOnce::EVERY_MS`].
static FORGED_FORM_LOG: LogOnce = LogOnce::new();

/// The ring page's Forget button: a form post of `csrf_token=<from the page>&forget=<node>`,
/// dskit's field name. Over TCP it needs the page's token and a same-origin Origin (or Referer),
/// and no HTTP Basic: the browser on the page has no credentials, and asking for them would bring
/// back the browser's Basic prompt this form replaces, whose cached credentials every site could
/// then ride. What the form can do is what dskit's ring page does without any login (Tempo,
/// Mimir, Loki): remove a node the failure detector already holds DOWN from the views, until it
/// starts again; a live node is refused. The token stops other sites, not a client that can
/// reach this port (it can load the page too): as with dskit, the port stays on the cluster's
/// network. Changes that need the cluster credentials (`/v1/nodes/...`, gRPC `Admin`) still
/// need them. The admin socket (root only) needs neither.
async fn ring_forget(State(s): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = crate::core::ring::parse_form(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if !s.trusted() {
        let Some(record) = s.cluster.record() else {
            return Refusal::not_in_cluster().into_response();
        };
        let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let post = crate::core::ring::FormPost {
            origin: get(header::ORIGIN),
            referer: get(header::REFERER),
            host: get(header::HOST),
            csrf_token: field("csrf_token"),
        };
        if let Err(refused) = crate::core::ring::check_form(
            form_key(),
            &record.node_id,
            &post,
            crate::agent::now_unix(),
        ) {
            // Anyone who reaches the port can post: one line per window, with the count.
            if let Some(more) = FORGED_FORM_LOG.admit(crate::agent::now_ms()) {
                log::warn!(
                    "ring page: Forget refused: {refused}{}",
                    LogOnce::suppressed(more)
                );
            }
            return error(
                403,
                ErrorBody::new("Forbidden", Some(refused.sub_code()), refused.to_string()),
            );
        }
    }
    let Some(id) = field("forget").filter(|id| !id.is_empty()) else {
        return error(
            400,
            ErrorBody::new(
                "InvalidRequest",
                None,
                "the form has no forget=<node id>; fix: press the Forget button of a DOWN node on /ring",
            ),
        );
    };
    match s.cluster.forget(id).await {
        // Post/Redirect/Get, as dskit: a reload does not post again.
        Ok(_) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/ring")]).into_response(),
        Err(r) => r.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_header_gives_the_host_of_the_https_url() {
        for (host, want) in [
            ("[2001:db8::1]:3200", Some("[2001:db8::1]")),
            ("[::1]", Some("[::1]")),
            ("node1:3200", Some("node1")),
            ("192.0.2.7:3200", Some("192.0.2.7")),
            ("example.com", Some("example.com")),
            ("", None),
            ("[zz]:3200", None),
            ("a b:3200", None),
            ("evil.com/x:3200", None),
            ("node1:http", None),
            ("[::1]x", None),
        ] {
            assert_eq!(super::host_without_port(host), want, "{host:?}");
        }
    }

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(
            super::base64_decode("YWRtaW46Y29ycmVjdCBob3JzZQ==").unwrap(),
            b"admin:correct horse"
        );
        assert_eq!(super::base64_decode("!!"), None);
    }
}
