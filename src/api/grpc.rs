//! gRPC (tonic): the Identity service, with server reflection.

use crate::agent::authguard::Denied;
use crate::agent::node::{Admission, ClusterNode, JoinDenied, RelayedChange};
use crate::agent::StateRx;
use crate::api::admin::{addr_change, external_change};
use crate::api::error::denied_status;
use crate::api::tls::GrpcPeer;
use crate::core::cluster::{JoinAuth, JoinerFacts};
use crate::core::members::MemberView;
use crate::core::refusal::Refusal;
use crate::core::state::Published;
use crate::core::token::TokenCredential;
use futures::Stream;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
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
    // grpc.health.v1: SERVING while the server runs (peers probe it; so can load balancers).
    let (_reporter, health) = tonic_health::server::health_reporter();
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
        .add_service(health)
        .add_service(pb::identity_server::IdentityServer::new(
            IdentityService::new(state),
        ))
        .add_service(
            pb::cluster_server::ClusterServer::new(ClusterService {
                node: cluster.clone(),
            })
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            pb::admin_server::AdminServer::new(AdminService { node: cluster })
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        ))
}

fn peer<T>(request: &Request<T>) -> Option<&GrpcPeer> {
    request.extensions().get::<GrpcPeer>()
}

/// The caller's address, canonical (an IPv4-mapped source is its IPv4 address): the guard's key.
fn source<T>(request: &Request<T>) -> Option<IpAddr> {
    peer(request).map(|p| crate::api::limits::canonical(p.remote.ip()))
}

/// The node id of the caller's member certificate (None without one), for a call served over TLS
/// only.
fn require_member<T>(request: &Request<T>, call: &str) -> Result<Option<String>, Status> {
    require_tls(request, call)?;
    Ok(peer(request).and_then(|p| p.member.clone()))
}

/// A relayed call is taken only from a member, in its own name: its certificate must name the
/// node in `from` (a node never accepts another node's claim to its id).
fn check_relayer(member: &Option<String>, from: &str, call: &str) -> Result<(), Status> {
    if member.as_deref() == Some(from) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "{call} is relayed by members only: the caller must present this cluster's certificate for the node it names in `from` ('{}'); it presented {}",
        crate::core::config::echo(from),
        match member {
            Some(id) => format!("the certificate of '{id}'"),
            None => "no cluster certificate".to_string(),
        }
    )))
}

/// A refusal as a relayed call's reply carries it.
fn refused_pb(r: Refusal) -> pb::JoinRefusal {
    refusal_pb(
        &r.body.error_code,
        r.body.sub_code.as_deref().unwrap_or("refused"),
        r.body.description,
    )
}

/// Calls that carry credentials or change the cluster are refused on a plaintext connection,
/// before anything in them is read.
fn require_tls<T>(request: &Request<T>, call: &str) -> Result<(), Status> {
    if peer(request).is_some_and(|p| p.tls) {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "{call} carries credentials or changes the cluster, so it is only served over TLS; fix: call this port with TLS (the same port speaks both; trust the node by the pin `stackring inspect` prints)"
    )))
}

/// The gRPC Admin service: the HTTP admin calls, for programs.
pub(crate) struct AdminService {
    node: Arc<ClusterNode>,
}

impl AdminService {
    async fn authorize(
        &self,
        source: Option<IpAddr>,
        credentials: Option<&pb::AdminCredentials>,
    ) -> Result<(), Status> {
        let given = credentials.map(|c| (c.username.as_str(), c.password.as_str()));
        self.node
            .check_credentials(source, given)
            .await
            .map_err(|denied| match denied {
                Denied::Invalid => Status::unauthenticated(
                    "this call changes the cluster: send the cluster credentials",
                ),
                throttled => denied_status(&throttled, source),
            })
    }
}

/// An admin answer: the same JSON the HTTP API returns, or the refusal as a status.
fn admin_reply<T: serde::Serialize>(
    result: Result<T, Refusal>,
) -> Result<Response<pb::AdminReply>, Status> {
    let value = result?;
    let json = serde_json::to_string(&value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(pb::AdminReply { json }))
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn change_external_addrs(
        &self,
        request: Request<pb::ExternalAddrsRequest>,
    ) -> Result<Response<pb::AdminReply>, Status> {
        require_tls(&request, "Admin")?;
        let source = source(&request);
        let r = request.into_inner();
        self.authorize(source, r.credentials.as_ref()).await?;
        let (op, addrs) = external_change(&r.action, &r.addrs)?;
        admin_reply(self.node.change_external(&r.node_id, op, addrs).await)
    }

    async fn set_addr(
        &self,
        request: Request<pb::SetAddrRequest>,
    ) -> Result<Response<pb::AdminReply>, Status> {
        require_tls(&request, "Admin")?;
        let source = source(&request);
        let r = request.into_inner();
        self.authorize(source, r.credentials.as_ref()).await?;
        let ip = addr_change(&r.addr)?;
        admin_reply(self.node.set_addr(&r.node_id, ip).await)
    }

    async fn forget(
        &self,
        request: Request<pb::ForgetRequest>,
    ) -> Result<Response<pb::AdminReply>, Status> {
        require_tls(&request, "Admin")?;
        let source = source(&request);
        let r = request.into_inner();
        self.authorize(source, r.credentials.as_ref()).await?;
        admin_reply(self.node.forget(&r.node_id).await)
    }
}

/// The gRPC Cluster service: joins, relayed admin changes, the member list and its changes.
pub(crate) struct ClusterService {
    node: Arc<ClusterNode>,
}

fn member_pb(m: &MemberView) -> pb::Member {
    pb::Member {
        id: m.entry.id.clone(),
        status: m.status.as_str().into(),
        state: m.entry.state.as_str().into(),
        addr: m.entry.addr.clone(),
        external_addrs: m.entry.external_addrs.clone(),
        family: m.entry.family.clone(),
        advertised_grpc: m.entry.advertised_grpc.clone(),
        advertised_http: m.entry.advertised_http.clone(),
        advertised_gossip: m.entry.advertised_gossip.clone(),
        listen_grpc: m.entry.listen_grpc.clone(),
        zone: m.entry.zone.clone(),
        hostname: m.entry.hostname.clone(),
        last_seen_ms_ago: m.last_seen_ms_ago,
        local: m.local,
        registered_unix: m.entry.registered_unix,
    }
}

fn members_reply(node: &ClusterNode) -> pb::MembersReply {
    match node.members() {
        Some((name, members)) => pb::MembersReply {
            cluster_name: name,
            members: members.iter().map(member_pb).collect(),
        },
        None => pb::MembersReply::default(),
    }
}

fn refusal_pb(error_code: &str, sub_code: &str, description: String) -> pb::JoinRefusal {
    pb::JoinRefusal {
        error_code: error_code.into(),
        sub_code: sub_code.into(),
        description,
    }
}

type MembersStream = Pin<Box<dyn Stream<Item = Result<pb::MembersReply, Status>> + Send>>;

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinReply>, Status> {
        require_tls(&request, "Join")?;
        let source = source(&request);
        let req = request.into_inner();
        let joiner = req.node_id.clone();
        let csr_pem = req.csr_pem;
        let facts = JoinerFacts {
            cluster_name: req.cluster_name,
            node_id: req.node_id,
            has_ipv4: req.has_ipv4,
            has_ipv6: req.has_ipv6,
            use_internal_ipv6: req.use_internal_ipv6,
        };
        // A token that does not parse is refused like an unknown one, through the same guard.
        let auth = if req.token.is_empty() {
            JoinAuth::Credentials {
                username: req.username,
                password: req.password,
            }
        } else {
            JoinAuth::Token(
                TokenCredential::parse_wire(&req.token)
                    .unwrap_or_else(|_| TokenCredential::never()),
            )
        };
        let reply = match self.node.admit(source, facts, auth).await {
            Ok(Admission { record, seeds }) => {
                let ips: Vec<IpAddr> = source.into_iter().collect();
                let issued = match self.node.tls().issue(&csr_pem, &joiner, &ips) {
                    Ok(issued) => issued,
                    Err(e) => {
                        return Ok(Response::new(pb::JoinReply {
                            refusal: Some(refusal_pb(
                                "NodeBootstrapError",
                                "bad_csr",
                                format!("the joiner's certificate request was refused: {e}"),
                            )),
                            ..Default::default()
                        }))
                    }
                };
                pb::JoinReply {
                    node_cert_pem: issued.node_cert_pem,
                    ca_cert_pem: issued.ca_cert_pem,
                    ca_key_pem: issued.ca_key_pem,
                    refusal: None,
                    cluster_name: record.name.clone(),
                    family: record.family.as_str().into(),
                    use_internal_ipv6: record.use_internal_ipv6,
                    username: record.username.clone(),
                    password_hash: record.password_hash.clone(),
                    seeds,
                    gossip_keys: record
                        .gossip_keys
                        .iter()
                        .flat_map(|ring| ring.keys())
                        .map(|k| k.as_bytes().to_vec())
                        .collect(),
                }
            }
            Err(JoinDenied::Refused(r)) => pb::JoinReply {
                refusal: Some(refusal_pb(r.error_code, r.sub_code, r.description)),
                ..Default::default()
            },
            Err(JoinDenied::Throttled(denied)) => return Err(denied_status(&denied, source)),
        };
        Ok(Response::new(reply))
    }

    async fn apply_change(
        &self,
        request: Request<pb::ApplyChangeRequest>,
    ) -> Result<Response<pb::ApplyChangeReply>, Status> {
        let member = require_member(&request, "ApplyChange")?;
        let r = request.into_inner();
        check_relayer(&member, &r.from, "ApplyChange")?;
        let change = RelayedChange {
            node_id: r.node_id,
            action: r.action,
            addrs: r.addrs,
            sent_ms: r.sent_ms,
            nonce: r.nonce,
            proof: r.proof,
            from: r.from,
        };
        // Refusals travel in the reply (the relaying node shows them to its operator as they are).
        let reply = match self.node.apply_relayed(change).await {
            Ok((version, list)) => pb::ApplyChangeReply {
                refusal: None,
                version,
                external_addrs: list.iter().map(|a| a.to_string()).collect(),
            },
            Err(r) => pb::ApplyChangeReply {
                refusal: Some(refused_pb(r)),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn change_gossip_keys(
        &self,
        request: Request<pb::GossipKeysRequest>,
    ) -> Result<Response<pb::GossipKeysReply>, Status> {
        let member = require_member(&request, "ChangeGossipKeys")?;
        let r = request.into_inner();
        check_relayer(&member, &r.from, "ChangeGossipKeys")?;
        let result = match crate::core::seal::KeyringOp::parse(&r.action, &r.key, &r.key_id) {
            Ok(op) => {
                self.node
                    .apply_relayed_keyring(&r.node_id, op, &r.from)
                    .await
            }
            Err(why) => Err(Refusal::invalid(why)),
        };
        let reply = match result {
            Ok(ids) => pb::GossipKeysReply {
                refusal: None,
                key_ids: ids.iter().map(|i| i.to_string()).collect(),
            },
            Err(r) => pb::GossipKeysReply {
                refusal: Some(refused_pb(r)),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn members(
        &self,
        _: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        Ok(Response::new(members_reply(&self.node)))
    }

    type WatchStream = MembersStream;

    /// Sends the member list, then each change of it (status and entries; the last-seen clock
    /// alone is not a change), woken by the node's member updates rather than by polling.
    async fn watch(
        &self,
        _: Request<pb::MembersRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let node = self.node.clone();
        let updates = node.member_updates();
        let stream = futures::stream::unfold(
            (node, updates, None::<pb::MembersReply>),
            |(node, mut updates, last)| async move {
                let comparable = |r: &pb::MembersReply| {
                    let mut r = r.clone();
                    r.members.iter_mut().for_each(|m| m.last_seen_ms_ago = 0);
                    r
                };
                loop {
                    let mut reply = members_reply(&node);
                    reply.members.sort_by(|a, b| a.id.cmp(&b.id));
                    if last.as_ref().map(comparable) != Some(comparable(&reply)) {
                        return Some((Ok(reply.clone()), (node, updates, Some(reply))));
                    }
                    updates.changed().await.ok()?;
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
