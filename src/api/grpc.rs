//! gRPC (tonic): the Identity service, with server reflection.

use crate::core::state::{Published, StateRx};
use futures::Stream;
use std::pin::Pin;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::proto::{pb, FILE_DESCRIPTOR_SET};

pub(crate) struct IdentityService {
    state: StateRx,
}

impl IdentityService {
    pub(crate) fn new(state: StateRx) -> IdentityService {
        IdentityService { state }
    }
}

pub(crate) fn reply(published: &Published) -> pb::IdentityReply {
    let endpoint = |e: &crate::core::decide::Endpoint| pb::Endpoint {
        listen: e.listen.to_string(),
        advertise: e.advertise.to_string(),
    };
    let mut reply = pb::IdentityReply {
        ready: published.ready(),
        reason: published.not_ready.clone().unwrap_or_default(),
        generation: published.generation,
        ..Default::default()
    };
    if let Some(id) = &published.identity {
        reply.id = id.id.clone();
        reply.zone = id.zone.clone();
        reply.family = id.family.as_str().to_string();
        reply.family_reason = id.family_reason.clone();
        reply.internal_addr = id.internal_addr.to_string();
        reply.internal_interface = id.internal_interface.clone();
        reply.external_addrs = id.external_addrs.iter().map(|a| a.to_string()).collect();
        reply.grpc = Some(endpoint(&id.grpc));
        reply.http = Some(endpoint(&id.http));
        reply.gossip = Some(endpoint(&id.gossip));
    }
    reply
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<pb::IdentityReply, Status>> + Send>>;

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityService {
    async fn get(
        &self,
        _: Request<pb::GetIdentityRequest>,
    ) -> Result<Response<pb::IdentityReply>, Status> {
        Ok(Response::new(reply(&self.state.borrow())))
    }

    type WatchStream = ReplyStream;

    async fn watch(
        &self,
        _: Request<pb::WatchIdentityRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let stream = WatchStream::new(self.state.clone()).map(|p| Ok(reply(&p)));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The tonic router with Identity, Cluster, Admin and reflection (v1).
pub(crate) fn router(
    state: StateRx,
    cluster: std::sync::Arc<crate::agent::node::ClusterNode>,
) -> Result<tonic::transport::server::Router, tonic_reflection::server::Error> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()?;
    use crate::api::limits::*;
    Ok(tonic::transport::Server::builder()
        // Dead or silent peers are found by HTTP/2 pings; a connection cannot open streams
        // without bound; a call that cannot answer in time ends (the joiner's own limit is 15 s).
        .http2_keepalive_interval(Some(H2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(H2_KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_max_header_list_size(64 * 1024)
        .timeout(GRPC_REQUEST_TIMEOUT)
        .add_service(reflection)
        .add_service(pb::identity_server::IdentityServer::new(
            IdentityService::new(state),
        ))
        .add_service(pb::cluster_server::ClusterServer::new(
            crate::agent::node::ClusterService {
                node: cluster.clone(),
            },
        ))
        .add_service(pb::admin_server::AdminServer::new(
            crate::agent::node::AdminService { node: cluster },
        )))
}
