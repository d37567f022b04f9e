//! This node's TLS material as its servers and clients use it: a self-signed certificate until it
//! is a member (its pin is what a joiner or an operator pins), then its CA-signed node
//! certificate. Swapped in place when the node creates or joins a cluster or renews: each new
//! handshake reads the current configuration.

use crate::agent::pki::{
    self, ClusterCa, NodeCert, NodeCredentials, NodeId, NodeKey, PkiError, PkiFiles, SelfSigned,
    ServerIdentity, SpkiPin,
};
use rustls::{ClientConfig, ServerConfig};
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

const PIN_OF_SELF_SIGNED: &str = "this node's self-signed certificate (not in a cluster yet)";
const PIN_OF_CLUSTER_CA: &str = "the cluster CA";

/// The pin clients check, as the files under `state_dir` hold it (for `inspect`, which reads
/// them without a daemon): the cluster CA's for a member, else the self-signed certificate's.
/// None before the daemon first ran.
pub(crate) fn pin_on_disk(state_dir: &Path, member: bool) -> Option<(SpkiPin, &'static str)> {
    let files = PkiFiles::new(state_dir);
    if member {
        if let Ok(Some(ca)) = files.load_ca_cert() {
            return Some((ca.pin(), PIN_OF_CLUSTER_CA));
        }
    }
    match files.load_self_signed() {
        Ok(Some(own)) => Some((own.pin(), PIN_OF_SELF_SIGNED)),
        _ => None,
    }
}

/// gRPC is HTTP/2: clients and servers agree on it in the handshake.
const ALPN_H2: &[u8] = b"h2";
/// The TCP side of the gossip port (`membership::serve_discovery`): its own protocol name, so a
/// discovery client that reached another TLS port (or an HTTPS client that reached this one) fails
/// in the handshake, not later on a confusing answer.
const ALPN_DISCOVERY: &[u8] = b"stackring-discovery";

struct Configs {
    grpc: Arc<ServerConfig>,
    https: Arc<ServerConfig>,
    discovery: Arc<ServerConfig>,
}

enum Material {
    /// Not in a cluster: the self-signed certificate made at first start.
    Alone { own: SelfSigned, configs: Configs },
    /// A member: its node certificate, the cluster CA and (every member can sign joiners) the CA's
    /// key.
    Member {
        node: NodeCredentials,
        ca: Arc<ClusterCa>,
        configs: Configs,
    },
}

/// What a joiner receives with its signed certificate.
pub(crate) struct Issued {
    pub(crate) node_cert_pem: String,
    pub(crate) ca_cert_pem: String,
    pub(crate) ca_key_pem: String,
}

pub(crate) struct NodeTls {
    files: PkiFiles,
    material: RwLock<Material>,
    /// Counts replacements of `material`: a client configuration cached under an older count was
    /// built from certificates no longer held.
    generation: std::sync::atomic::AtomicU64,
}

fn with_alpn(config: Arc<ServerConfig>, alpn: &[u8]) -> Arc<ServerConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

fn alone(own: SelfSigned) -> Result<Material, PkiError> {
    let https = pki::server_config(ServerIdentity::SelfSigned(&own))?;
    let configs = Configs {
        grpc: with_alpn(https.clone(), ALPN_H2),
        discovery: with_alpn(https.clone(), ALPN_DISCOVERY),
        https: with_alpn(https, b"http/1.1"),
    };
    Ok(Material::Alone { own, configs })
}

fn member(node: NodeCredentials, ca: Arc<ClusterCa>) -> Result<Material, PkiError> {
    let grpc = with_alpn(pki::server_config_member(&node, ca.cert())?, ALPN_H2);
    let plain = pki::server_config(ServerIdentity::Member {
        node: &node,
        ca: ca.cert(),
    })?;
    let configs = Configs {
        grpc,
        discovery: with_alpn(plain.clone(), ALPN_DISCOVERY),
        https: with_alpn(plain, b"http/1.1"),
    };
    Ok(Material::Member { node, ca, configs })
}

impl NodeTls {
    /// The node's material from `state_dir`: its node certificate when `member` (the cluster
    /// record exists), else its self-signed one (made now if there is none).
    pub(crate) fn load(
        state_dir: &Path,
        node_id: &str,
        ips: &[IpAddr],
        member_of_cluster: bool,
    ) -> Result<Arc<NodeTls>, PkiError> {
        let node_id = NodeId::from_str(node_id)?;
        std::fs::create_dir_all(state_dir).map_err(|error| PkiError::Write {
            path: state_dir.to_owned(),
            error,
        })?;
        let files = PkiFiles::new(state_dir);
        let now = SystemTime::now();
        // The cluster record is written after the certificates: without it, node and CA files are
        // what a create or join left when it was killed before it was acknowledged. They are not
        // read (so they cannot stop the start); the next create or join replaces them.
        let material = if member_of_cluster {
            match (files.load_node()?, files.load_ca()?) {
                (Some(node), Some(ca)) => member(node, Arc::new(ca))?,
                _ => alone(files.self_signed(&node_id, ips, now)?)?,
            }
        } else {
            if let Err(e) = files.settle() {
                log::warn!("not a member, so not needed: {e}");
            }
            let left: Vec<String> = [files.node_cert_path(), files.ca_cert_path()]
                .iter()
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            if !left.is_empty() {
                log::warn!(
                    "not a member (no cluster record), so {} (left by a create or join that did not finish) not used; the next create or join replaces them",
                    left.join(" and ")
                );
            }
            alone(files.self_signed(&node_id, ips, now)?)?
        };
        Ok(Arc::new(NodeTls {
            files,
            material: RwLock::new(material),
            generation: Default::default(),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Material> {
        self.material.read().unwrap_or_else(|p| p.into_inner())
    }

    fn replace(&self, material: Material) {
        *self.material.write().unwrap_or_else(|p| p.into_inner()) = material;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Changes whenever the node's certificates do (joined, renewed, a new CA).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// For the gRPC port's TLS handshakes.
    pub(crate) fn grpc_server(&self) -> Arc<ServerConfig> {
        match &*self.read() {
            Material::Alone { configs, .. } | Material::Member { configs, .. } => {
                configs.grpc.clone()
            }
        }
    }

    /// For the HTTPS port's handshakes.
    pub(crate) fn https_server(&self) -> Arc<ServerConfig> {
        match &*self.read() {
            Material::Alone { configs, .. } | Material::Member { configs, .. } => {
                configs.https.clone()
            }
        }
    }

    /// For the TLS handshakes on the TCP side of the gossip port (no client certificate: a joiner
    /// has none yet).
    pub(crate) fn discovery_server(&self) -> Arc<ServerConfig> {
        match &*self.read() {
            Material::Alone { configs, .. } | Material::Member { configs, .. } => {
                configs.discovery.clone()
            }
        }
    }

    /// What a client pins: the cluster CA's key for a member, the self-signed certificate's key
    /// before.
    pub(crate) fn pin(&self) -> SpkiPin {
        match &*self.read() {
            Material::Alone { own, .. } => own.pin(),
            Material::Member { ca, .. } => ca.pin(),
        }
    }

    /// What `pin()` is the pin of, in words.
    pub(crate) fn pin_of(&self) -> &'static str {
        match &*self.read() {
            Material::Alone { .. } => PIN_OF_SELF_SIGNED,
            Material::Member { .. } => PIN_OF_CLUSTER_CA,
        }
    }

    /// When this node's certificate expires (a member's node certificate).
    pub(crate) fn node_cert_expiry(&self) -> Option<SystemTime> {
        match &*self.read() {
            Material::Alone { .. } => None,
            Material::Member { node, .. } => Some(node.cert().not_after()),
        }
    }

    /// A client of another member: presents this node's certificate, accepts a server of the
    /// same cluster (named `expect` when given). None before this node is a member.
    pub(crate) fn member_client(
        &self,
        expect: Option<&str>,
    ) -> Result<Option<Arc<ClientConfig>>, PkiError> {
        Ok(self.member_client_bare(expect)?.map(h2_client))
    }

    /// [`member_client`](Self::member_client) for the TCP side of a member's gossip port (the
    /// reachability prober's gossip probe).
    pub(crate) fn member_discovery_client(
        &self,
        expect: Option<&str>,
    ) -> Result<Option<Arc<ClientConfig>>, PkiError> {
        Ok(self.member_client_bare(expect)?.map(discovery_client))
    }

    fn member_client_bare(
        &self,
        expect: Option<&str>,
    ) -> Result<Option<Arc<ClientConfig>>, PkiError> {
        let expect = expect.map(NodeId::from_str).transpose()?;
        match &*self.read() {
            Material::Alone { .. } => Ok(None),
            Material::Member { node, ca, .. } => Ok(Some(pki::client_config_mutual(
                node,
                ca.cert(),
                expect.as_ref(),
            )?)),
        }
    }

    /// Creates the cluster's CA and this node's certificate, durably, and serves them from now on.
    /// `node_id` is the id the node takes in the cluster (a bootstrap request may name it).
    pub(crate) fn create_cluster(
        &self,
        cluster_name: &str,
        node_id: &str,
        ips: &[IpAddr],
    ) -> Result<(), PkiError> {
        let node_id = NodeId::from_str(node_id)?;
        let now = SystemTime::now();
        let ca = ClusterCa::generate(cluster_name, now)?;
        let key = NodeKey::generate()?;
        let cert = ca.sign_node(&key.csr_pem(&node_id)?, &node_id, ips, now)?;
        let node = NodeCredentials::new(cert, key)?;
        self.files.save_ca(&ca)?;
        self.files.save_node(&node)?;
        self.replace(member(node, Arc::new(ca))?);
        Ok(())
    }

    /// Signs a joiner's CSR (`Join`): its certificate, with the CA a member keeps.
    pub(crate) fn issue(
        &self,
        csr_pem: &str,
        node_id: &str,
        ips: &[IpAddr],
    ) -> Result<Issued, PkiError> {
        let node_id = NodeId::from_str(node_id)?;
        match &*self.read() {
            Material::Alone { .. } => Err(PkiError::NotMember),
            Material::Member { ca, .. } => {
                let cert = ca.sign_node(csr_pem, &node_id, ips, SystemTime::now())?;
                Ok(Issued {
                    node_cert_pem: cert.pem(),
                    ca_cert_pem: ca.cert_pem(),
                    ca_key_pem: ca.key_pem(),
                })
            }
        }
    }

    /// A new key and its CSR, for a join as `node_id` (the key stays here).
    pub(crate) fn join_request(&self, node_id: &str) -> Result<(NodeKey, String), PkiError> {
        let key = NodeKey::generate()?;
        let csr = key.csr_pem(&NodeId::from_str(node_id)?)?;
        Ok((key, csr))
    }

    /// Keeps what a member issued at join, durably, and serves it from now on.
    pub(crate) fn adopt(
        &self,
        key: NodeKey,
        issued: &Issued,
        node_id: &str,
    ) -> Result<(), PkiError> {
        let node_id = NodeId::from_str(node_id)?;
        let ca = ClusterCa::from_pem(&issued.ca_cert_pem, &issued.ca_key_pem)?;
        let cert = NodeCert::from_pem(&issued.node_cert_pem)?;
        if cert.node_id() != &node_id {
            return Err(PkiError::WrongNode {
                expected: node_id,
                presented: format!("node {}", cert.node_id()),
            });
        }
        let node = NodeCredentials::new(cert, key)?;
        self.files.save_ca(&ca)?;
        self.files.save_node(&node)?;
        self.replace(member(node, Arc::new(ca))?);
        Ok(())
    }

    /// Renews this node's certificate (signed with the CA it holds) once two thirds of its life
    /// have passed. True when it did.
    pub(crate) fn renew_if_due(&self, ips: &[IpAddr], now: SystemTime) -> Result<bool, PkiError> {
        let (ca, node_id) = match &*self.read() {
            Material::Member { node, ca, .. } if node.cert().needs_renewal(now) => {
                (ca.clone(), node.cert().node_id().clone())
            }
            _ => return Ok(false),
        };
        let key = NodeKey::generate()?;
        let cert = ca.sign_node(&key.csr_pem(&node_id)?, &node_id, ips, now)?;
        let node = NodeCredentials::new(cert, key)?;
        self.files.save_node(&node)?;
        self.replace(member(node, ca)?);
        Ok(true)
    }
}

/// A client configuration that speaks HTTP/2 (gRPC).
pub(crate) fn h2_client(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
    client_alpn(config, ALPN_H2)
}

/// A client configuration for the TCP side of a member's gossip port (`membership::ask_discovery`).
pub(crate) fn discovery_client(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
    client_alpn(config, ALPN_DISCOVERY)
}

fn client_alpn(config: Arc<ClientConfig>, alpn: &[u8]) -> Arc<ClientConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("stackring-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A create or join killed before its cluster record was written leaves node and CA files
    /// (whole, half, or garbage): a node that is not a member starts with its self-signed
    /// certificate whatever they hold; a member with such files is refused, naming them.
    #[test]
    fn a_node_that_is_not_a_member_starts_whatever_an_unfinished_create_left() {
        let leftovers: [(&str, &[(&str, &str)]); 4] = [
            (
                "the CA key alone",
                &[("ca.key", "-----BEGIN PRIVATE KEY-----\nAAAA")],
            ),
            (
                "the CA certificate alone",
                &[("ca.pem", "not a certificate")],
            ),
            ("the node key alone", &[("node.key", "half")]),
            (
                "garbage pairs",
                &[
                    ("ca.pem", "x"),
                    ("ca.key", "y"),
                    ("node.pem", "x"),
                    ("node.key", "y"),
                ],
            ),
        ];
        for (what, files) in leftovers {
            let dir = temp_dir("leftovers");
            for (name, text) in files {
                crate::agent::fsutil::write_atomic(&dir.join(name), text.as_bytes(), 0o600)
                    .unwrap();
            }
            let tls = NodeTls::load(&dir, "node1", &[], false)
                .unwrap_or_else(|e| panic!("{what}: not a member, yet refused: {e}"));
            assert_eq!(tls.pin_of(), PIN_OF_SELF_SIGNED, "{what}");
            assert!(tls.member_client(None).unwrap().is_none(), "{what}");
            if what == "garbage pairs" {
                let err = NodeTls::load(&dir, "node1", &[], true)
                    .err()
                    .map(|e| e.to_string());
                assert!(
                    err.as_deref().is_some_and(|e| e.contains("node.pem")),
                    "a member's broken files are named: {err:?}"
                );
            }
        }
    }
}
