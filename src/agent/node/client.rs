//! The node as a gRPC client of other members: `Cluster.Join` on a seed (patient while the seed
//! sheds load) and `Cluster.ApplyChange` on the node an admin change is for.

use crate::proto::pb;
use std::time::Duration;

pub(crate) enum JoinCallError {
    Unreachable(String),
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
    request: pb::JoinRequest,
) -> Result<pb::JoinReply, JoinCallError> {
    let started = tokio::time::Instant::now();
    loop {
        match call_join(uri, request.clone()).await {
            Err(JoinCallError::Throttled { retry_after_s, .. })
                if started.elapsed() + Duration::from_secs(retry_after_s) < JOIN_BUSY_PATIENCE =>
            {
                tokio::time::sleep(Duration::from_secs(retry_after_s)).await;
            }
            other => return other,
        }
    }
}

async fn call_join(uri: &str, request: pb::JoinRequest) -> Result<pb::JoinReply, JoinCallError> {
    let endpoint = tonic::transport::Endpoint::from_shared(uri.to_string())
        .map_err(|e| JoinCallError::Unreachable(e.to_string()))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| JoinCallError::Unreachable(format!("cannot connect ({e})")))?;
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
        Err(s) => Err(JoinCallError::Unreachable(s.message().to_string())),
    }
}

/// Sends an admin change to the node it is for and returns its answer.
pub(crate) async fn call_apply_change(
    uri: &str,
    request: pb::ApplyChangeRequest,
) -> Result<pb::ApplyChangeReply, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(uri.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    pb::cluster_client::ClusterClient::new(channel)
        .apply_change(request)
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.message().to_string())
}
