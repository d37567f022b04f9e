//! The node as a gRPC client of other members: `Cluster.Join` on a seed (patient while the seed
//! sheds load) and `Cluster.ApplyChange` on the node an admin change is for.

use crate::proto::pb;
use rustls::ClientConfig;
use std::sync::Arc;
use std::time::Duration;

/// A gRPC channel to `uri` (`http://host:port`) over TLS with `config` (which decides whom to
/// trust: a pin, the cluster CA). The connector does the TLS itself so that our verifiers run.
pub(crate) async fn tls_channel(
    uri: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<tonic::transport::Channel, ChannelError> {
    let endpoint = tonic::transport::Endpoint::from_shared(uri.to_string())
        .map_err(|e| ChannelError::Failed(e.to_string()))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(timeout);
    // Our verifier's reason, when it refused the server (so the caller can tell a wrong CA or
    // node from a node that did not answer).
    let refused: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let refusal = refused.clone();
    let connector = tower::service_fn(move |uri: tonic::transport::Uri| {
        let (config, refusal) = (config.clone(), refusal.clone());
        async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(9095);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            // Our verifiers check the CA (and node id), not this name: any valid one will do.
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls_pki_types::ServerName::IpAddress(ip.into()),
                Err(_) => rustls_pki_types::ServerName::try_from(host)
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| match crate::agent::pki::handshake_refusal(&e) {
                    Some(why) => {
                        let why = why.to_string();
                        *refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                        std::io::Error::other(why)
                    }
                    None => e,
                })?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(
            |e| match refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(why) => ChannelError::Refused(why),
                None => ChannelError::Failed(format!("cannot connect ({})", error_chain(&e))),
            },
        )
}

/// Why [`tls_channel`] has no channel.
#[derive(Debug)]
pub(crate) enum ChannelError {
    /// Our verifier refused the server (a CA other than the pinned one or this cluster's,
    /// another node): it answered, and was sent nothing.
    Refused(String),
    /// No TLS session (unreachable, timed out, a TLS failure of any other kind), or the call
    /// failed.
    Failed(String),
}

impl From<ChannelError> for String {
    fn from(e: ChannelError) -> String {
        match e {
            ChannelError::Refused(why) => format!("refused in the TLS handshake: {why}"),
            ChannelError::Failed(text) => text,
        }
    }
}

/// An error with its causes (tonic's own text is only "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

pub(crate) enum JoinCallError {
    Unreachable(String),
    /// The seed's CA is not the one `cluster.ca_pin` names: nothing was sent to it.
    WrongCa(String),
    /// `RESOURCE_EXHAUSTED`: the seed sheds load or makes this node wait.
    Throttled {
        message: String,
        retry_after_s: u64,
    },
}

/// How long a join keeps retrying a seed that answers "busy" before telling its caller to wait.
const JOIN_BUSY_PATIENCE: Duration = Duration::from_secs(10);

/// `call_join`, retrying while the seed sheds load and its `retry-after` fits in
/// [`JOIN_BUSY_PATIENCE`]: a legitimate join during a flood of guesses waits its turn in seconds.
pub(crate) async fn call_join_patiently(
    uri: &str,
    tls: Arc<ClientConfig>,
    request: pb::JoinRequest,
) -> Result<pb::JoinReply, JoinCallError> {
    let started = tokio::time::Instant::now();
    loop {
        match call_join(uri, tls.clone(), request.clone()).await {
            Err(JoinCallError::Throttled { retry_after_s, .. })
                if started.elapsed() + Duration::from_secs(retry_after_s) < JOIN_BUSY_PATIENCE =>
            {
                tokio::time::sleep(Duration::from_secs(retry_after_s)).await;
            }
            other => return other,
        }
    }
}

async fn call_join(
    uri: &str,
    tls: Arc<ClientConfig>,
    request: pb::JoinRequest,
) -> Result<pb::JoinReply, JoinCallError> {
    let channel = tls_channel(uri, tls, Duration::from_secs(15))
        .await
        .map_err(|e| match e {
            ChannelError::Refused(why) => JoinCallError::WrongCa(why),
            ChannelError::Failed(text) => JoinCallError::Unreachable(text),
        })?;
    let mut client = pb::cluster_client::ClusterClient::new(channel);
    match client.join(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
            let retry_after_s = s
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1u64);
            Err(JoinCallError::Throttled {
                message: s.message().to_string(),
                retry_after_s,
            })
        }
        Err(s) => Err(JoinCallError::Unreachable(
            match std::error::Error::source(&s) {
                Some(cause) => format!("{} ({})", s.message(), error_chain(cause)),
                None => s.message().to_string(),
            },
        )),
    }
}

/// Sends an admin change to the node it is for and returns its answer.
pub(crate) async fn call_apply_change(
    uri: &str,
    tls: Arc<ClientConfig>,
    request: pb::ApplyChangeRequest,
) -> Result<pb::ApplyChangeReply, ChannelError> {
    let channel = tls_channel(uri, tls, Duration::from_secs(10)).await?;
    pb::cluster_client::ClusterClient::new(channel)
        .apply_change(request)
        .await
        .map(|r| r.into_inner())
        .map_err(|s| ChannelError::Failed(s.message().to_string()))
}

/// Sends a keyring change to the member it is for and returns its answer.
pub(crate) async fn call_change_gossip_keys(
    uri: &str,
    tls: Arc<ClientConfig>,
    request: pb::GossipKeysRequest,
) -> Result<pb::GossipKeysReply, String> {
    let channel = tls_channel(uri, tls, Duration::from_secs(10)).await?;
    pb::cluster_client::ClusterClient::new(channel)
        .change_gossip_keys(request)
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.message().to_string())
}
