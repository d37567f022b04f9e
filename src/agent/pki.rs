//! The cluster's PKI: the cluster CA, node keys and the certificates the CA signs for them at join,
//! the self-signed certificate of a node not yet bootstrapped, SPKI pins (join tokens), the files
//! under the state directory, and the rustls configurations built from them.
//!
//! Decisions are plain functions on typed values (`sign_node`, `needs_renewal`, the verifiers);
//! files are one adapter (`PkiFiles`). Every key is ECDSA P-256; every TLS configuration uses the
//! ring provider explicitly, never a process-wide default, so that no other crate's choice of
//! provider can change ours.

// Some of it (mandatory client auth, a pinned node id) is not used by the servers yet.
#![allow(dead_code)]

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::agent::fsutil::write_atomic;
use crate::core::net::valid_name;
pub(crate) use crate::core::pin::SpkiPin;

/// Clock skew between nodes: certificates start this long before they are made.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const NODE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// The self-signed certificate is kept across restarts and only pinned or trusted on first use,
/// so a short lifetime would only break clients that pinned it.
const SELF_SIGNED_LIFETIME: Duration = CA_LIFETIME;
/// The URI SAN that names the node a certificate belongs to.
const NODE_URI_PREFIX: &str = "stackring://node/";
const CA_CN_PREFIX: &str = "stackring cluster CA ";
/// What a key file's mode may have at most.
const KEY_MODE: u32 = 0o600;

/// Everything that can go wrong in the PKI, each a sentence that says what and the fix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PkiError {
    #[error("node id {0} cannot be used in a certificate: use 1 to 63 characters from A-Z a-z 0-9 . _ -")]
    BadNodeId(String),
    #[error("cluster name {0} cannot be used in the CA's name: use 1 to 63 characters from A-Z a-z 0-9 . _ -")]
    BadClusterName(String),
    #[error(transparent)]
    BadPin(#[from] crate::core::pin::PinError),
    #[error("could not make {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("the certificate signing request was refused: {0}; the joining node must send a new CSR (PEM \"CERTIFICATE REQUEST\", ECDSA P-256) made with its own key")]
    BadCsr(String),
    #[error("the certificate signing request's self-signature does not verify: it was altered or not signed by the key it carries; the joining node must make a new CSR")]
    CsrSignature,
    #[error("{what} is not a usable certificate: {reason}")]
    BadCert { what: &'static str, reason: String },
    #[error("{what} is not a usable private key: {reason}")]
    BadKey { what: &'static str, reason: String },
    #[error("{cert} and {key} do not belong together: the certificate is for another key; restore both from the same backup, or remove both to make new ones")]
    KeyMismatch { cert: String, key: String },
    #[error("the server presented a chain whose CA has pin {presented}, but the join pins {expected} (cluster.ca_pin, or the join token's): it is not the cluster that pin was copied from (or something in between answers), so the credentials were not sent; fix: check the address, and copy the pin again from `GET /v1/bootstrap` (tls.pin) or `stackring inspect` on a member, or print a new token there")]
    PinMismatch {
        expected: SpkiPin,
        presented: SpkiPin,
    },
    #[error("the peer's certificate is not signed by this cluster's CA (a node of another cluster, or something else answers there), so nothing was sent to it: check which node listens on that address")]
    OtherCa,
    #[error("the peer's certificate is for {presented}, but node {expected} was expected: check which node listens on that address")]
    WrongNode {
        expected: NodeId,
        /// `node <id>`, or what the certificate has instead.
        presented: String,
    },
    #[error(
        "cannot read {path}: {error}; check that the state directory is readable by stackring"
    )]
    Read { path: PathBuf, error: io::Error },
    #[error("cannot write {path}: {error}; check that the state directory exists, is writable and has space")]
    Write { path: PathBuf, error: io::Error },
    #[error("{path} has mode {mode:04o}, wider than 0600: other users may have read the private key; run `chmod 600 {path}` (and replace the key if they did)")]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("{path}: {reason}; {fix}")]
    BadFile {
        path: PathBuf,
        reason: String,
        fix: &'static str,
    },
    #[error("{present} exists but {missing} does not: they are written together; restore {missing} from a backup, or remove {present} to start over")]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error("could not build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("this node is not a member of a cluster: it holds no cluster CA to sign with; join through a member")]
    NotMember,
}

fn generate_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

/// A node's id as certificates carry it: a DNS-label-like name, so the URI SAN needs no escaping.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeId(String);

impl NodeId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    fn uri(&self) -> String {
        format!("{NODE_URI_PREFIX}{}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, PkiError> {
        if valid_name(s) {
            Ok(NodeId(s.to_owned()))
        } else {
            Err(PkiError::BadNodeId(excerpt(s)))
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// At most 40 characters of hostile input, quoted, for an error message.
fn excerpt(s: &str) -> String {
    let head: String = s.chars().take(40).collect();
    if head.len() < s.len() {
        format!("{head:?}... ({} bytes)", s.len())
    } else {
        format!("{head:?}")
    }
}

/// The pin of a certificate's public key.
pub(crate) fn pin_of_cert(cert_der: &[u8]) -> Result<SpkiPin, PkiError> {
    let cert = parse_cert(cert_der, "the certificate")?;
    Ok(SpkiPin::of_spki(cert.public_key().raw))
}

fn parse_cert<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(PkiError::BadCert {
            what,
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(PkiError::BadCert {
            what,
            reason: e.to_string(),
        }),
    }
}

fn one_cert_from_pem(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, PkiError> {
    let bad = |reason: &str| PkiError::BadCert {
        what,
        reason: reason.into(),
    };
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    let cert = certs
        .next()
        .ok_or_else(|| bad("no PEM \"CERTIFICATE\" block"))?
        .map_err(|e| bad(&e.to_string()))?;
    if certs.next().is_some() {
        return Err(bad("more than one certificate; expected exactly one"));
    }
    parse_cert(&cert, what)?;
    Ok(cert)
}

fn key_from_pem(pem: &str, what: &'static str) -> Result<KeyPair, PkiError> {
    let key = KeyPair::from_pem(pem).map_err(|e| PkiError::BadKey {
        what,
        reason: format!("{e} (expected PEM \"PRIVATE KEY\", PKCS#8)"),
    })?;
    if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::BadKey {
            what,
            reason: "not an ECDSA P-256 key".into(),
        });
    }
    Ok(key)
}

fn to_offset(t: SystemTime) -> Result<time::OffsetDateTime, PkiError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Generate {
            what: "a certificate",
            source: rcgen::Error::Time,
        })?
        .as_secs();
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(PkiError::Generate {
            what: "a certificate",
            source: rcgen::Error::Time,
        })
}

fn from_timestamp(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    }
}

/// A random positive 16-byte serial: rcgen's default (a hash of the key) would repeat when a
/// node's certificate is renewed with the same key.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Generate {
            what: "a serial number",
            source: rcgen::Error::RingUnspecified,
        })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The parameters every leaf we make shares: node id as CN and URI SAN, the IPs, both TLS uses.
fn leaf_params(
    node_id: &NodeId,
    ips: &[IpAddr],
    now: SystemTime,
    lifetime: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, node_id.as_str());
    let mut ips = ips.to_vec();
    ips.sort();
    ips.dedup();
    params.subject_alt_names = ips.into_iter().map(SanType::IpAddress).collect();
    let uri = Ia5String::try_from(node_id.uri()).map_err(generate_err("the node's URI SAN"))?;
    params.subject_alt_names.push(SanType::URI(uri));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = to_offset(now.checked_sub(BACKDATE).unwrap_or(now))?;
    params.not_after = to_offset(now + lifetime)?;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// The cluster CA's certificate alone: what every member holds to verify its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CaCert {
    der: CertificateDer<'static>,
}

impl CaCert {
    pub(crate) fn from_pem(pem: &str) -> Result<Self, PkiError> {
        let der = one_cert_from_pem(pem, "the cluster CA certificate")?;
        Self::from_der(der)
    }

    pub(crate) fn from_der(der: CertificateDer<'static>) -> Result<Self, PkiError> {
        let cert = parse_cert(&der, "the cluster CA certificate")?;
        if !cert.is_ca() {
            return Err(PkiError::BadCert {
                what: "the cluster CA certificate",
                reason: "it is not a CA (basic constraints)".into(),
            });
        }
        Ok(CaCert { der })
    }

    pub(crate) fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    pub(crate) fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    pub(crate) fn pin(&self) -> SpkiPin {
        pin_of_cert(&self.der).expect("parsed when made")
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, PkiError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone())?;
        Ok(Arc::new(roots))
    }
}

fn pem_encode(tag: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

/// The cluster CA with its key: made by the node that creates the cluster, signs joiners.
pub(crate) struct ClusterCa {
    cert: CaCert,
    key: KeyPair,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterCa({})", self.cert.pin())
    }
}

impl ClusterCa {
    /// A new CA for `cluster_name`: P-256, ten years, may sign end-entity certificates only.
    pub(crate) fn generate(cluster_name: &str, now: SystemTime) -> Result<Self, PkiError> {
        if !valid_name(cluster_name) {
            return Err(PkiError::BadClusterName(excerpt(cluster_name)));
        }
        let key = KeyPair::generate().map_err(generate_err("the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{CA_CN_PREFIX}{cluster_name}"));
        // Path length 0: the CA signs nodes, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = to_offset(now.checked_sub(BACKDATE).unwrap_or(now))?;
        params.not_after = to_offset(now + CA_LIFETIME)?;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key)
            .map_err(generate_err("the CA certificate"))?;
        Ok(ClusterCa {
            cert: CaCert::from_der(cert.der().clone())?,
            key,
        })
    }

    /// The CA from its two PEM files' contents; the key must be the certificate's.
    pub(crate) fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert = CaCert::from_pem(cert_pem)?;
        let key = key_from_pem(key_pem, "the cluster CA key")?;
        if SpkiPin::of_spki(&key.subject_public_key_info()) != cert.pin() {
            return Err(PkiError::KeyMismatch {
                cert: "the CA certificate".into(),
                key: "the CA key".into(),
            });
        }
        Ok(ClusterCa { cert, key })
    }

    pub(crate) fn cert(&self) -> &CaCert {
        &self.cert
    }

    pub(crate) fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub(crate) fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub(crate) fn pin(&self) -> SpkiPin {
        self.cert.pin()
    }

    /// Signs a joiner's certificate. Only the public key is taken from the CSR (after its
    /// self-signature verifies): names, uses and lifetime are the CA's decision, so a joiner
    /// cannot ask for another node's id, a CA bit or someone else's address.
    pub(crate) fn sign_node(
        &self,
        csr_pem: &str,
        node_id: &NodeId,
        ips: &[IpAddr],
        now: SystemTime,
    ) -> Result<NodeCert, PkiError> {
        let public_key = csr_public_key(csr_pem)?;
        let mut params = leaf_params(node_id, ips, now, NODE_LIFETIME)?;
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(self.cert.der(), &self.key)
            .map_err(generate_err("the CA's issuer name"))?;
        let cert = params
            .signed_by(&public_key, &issuer)
            .map_err(generate_err("the node certificate"))?;
        NodeCert::from_der(cert.der().clone())
    }
}

/// The CSR's public key, once its self-signature verifies; nothing else of the CSR is used.
fn csr_public_key(csr_pem: &str) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    use x509_parser::certification_request::X509CertificationRequest;
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::BadCsr(format!("no PEM \"CERTIFICATE REQUEST\" block ({e})")))?;
    let csr = match X509CertificationRequest::from_der(der.as_ref()) {
        Ok(([], csr)) => csr,
        Ok(_) => return Err(PkiError::BadCsr("trailing bytes after the CSR".into())),
        Err(e) => return Err(PkiError::BadCsr(e.to_string())),
    };
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    let spki = csr.certification_request_info.subject_pki.raw;
    let key = rcgen::SubjectPublicKeyInfo::from_der(spki)
        .map_err(|e| PkiError::BadCsr(format!("its public key cannot be read ({e})")))?;
    if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::BadCsr("its key is not ECDSA P-256".into()));
    }
    Ok(key)
}

/// A node's private key (P-256). It never leaves the node: the CA sees only the CSR.
pub(crate) struct NodeKey(KeyPair);

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeKey({})",
            SpkiPin::of_spki(&self.0.subject_public_key_info())
        )
    }
}

impl NodeKey {
    pub(crate) fn generate() -> Result<Self, PkiError> {
        KeyPair::generate()
            .map(NodeKey)
            .map_err(generate_err("a node key"))
    }

    pub(crate) fn from_pem(pem: &str) -> Result<Self, PkiError> {
        key_from_pem(pem, "the node key").map(NodeKey)
    }

    pub(crate) fn pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// A CSR for `node_id`, signed by this key. The CA ignores everything in it but the key.
    pub(crate) fn csr_pem(&self, node_id: &NodeId) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, node_id.as_str());
        let uri = Ia5String::try_from(node_id.uri()).map_err(generate_err("the CSR"))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params
            .serialize_request(&self.0)
            .and_then(|csr| csr.pem())
            .map_err(generate_err("the CSR"))
    }

    fn pin(&self) -> SpkiPin {
        SpkiPin::of_spki(&self.0.subject_public_key_info())
    }

    fn rustls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.0.serialize_der()))
    }
}

/// A node's certificate (CA-signed or self-signed) with what renewal and peers read from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeCert {
    der: CertificateDer<'static>,
    node_id: NodeId,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl NodeCert {
    pub(crate) fn from_pem(pem: &str) -> Result<Self, PkiError> {
        Self::from_der(one_cert_from_pem(pem, "the node certificate")?)
    }

    pub(crate) fn from_der(der: CertificateDer<'static>) -> Result<Self, PkiError> {
        let cert = parse_cert(&der, "the node certificate")?;
        let validity = cert.validity();
        let (not_before, not_after) = (
            from_timestamp(validity.not_before.timestamp()),
            from_timestamp(validity.not_after.timestamp()),
        );
        let node_id = node_id_of(&der).ok_or_else(|| PkiError::BadCert {
            what: "the node certificate",
            reason: format!("it names no node (no single {NODE_URI_PREFIX}<id> URI SAN)"),
        })?;
        Ok(NodeCert {
            der,
            node_id,
            not_before,
            not_after,
        })
    }

    pub(crate) fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    pub(crate) fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    pub(crate) fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub(crate) fn not_before(&self) -> SystemTime {
        self.not_before
    }

    pub(crate) fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// True once two thirds of the lifetime have passed (time to ask the CA for a new one while
    /// the old one still works), or the certificate has expired.
    pub(crate) fn needs_renewal(&self, now: SystemTime) -> bool {
        renewal_due(self.not_before, self.not_after, now)
    }
}

fn renewal_due(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    now >= not_before + lifetime * 2 / 3 || now >= not_after
}

/// The node id a certificate names in its `stackring://node/<id>` URI SAN; `None` when there is
/// none, more than one, or the id is not a valid node id.
pub(crate) fn node_id_of(cert_der: &[u8]) -> Option<NodeId> {
    let cert = parse_cert(cert_der, "the certificate").ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX),
            _ => None,
        });
    let id = ids.next()?;
    if ids.next().is_some() {
        return None;
    }
    id.parse().ok()
}

/// A node certificate with its key; the key is checked to be the certificate's.
#[derive(Debug)]
pub(crate) struct NodeCredentials {
    cert: NodeCert,
    key: NodeKey,
}

impl NodeCredentials {
    pub(crate) fn new(cert: NodeCert, key: NodeKey) -> Result<Self, PkiError> {
        if pin_of_cert(cert.der())? != key.pin() {
            return Err(PkiError::KeyMismatch {
                cert: "the node certificate".into(),
                key: "the node key".into(),
            });
        }
        Ok(NodeCredentials { cert, key })
    }

    pub(crate) fn cert(&self) -> &NodeCert {
        &self.cert
    }

    pub(crate) fn key(&self) -> &NodeKey {
        &self.key
    }
}

/// The certificate a node serves before it belongs to a cluster: self-signed, made at first
/// start and kept (clients pin it or trust it on first use, so it must not change per restart).
#[derive(Debug)]
pub(crate) struct SelfSigned(NodeCredentials);

impl SelfSigned {
    pub(crate) fn generate(
        node_id: &NodeId,
        ips: &[IpAddr],
        now: SystemTime,
    ) -> Result<Self, PkiError> {
        let key = NodeKey::generate()?;
        let params = leaf_params(node_id, ips, now, SELF_SIGNED_LIFETIME)?;
        let cert = params
            .self_signed(&key.0)
            .map_err(generate_err("the self-signed certificate"))?;
        Ok(SelfSigned(NodeCredentials::new(
            NodeCert::from_der(cert.der().clone())?,
            key,
        )?))
    }

    pub(crate) fn credentials(&self) -> &NodeCredentials {
        &self.0
    }

    pub(crate) fn pin(&self) -> SpkiPin {
        self.0.key.pin()
    }
}

/// What a server without client authentication presents.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ServerIdentity<'a> {
    /// A member: its node certificate and the CA (so joiners can check the CA's pin).
    Member {
        node: &'a NodeCredentials,
        ca: &'a CaCert,
    },
    /// A node not yet in a cluster.
    SelfSigned(&'a SelfSigned),
}

/// TLS 1.3 only, on every server and client: in TLS 1.2 the certificates travel in clear, and ours
/// name the node (URI SAN `stackring://node/<id>`), its addresses and the cluster (the CA's
/// name); in 1.3 everything after the hellos is encrypted. Every client of ours speaks 1.3, and
/// so do the operators' (curl with OpenSSL 3, grpcurl, browsers): a 1.2-only client is refused in
/// the handshake (`protocol_version` alert).
const TLS_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Our verifiers check the CA (and node id), never the name a client dials, so a client names
/// nothing in its hello: no SNI, which would carry a seed's host name in clear.
fn without_sni(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.enable_sni = false;
    Arc::new(config)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn member_chain(node: &NodeCredentials, ca: &CaCert) -> Vec<CertificateDer<'static>> {
    vec![node.cert.der.clone(), ca.der.clone()]
}

/// Node-to-node server (gRPC): presents the node certificate and the CA, and requires a client
/// certificate that chains to the cluster CA (the only root).
pub(crate) fn server_config_mutual(
    node: &NodeCredentials,
    ca: &CaCert,
) -> Result<Arc<ServerConfig>, PkiError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(ca.roots()?, provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(member_chain(node, ca), node.key.rustls_key())?;
    Ok(Arc::new(config))
}

/// A member's gRPC server: presents the node certificate and the CA; a client certificate is
/// optional (a joiner has none yet) but, when presented, must chain to the cluster CA. The calls
/// that need a member (`ApplyChange`) check that one was presented.
pub(crate) fn server_config_member(
    node: &NodeCredentials,
    ca: &CaCert,
) -> Result<Arc<ServerConfig>, PkiError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(ca.roots()?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(member_chain(node, ca), node.key.rustls_key())?;
    Ok(Arc::new(config))
}

/// A server without client authentication (the HTTPS API), as a member or self-signed.
pub(crate) fn server_config(identity: ServerIdentity<'_>) -> Result<Arc<ServerConfig>, PkiError> {
    let (chain, key) = match identity {
        ServerIdentity::Member { node, ca } => (member_chain(node, ca), node.key.rustls_key()),
        ServerIdentity::SelfSigned(own) => (vec![own.0.cert.der.clone()], own.0.key.rustls_key()),
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS_VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Node-to-node client: presents the node certificate; accepts a server whose chain leads to the
/// cluster CA and, when `expect` is given, whose certificate names that node.
pub(crate) fn client_config_mutual(
    node: &NodeCredentials,
    ca: &CaCert,
    expect: Option<&NodeId>,
) -> Result<Arc<ClientConfig>, PkiError> {
    let verifier = ClusterVerifier {
        roots: ca.roots()?,
        expect: expect.cloned(),
        algs: provider().signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(member_chain(node, ca), node.key.rustls_key())?;
    Ok(without_sni(config))
}

/// A joiner's client: accepts the server only if its chain's CA has `pin` (see `PinnedVerifier`).
pub(crate) fn client_config_pinned(pin: SpkiPin) -> Result<Arc<ClientConfig>, PkiError> {
    let verifier = PinnedVerifier {
        expected: Some(pin),
        seen: SeenPin::default(),
        algs: provider().signature_verification_algorithms,
    };
    no_client_cert(verifier)
}

/// Trust on first use: accepts any server whose leaf is signed by the last certificate it
/// presents, and records that certificate's pin so the caller can log or keep what it trusted.
pub(crate) fn client_config_tofu() -> Result<(Arc<ClientConfig>, SeenPin), PkiError> {
    let seen = SeenPin::default();
    let verifier = PinnedVerifier {
        expected: None,
        seen: seen.clone(),
        algs: provider().signature_verification_algorithms,
    };
    Ok((no_client_cert(verifier)?, seen))
}

fn no_client_cert(verifier: PinnedVerifier) -> Result<Arc<ClientConfig>, PkiError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(without_sni(config))
}

/// The CA pin a TOFU handshake accepted (`None` until one has).
#[derive(Clone, Debug, Default)]
pub(crate) struct SeenPin(Arc<Mutex<Option<SpkiPin>>>);

impl SeenPin {
    pub(crate) fn get(&self) -> Option<SpkiPin> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, pin: SpkiPin) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(pin);
    }
}

/// Our refusal as rustls carries it (a bad-certificate alert); `handshake_refusal` reads it back.
fn refuse(e: PkiError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The PKI's own reason when a TLS handshake failed because one of our verifiers refused the
/// peer (wrong pin, wrong node), so the caller can show that sentence instead of rustls' text.
pub(crate) fn handshake_refusal(err: &io::Error) -> Option<&PkiError> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<PkiError>()
        }
        _ => None,
    }
}

/// Verifies a server to the cluster CA, but not its name. Nodes reach each other by addresses
/// that need not be in the certificate (sidecar proxies, NAT, renumbered hosts), so the address
/// proves nothing; what identifies a peer is the node id the CA wrote into the URI SAN.
#[derive(Debug)]
struct ClusterVerifier {
    roots: Arc<RootCertStore>,
    expect: Option<NodeId>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ClusterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let leaf = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                refuse(PkiError::OtherCa)
            }
            other => other,
        })?;
        if let Some(expected) = &self.expect {
            let presented = node_id_of(end_entity);
            if presented.as_ref() != Some(expected) {
                return Err(refuse(PkiError::WrongNode {
                    expected: expected.clone(),
                    presented: presented.map_or_else(
                        || format!("no node (no single {NODE_URI_PREFIX}<id> URI SAN)"),
                        |id| format!("node {id}"),
                    ),
                }));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A joiner has no CA certificate yet, only its pin (or nothing, for TOFU). The chain's CA is the
/// last certificate presented (the leaf itself when it is alone, i.e. self-signed); it must have
/// the pin, and the leaf must chain to it and be valid now. Names are not checked, as above.
#[derive(Debug)]
struct PinnedVerifier {
    expected: Option<SpkiPin>,
    seen: SeenPin,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (anchor, between) = match intermediates.split_last() {
            Some((last, rest)) => (last, rest),
            None => (end_entity, intermediates),
        };
        let presented = pin_of_cert(anchor).map_err(refuse)?;
        if let Some(expected) = self.expected {
            if presented != expected {
                return Err(refuse(PkiError::PinMismatch {
                    expected,
                    presented,
                }));
            }
        }
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let leaf = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &roots,
            between,
            now,
            self.algs.all,
        )?;
        self.seen.set(presented);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The PKI's files in the state directory. Every file is written whole and durably, mode 0600;
/// key files wider than 0600 are refused on load.
#[derive(Clone, Debug)]
pub(crate) struct PkiFiles {
    dir: PathBuf,
}

const RESTORE_CA: &str =
    "restore ca.pem and ca.key from a backup (without them no node can join), or make a new cluster";
const RESTORE_NODE: &str =
    "remove node.pem and node.key and join the cluster again to get a new certificate";
const REMAKE_SELF: &str =
    "remove self.pem and self.key: a new pair is made at the next start (clients that pinned the old one must pin the new one)";

impl PkiFiles {
    pub(crate) fn new(state_dir: &Path) -> Self {
        PkiFiles {
            dir: state_dir.to_owned(),
        }
    }

    pub(crate) fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub(crate) fn ca_key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub(crate) fn node_cert_path(&self) -> PathBuf {
        self.dir.join("node.pem")
    }
    pub(crate) fn node_key_path(&self) -> PathBuf {
        self.dir.join("node.key")
    }
    pub(crate) fn self_cert_path(&self) -> PathBuf {
        self.dir.join("self.pem")
    }
    pub(crate) fn self_key_path(&self) -> PathBuf {
        self.dir.join("self.key")
    }

    /// The CA with its key (only on the node that made the cluster, or one given the key).
    pub(crate) fn save_ca(&self, ca: &ClusterCa) -> Result<(), PkiError> {
        self.save_pair(
            &self.ca_cert_path(),
            &self.ca_key_path(),
            &ca.cert_pem(),
            &ca.key_pem(),
        )
    }

    /// The CA certificate alone, as every member keeps it.
    pub(crate) fn save_ca_cert(&self, ca: &CaCert) -> Result<(), PkiError> {
        write(&self.ca_cert_path(), &ca.pem())
    }

    /// `None` on a member that holds only the CA certificate (it cannot sign joiners).
    pub(crate) fn load_ca(&self) -> Result<Option<ClusterCa>, PkiError> {
        self.settle_pair(&self.ca_cert_path(), &self.ca_key_path())?;
        if !self.ca_key_path().exists() {
            return Ok(None);
        }
        let Some((cert, key)) = self.load_pair(&self.ca_cert_path(), &self.ca_key_path())? else {
            return Ok(None);
        };
        ClusterCa::from_pem(&cert, &key)
            .map(Some)
            .map_err(|e| self.bad_file(e, &self.ca_cert_path(), &self.ca_key_path(), RESTORE_CA))
    }

    pub(crate) fn load_ca_cert(&self) -> Result<Option<CaCert>, PkiError> {
        let path = self.ca_cert_path();
        let Some(pem) = read_optional(&path)? else {
            return Ok(None);
        };
        CaCert::from_pem(&pem)
            .map(Some)
            .map_err(|e| PkiError::BadFile {
                path,
                reason: e.to_string(),
                fix: RESTORE_CA,
            })
    }

    pub(crate) fn save_node(&self, node: &NodeCredentials) -> Result<(), PkiError> {
        self.save_pair(
            &self.node_cert_path(),
            &self.node_key_path(),
            &node.cert.pem(),
            &node.key.pem(),
        )
    }

    pub(crate) fn load_node(&self) -> Result<Option<NodeCredentials>, PkiError> {
        let (cert_path, key_path) = (self.node_cert_path(), self.node_key_path());
        let Some((cert, key)) = self.load_pair(&cert_path, &key_path)? else {
            return Ok(None);
        };
        load_credentials(&cert, &key)
            .map(Some)
            .map_err(|e| self.bad_file(e, &cert_path, &key_path, RESTORE_NODE))
    }

    pub(crate) fn save_self_signed(&self, own: &SelfSigned) -> Result<(), PkiError> {
        self.save_pair(
            &self.self_cert_path(),
            &self.self_key_path(),
            &own.0.cert.pem(),
            &own.0.key.pem(),
        )
    }

    pub(crate) fn load_self_signed(&self) -> Result<Option<SelfSigned>, PkiError> {
        let (cert_path, key_path) = (self.self_cert_path(), self.self_key_path());
        let Some((cert, key)) = self.load_pair(&cert_path, &key_path)? else {
            return Ok(None);
        };
        load_credentials(&cert, &key)
            .map(|c| Some(SelfSigned(c)))
            .map_err(|e| self.bad_file(e, &cert_path, &key_path, REMAKE_SELF))
    }

    /// The kept self-signed certificate, or a new one (saved) at first start, or when the node id
    /// changed or the old one expired.
    pub(crate) fn self_signed(
        &self,
        node_id: &NodeId,
        ips: &[IpAddr],
        now: SystemTime,
    ) -> Result<SelfSigned, PkiError> {
        if let Some(own) = self.load_self_signed()? {
            let cert = own.0.cert();
            if cert.node_id() == node_id && now < cert.not_after() {
                return Ok(own);
            }
        }
        let own = SelfSigned::generate(node_id, ips, now)?;
        self.save_self_signed(&own)?;
        Ok(own)
    }

    /// Every file `PkiFiles` writes, for the removal of a killed writer's temporaries.
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        let pairs = [
            (self.ca_cert_path(), self.ca_key_path()),
            (self.node_cert_path(), self.node_key_path()),
            (self.self_cert_path(), self.self_key_path()),
        ];
        pairs
            .into_iter()
            .flat_map(|(cert, key)| [cert, pending_key_path(&key), key])
            .collect()
    }

    /// Finishes or undoes every pair save a killed process left (`settle_pair`).
    pub(crate) fn settle(&self) -> Result<(), PkiError> {
        self.settle_pair(&self.ca_cert_path(), &self.ca_key_path())?;
        self.settle_pair(&self.node_cert_path(), &self.node_key_path())?;
        self.settle_pair(&self.self_cert_path(), &self.self_key_path())
    }

    /// Replaces a certificate and its key as one change, whatever moment a kill or power loss
    /// strikes: the new key goes to `<key>.next`, then the certificate over the old one (the
    /// commit point), then the key over the old key. `settle_pair` finishes or undoes an
    /// interrupted save at the next load, so a new certificate never meets the old key.
    fn save_pair(
        &self,
        cert_path: &Path,
        key_path: &Path,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), PkiError> {
        let pending = pending_key_path(key_path);
        write(&pending, key_pem)?;
        write(cert_path, cert_pem)?;
        commit_key(&pending, key_path)
    }

    /// Finishes a `save_pair` that was killed after its commit point (the pending key fits the
    /// certificate: it becomes the key) or undoes one killed before it (the pending key is
    /// removed; the old pair, or none, stays).
    fn settle_pair(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        let pending = pending_key_path(key_path);
        let Some(next_key) = read_key(&pending)? else {
            return Ok(());
        };
        let committed = read_optional(cert_path)?
            .is_some_and(|cert| key_fits_cert(&cert, &next_key).unwrap_or(false));
        if committed {
            commit_key(&pending, key_path)?;
            log::warn!(
                "finished replacing {} and {}, which a killed process left half done",
                cert_path.display(),
                key_path.display()
            );
        } else {
            std::fs::remove_file(&pending).map_err(|error| PkiError::Write {
                path: pending.clone(),
                error,
            })?;
            log::warn!(
                "removed {}: a killed process left it before it replaced {} (kept as it was)",
                pending.display(),
                cert_path.display()
            );
        }
        Ok(())
    }

    /// Both files or neither; the key's mode is checked before it is read.
    fn load_pair(
        &self,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Option<(String, String)>, PkiError> {
        self.settle_pair(cert_path, key_path)?;
        let key = read_key(key_path)?;
        let cert = read_optional(cert_path)?;
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (Some(_), None) => Err(PkiError::HalfPair {
                present: cert_path.to_owned(),
                missing: key_path.to_owned(),
            }),
            (None, Some(_)) => Err(PkiError::HalfPair {
                present: key_path.to_owned(),
                missing: cert_path.to_owned(),
            }),
        }
    }

    /// Names the file a content error belongs to (the key's for key errors, else the cert's).
    fn bad_file(&self, e: PkiError, cert: &Path, key: &Path, fix: &'static str) -> PkiError {
        let path = match e {
            PkiError::BadKey { .. } => key,
            PkiError::KeyMismatch { .. } => {
                return PkiError::KeyMismatch {
                    cert: cert.display().to_string(),
                    key: key.display().to_string(),
                }
            }
            _ => cert,
        };
        PkiError::BadFile {
            path: path.to_owned(),
            reason: e.to_string(),
            fix,
        }
    }
}

fn load_credentials(cert: &str, key: &str) -> Result<NodeCredentials, PkiError> {
    NodeCredentials::new(NodeCert::from_pem(cert)?, NodeKey::from_pem(key)?)
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    write_atomic(path, text.as_bytes(), 0o600).map_err(|error| PkiError::Write {
        path: path.to_owned(),
        error,
    })
}

/// Where `save_pair` keeps a new key until its certificate is in place.
fn pending_key_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// Moves the pending key over the key, durably (the directory is synced).
fn commit_key(pending: &Path, key_path: &Path) -> Result<(), PkiError> {
    let failed = |error| PkiError::Write {
        path: key_path.to_owned(),
        error,
    };
    std::fs::rename(pending, key_path).map_err(failed)?;
    let dir = key_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

/// Whether `key_pem` is the private key of the (first) certificate in `cert_pem`.
fn key_fits_cert(cert_pem: &str, key_pem: &str) -> Result<bool, PkiError> {
    let cert = one_cert_from_pem(cert_pem, "the certificate")?;
    let key = key_from_pem(key_pem, "the key")?;
    Ok(pin_of_cert(&cert)? == SpkiPin::of_spki(&key.subject_public_key_info()))
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(PkiError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

fn read_key(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & !KEY_MODE != 0 {
                return Err(PkiError::KeyMode {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(PkiError::Read {
                path: path.to_owned(),
                error,
            })
        }
    }
    read_optional(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    fn id(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn member_at(ca: &ClusterCa, name: &str, now: SystemTime) -> NodeCredentials {
        let key = NodeKey::generate().unwrap();
        let csr = key.csr_pem(&id(name)).unwrap();
        let cert = ca
            .sign_node(&csr, &id(name), &[ip("10.0.0.1")], now)
            .unwrap();
        NodeCredentials::new(cert, key).unwrap()
    }

    fn member(ca: &ClusterCa, name: &str) -> NodeCredentials {
        member_at(ca, name, SystemTime::now())
    }

    fn new_ca(name: &str) -> ClusterCa {
        ClusterCa::generate(name, SystemTime::now()).unwrap()
    }

    /// The client writes "ping", the server answers "pong". Returns the node id the server saw
    /// in the client's certificate, and the client's outcome. The address the client "dials" is
    /// in no certificate: our verifiers must not care.
    async fn exchange(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (io::Result<Option<NodeId>>, io::Result<()>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = async move {
            let mut tls = TlsAcceptor::from(server).accept(a).await?;
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| node_id_of(leaf));
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(b"pong").await?;
            tls.flush().await?;
            Ok(peer)
        };
        let client = async move {
            let name = ServerName::IpAddress(ip("192.0.2.7").into());
            let mut tls = TlsConnector::from(client).connect(name, b).await?;
            tls.write_all(b"ping").await?;
            tls.flush().await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"pong");
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(server, client)
        })
        .await
        .expect("the handshake neither finished nor failed")
    }

    /// Certificates name the node, its addresses and the cluster: they must never travel in clear,
    /// as they do in TLS 1.2. Every server refuses 1.2; no client of ours names a server (SNI).
    /// The reachability prober keeps one client configuration per peer: its second handshake
    /// with the same member server resumes the session (no certificate signed or verified again,
    /// the cost that made an idle cluster's CPU grow), and the server still knows the client's
    /// node id from the resumed session. A fresh configuration does a full handshake.
    #[tokio::test]
    async fn a_client_kept_per_peer_resumes_its_session_and_still_names_the_client() {
        use rustls::HandshakeKind;
        let ca = new_ca("prod");
        let (a, b) = (member(&ca, "node-a"), member(&ca, "node-b"));
        let server = server_config_member(&a, ca.cert()).unwrap();
        let handshake = |client: Arc<ClientConfig>| {
            let server = server.clone();
            async move {
                let (x, y) = tokio::io::duplex(64 * 1024);
                let server = async move {
                    let mut tls = TlsAcceptor::from(server).accept(x).await.unwrap();
                    let mut buf = [0u8; 4];
                    tls.read_exact(&mut buf).await.unwrap();
                    tls.write_all(b"pong").await.unwrap();
                    tls.flush().await.unwrap();
                    tls.get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| node_id_of(leaf))
                };
                let client = async move {
                    let name = ServerName::IpAddress(ip("192.0.2.7").into());
                    let mut tls = TlsConnector::from(client).connect(name, y).await.unwrap();
                    tls.write_all(b"ping").await.unwrap();
                    tls.flush().await.unwrap();
                    // The session ticket arrives after the handshake: read the answer.
                    let mut buf = [0u8; 4];
                    tls.read_exact(&mut buf).await.unwrap();
                    tls.get_ref().1.handshake_kind()
                };
                tokio::join!(server, client)
            }
        };
        let kept = client_config_mutual(&b, ca.cert(), Some(&id("node-a"))).unwrap();
        let (seen, kind) = handshake(kept.clone()).await;
        assert_eq!(kind, Some(HandshakeKind::Full));
        assert_eq!(seen.as_ref().map(|n| n.as_str()), Some("node-b"));
        let (seen, kind) = handshake(kept.clone()).await;
        assert_eq!(kind, Some(HandshakeKind::Resumed));
        assert_eq!(seen.as_ref().map(|n| n.as_str()), Some("node-b"));
        let fresh = client_config_mutual(&b, ca.cert(), Some(&id("node-a"))).unwrap();
        let (_, kind) = handshake(fresh).await;
        assert_eq!(kind, Some(HandshakeKind::Full));
    }

    #[tokio::test]
    async fn only_tls_1_3_is_spoken_and_no_client_sends_sni() {
        let ca = new_ca("prod");
        let a = member(&ca, "node-a");
        let tls12_client = || {
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    expected: None,
                    seen: SeenPin::default(),
                    algs: provider().signature_verification_algorithms,
                }))
                .with_no_client_auth();
            config.enable_sni = false;
            Arc::new(config)
        };
        let servers = [
            server_config_mutual(&a, ca.cert()).unwrap(),
            server_config_member(&a, ca.cert()).unwrap(),
            server_config(ServerIdentity::Member {
                node: &a,
                ca: ca.cert(),
            })
            .unwrap(),
        ];
        for server in servers {
            let (_, client) = exchange(server, tls12_client()).await;
            assert!(client.is_err(), "a TLS 1.2 client was served");
        }
        let clients = [
            client_config_mutual(&a, ca.cert(), None).unwrap(),
            client_config_pinned(ca.pin()).unwrap(),
            client_config_tofu().unwrap().0,
        ];
        for client in clients {
            assert!(!client.enable_sni);
            let (_, ok) = exchange(
                server_config(ServerIdentity::Member {
                    node: &a,
                    ca: ca.cert(),
                })
                .unwrap(),
                client,
            )
            .await;
            ok.unwrap();
        }
    }

    #[tokio::test]
    async fn two_members_of_one_cluster_talk_and_the_server_sees_the_client_node() {
        let ca = new_ca("prod");
        let (a, b) = (member(&ca, "node-a"), member(&ca, "node-b"));
        let server = server_config_mutual(&a, ca.cert()).unwrap();
        let client = client_config_mutual(&b, ca.cert(), Some(&id("node-a"))).unwrap();
        let (seen, client) = exchange(server, client).await;
        client.unwrap();
        assert_eq!(seen.unwrap(), Some(id("node-b")));
    }

    #[tokio::test]
    async fn a_client_certificate_from_another_cluster_is_refused() {
        let (ours, theirs) = (new_ca("prod"), new_ca("prod"));
        let server = server_config_mutual(&member(&ours, "node-a"), ours.cert()).unwrap();
        // The intruder trusts our CA (it knows our CA certificate), but its own cert is theirs.
        let intruder = member(&theirs, "node-b");
        let client = client_config_mutual(&intruder, ours.cert(), None).unwrap();
        let (seen, client) = exchange(server, client).await;
        // Same cluster name, so the same CA name: only the signature tells them apart.
        let refused = seen.unwrap_err().to_string();
        assert!(refused.contains("BadSignature"), "{refused}");
        assert!(client.is_err());
    }

    #[tokio::test]
    async fn an_expired_client_certificate_is_refused() {
        let ca = new_ca("prod");
        let server = server_config_mutual(&member(&ca, "node-a"), ca.cert()).unwrap();
        let old = member_at(&ca, "node-b", SystemTime::now() - 2 * YEAR);
        let client = client_config_mutual(&old, ca.cert(), None).unwrap();
        let (seen, client) = exchange(server, client).await;
        let refused = seen.unwrap_err().to_string();
        assert!(refused.contains("expired"), "{refused}");
        assert!(client.is_err());
    }

    #[tokio::test]
    async fn an_expired_server_certificate_is_refused_by_the_client() {
        let ca = new_ca("prod");
        let old = member_at(&ca, "node-a", SystemTime::now() - 2 * YEAR);
        let server = server_config_mutual(&old, ca.cert()).unwrap();
        let client = client_config_mutual(&member(&ca, "node-b"), ca.cert(), None).unwrap();
        let (seen, client) = exchange(server, client).await;
        let refused = client.unwrap_err().to_string();
        assert!(refused.contains("expired"), "{refused}");
        assert!(seen.is_err());
    }

    #[tokio::test]
    async fn a_client_expecting_another_node_refuses_the_server() {
        let ca = new_ca("prod");
        let server = server_config_mutual(&member(&ca, "node-a"), ca.cert()).unwrap();
        let client = client_config_mutual(&member(&ca, "node-b"), ca.cert(), Some(&id("node-c")));
        let (_, client) = exchange(server, client.unwrap()).await;
        let err = client.unwrap_err();
        match handshake_refusal(&err) {
            Some(PkiError::WrongNode {
                expected,
                presented,
            }) => {
                assert_eq!(expected, &id("node-c"));
                assert_eq!(presented, "node node-a");
            }
            other => panic!("{other:?}: {err}"),
        }
    }

    #[tokio::test]
    async fn a_member_refuses_a_server_of_another_cluster() {
        let (ca, other) = (new_ca("prod"), new_ca("other"));
        let server = server_config_mutual(&member(&other, "node-a"), other.cert()).unwrap();
        let client = client_config_mutual(&member(&ca, "node-b"), ca.cert(), Some(&id("node-a")));
        let (_, client) = exchange(server, client.unwrap()).await;
        let err = client.unwrap_err();
        assert!(
            matches!(handshake_refusal(&err), Some(PkiError::OtherCa)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_joiner_with_a_wrong_pin_is_refused_and_told_both_pins() {
        let (ca, other) = (new_ca("prod"), new_ca("other"));
        let node = member(&ca, "node-a");
        let server = server_config(ServerIdentity::Member {
            node: &node,
            ca: ca.cert(),
        })
        .unwrap();
        let client = client_config_pinned(other.pin()).unwrap();
        let (_, client) = exchange(server, client).await;
        let err = client.unwrap_err();
        let refusal = handshake_refusal(&err).expect("our refusal").to_string();
        for pin in [ca.pin(), other.pin()] {
            assert!(refusal.contains(&pin.to_string()), "{refusal}");
            assert!(err.to_string().contains(&pin.to_string()), "{err}");
        }
        assert!(matches!(
            handshake_refusal(&err),
            Some(PkiError::PinMismatch { expected, presented })
                if *expected == other.pin() && *presented == ca.pin()
        ));
    }

    #[tokio::test]
    async fn a_joiner_with_the_right_pin_gets_through() {
        let ca = new_ca("prod");
        let node = member(&ca, "node-a");
        let identity = ServerIdentity::Member {
            node: &node,
            ca: ca.cert(),
        };
        let client = client_config_pinned(ca.pin()).unwrap();
        let (seen, client) = exchange(server_config(identity).unwrap(), client).await;
        client.unwrap();
        assert_eq!(seen.unwrap(), None, "a joiner presents no certificate");

        // A node not bootstrapped yet: its self-signed certificate is its own "CA".
        let own = SelfSigned::generate(&id("fresh"), &[], SystemTime::now()).unwrap();
        let server = server_config(ServerIdentity::SelfSigned(&own)).unwrap();
        let (_, client) = exchange(server, client_config_pinned(own.pin()).unwrap()).await;
        client.unwrap();
    }

    #[tokio::test]
    async fn a_pinned_ca_does_not_vouch_for_a_leaf_it_did_not_sign() {
        // A server that sends the real CA certificate after its own cluster's leaf.
        let (ca, other) = (new_ca("prod"), new_ca("prod"));
        let forged = member(&other, "node-a");
        let server = server_config(ServerIdentity::Member {
            node: &forged,
            ca: ca.cert(),
        })
        .unwrap();
        let (_, client) = exchange(server, client_config_pinned(ca.pin()).unwrap()).await;
        let err = client.unwrap_err().to_string();
        assert!(err.contains("BadSignature"), "{err}");
    }

    #[tokio::test]
    async fn trust_on_first_use_records_the_ca_it_trusted() {
        let ca = new_ca("prod");
        let node = member(&ca, "node-a");
        let server = server_config(ServerIdentity::Member {
            node: &node,
            ca: ca.cert(),
        })
        .unwrap();
        let (client, seen) = client_config_tofu().unwrap();
        assert_eq!(seen.get(), None);
        let (_, outcome) = exchange(server, client).await;
        outcome.unwrap();
        assert_eq!(seen.get(), Some(ca.pin()));

        // A node not bootstrapped yet: what is trusted is its self-signed certificate's key.
        let own = SelfSigned::generate(&id("fresh"), &[ip("fd00::7")], SystemTime::now()).unwrap();
        let server = server_config(ServerIdentity::SelfSigned(&own)).unwrap();
        let (client, seen) = client_config_tofu().unwrap();
        let (_, outcome) = exchange(server, client).await;
        outcome.unwrap();
        assert_eq!(seen.get(), Some(own.pin()));
        assert_eq!(own.credentials().cert().node_id(), &id("fresh"));
    }

    #[test]
    fn a_csr_whose_signature_was_tampered_with_is_refused() {
        let ca = new_ca("prod");
        let key = NodeKey::generate().unwrap();
        let pem = key.csr_pem(&id("node-a")).unwrap();
        let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        let now = SystemTime::now();
        // The signed content changed (the node id), and the signature itself changed.
        let at = der.windows(6).position(|w| w == b"node-a").unwrap();
        let mut renamed = der.clone();
        renamed[at + 5] = b'b';
        let mut resigned = der.clone();
        *resigned.last_mut().unwrap() ^= 0x01;
        for bad in [renamed, resigned] {
            let bad = pem_encode("CERTIFICATE REQUEST", &bad);
            let err = ca.sign_node(&bad, &id("node-a"), &[], now).unwrap_err();
            assert!(matches!(err, PkiError::CsrSignature), "{err}");
        }
        assert!(ca.sign_node(&pem, &id("node-a"), &[], now).is_ok());
        for junk in ["", "not a csr", &pem[..pem.len() / 2]] {
            let err = ca.sign_node(junk, &id("node-a"), &[], now).unwrap_err();
            assert!(matches!(err, PkiError::BadCsr(_)), "{junk:?}: {err}");
        }
    }

    #[test]
    fn a_signed_certificate_carries_the_names_the_ca_set_not_the_csrs() {
        let ca = new_ca("prod");
        let key = NodeKey::generate().unwrap();
        // A greedy CSR: another node's id, a DNS name, an address and a CA bit.
        let mut greedy =
            CertificateParams::new(vec!["evil.example".into(), "6.6.6.6".into()]).unwrap();
        greedy.subject_alt_names.push(SanType::URI(
            Ia5String::try_from("stackring://node/admin").unwrap(),
        ));
        greedy.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = greedy.serialize_request(&key.0).unwrap().pem().unwrap();
        let now = SystemTime::now();
        let ips = [ip("10.0.0.1"), ip("fd00::1"), ip("10.0.0.1")];
        let cert = ca.sign_node(&csr, &id("node-a"), &ips, now).unwrap();

        let parsed = parse_cert(cert.der(), "test").unwrap();
        let sans: Vec<String> = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
                }
                GeneralName::IPAddress(b) => {
                    IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
                }
                other => other.to_string(),
            })
            .collect();
        assert_eq!(
            sans,
            ["10.0.0.1", "fd00::1", "URI(stackring://node/node-a)"]
        );
        assert!(!parsed.is_ca());
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.any);
        assert_eq!(node_id_of(cert.der()), Some(id("node-a")));
        assert_eq!(cert.node_id(), &id("node-a"));
        // The CSR's key, and nothing else of it.
        let stranger = NodeKey::generate().unwrap();
        let err = NodeCredentials::new(cert.clone(), stranger).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
        NodeCredentials::new(cert.clone(), key).unwrap();
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(cert.not_before()), secs(now - BACKDATE));
        assert_eq!(secs(cert.not_after()), secs(now + YEAR));
        assert_eq!(
            parsed.issuer().to_string(),
            "CN=stackring cluster CA prod",
            "issued by the cluster CA"
        );
    }

    #[test]
    fn the_ca_is_a_ca_and_survives_its_pem_files() {
        let now = SystemTime::now();
        let ca = ClusterCa::generate("prod", now).unwrap();
        let parsed = parse_cert(ca.cert().der(), "test").unwrap();
        assert_eq!(parsed.subject().to_string(), "CN=stackring cluster CA prod");
        let bc = parsed.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert!(parsed.key_usage().unwrap().unwrap().value.key_cert_sign());
        let until = from_timestamp(parsed.validity().not_after.timestamp());
        assert!(until >= now + 10 * YEAR - Duration::from_secs(1));
        assert_eq!(node_id_of(ca.cert().der()), None);

        let again = ClusterCa::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.pin(), ca.pin());
        // The reloaded CA signs certificates that chain to the same CA.
        let key = NodeKey::generate().unwrap();
        let cert = again
            .sign_node(&key.csr_pem(&id("n1")).unwrap(), &id("n1"), &[], now)
            .unwrap();
        assert_eq!(
            parse_cert(cert.der(), "t").unwrap().issuer(),
            parsed.subject()
        );

        let other = new_ca("prod");
        let err = ClusterCa::from_pem(&ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
        assert!(ClusterCa::generate("bad name", now).is_err());
        assert!(
            CaCert::from_pem(&cert.pem()).is_err(),
            "a node cert is no CA"
        );
    }

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_lifetime_or_at_expiry() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let day = Duration::from_secs(24 * 3600);
        let (from, until) = (t0, t0 + 300 * day);
        for (now, due) in [
            (t0 - day, false),
            (t0, false),
            (t0 + 100 * day, false),
            (t0 + 200 * day - Duration::from_secs(1), false),
            (t0 + 200 * day, true),
            (t0 + 299 * day, true),
            (t0 + 300 * day, true),
            (t0 + 3000 * day, true),
        ] {
            assert_eq!(
                renewal_due(from, until, now),
                due,
                "{:?}",
                now.duration_since(t0)
            );
        }
        // A degenerate certificate (ends before it starts) is always due.
        assert!(renewal_due(until, from, t0));

        let ca = new_ca("prod");
        let now = SystemTime::now();
        let cert = member_at(&ca, "node-a", now).cert;
        assert!(!cert.needs_renewal(now));
        assert!(!cert.needs_renewal(now + 200 * day));
        assert!(cert.needs_renewal(now + 250 * day));
        assert!(cert.needs_renewal(now + 2 * YEAR));
    }

    #[test]
    fn spki_pin_forms_and_hostile_inputs() {
        let pin = SpkiPin([0xab; 32]);
        let kubeadm = format!("sha256:{}", "ab".repeat(32));
        let curl = "sha256//q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
        assert_eq!(pin.to_string(), kubeadm);
        assert_eq!(pin.curl_form(), curl);
        assert_eq!(kubeadm.parse::<SpkiPin>().unwrap(), pin);
        assert_eq!(curl.parse::<SpkiPin>().unwrap(), pin);

        let long = "a".repeat(10 * 1024);
        let long_hex = format!("sha256:{long}");
        for bad in [
            "",
            "sha256:",
            "sha256//",
            &format!("sha256:{}", "ab".repeat(31)),
            &format!("sha256:{}", "ab".repeat(33)),
            &format!("sha256:{}", "AB".repeat(32)),
            &format!("sha256:{}", "zz".repeat(32)),
            &format!("sha1:{}", "ab".repeat(20)),
            &format!("SHA256:{}", "ab".repeat(32)),
            &format!(" {kubeadm}"),
            &format!("{kubeadm}\n"),
            &format!("sha256: {}", "ab".repeat(32)),
            &curl.replace('=', ""),
            &curl.replace("q6ur", "q6u-"),
            "sha256//q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6ur",
            "sha256/q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
            &format!("sha256:{}é", "ab".repeat(31)),
            &long,
            &long_hex,
        ] {
            let err = bad.parse::<SpkiPin>().unwrap_err().to_string();
            assert!(
                err.contains("sha256:<64 lowercase hex digits>") && err.contains("sha256//<base64"),
                "{bad:?}: {err}"
            );
            assert!(
                err.len() < 400,
                "the message quotes a bounded excerpt: {err}"
            );
        }
    }

    #[test]
    fn curl_form_is_what_curl_pins() {
        let ca = new_ca("prod");
        let openssl = |args: &str, input: &[u8]| -> Option<Vec<u8>> {
            use std::io::Write as _;
            let mut child = std::process::Command::new("openssl")
                .args(args.split(' '))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()?;
            child.stdin.take()?.write_all(input).ok()?;
            let out = child.wait_with_output().ok()?;
            out.status.success().then_some(out.stdout)
        };
        // Independent of x509-parser (which `SpkiPin::of_cert` uses): the SPKI as rustls' own
        // parser (webpki) extracts it.
        let spki = ParsedCertificate::try_from(ca.cert().der())
            .unwrap()
            .subject_public_key_info();
        let by_webpki = base64::engine::general_purpose::STANDARD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(spki.as_ref()));
        assert_eq!(ca.pin().curl_form(), format!("sha256//{by_webpki}"));
        // And, where openssl is installed, the pipeline curl's documentation gives for
        // --pinnedpubkey, step by step.
        let installed = std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !installed {
            eprintln!("openssl is not installed: pin checked against webpki's SPKI only");
            return;
        }
        let expected = openssl("x509 -pubkey -noout", ca.cert_pem().as_bytes())
            .and_then(|pubkey| openssl("pkey -pubin -outform der", &pubkey))
            .and_then(|der| openssl("dgst -sha256 -binary", &der))
            .map(|digest| base64::engine::general_purpose::STANDARD.encode(digest))
            .expect("the openssl pipeline runs");
        assert_eq!(ca.pin().curl_form(), format!("sha256//{expected}"));
        assert_eq!(ca.pin().curl_form().parse::<SpkiPin>().unwrap(), ca.pin());
    }

    #[test]
    fn node_ids_are_dns_label_like() {
        for good in ["a", "node-1", "n.example", "N_1", &"x".repeat(63)] {
            assert_eq!(good.parse::<NodeId>().unwrap().as_str(), good);
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "a%20",
            "ä",
            "node:1",
            &"x".repeat(64),
            "a\n",
        ] {
            let err = bad.parse::<NodeId>().unwrap_err().to_string();
            assert!(err.contains("A-Z a-z 0-9 . _ -"), "{bad:?}: {err}");
            let quoted = format!("{:?}", bad.chars().take(40).collect::<String>());
            assert!(err.starts_with(&format!("node id {quoted}")), "{err}");
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stackring-pki-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// The states a kill leaves at each step of `save_pair` (none, the pending key, the
    /// certificate, all), replacing an old pair and making a first one: every start loads the
    /// old pair or the new one whole, and leaves no pending key behind.
    #[test]
    fn a_pair_save_killed_at_any_step_loads_the_old_pair_or_the_new_one() {
        let ca = new_ca("prod");
        let (old, new) = (member(&ca, "node-a"), member(&ca, "node-a"));
        let (cert, key, pending) = ("node.pem", "node.key", "node.key.next");
        let cert_of = |c: &NodeCredentials| c.cert().pem();
        let put = |dir: &Path, name: &str, text: String| {
            write(&dir.join(name), &text).unwrap();
        };
        // (files as the kill left them, the pair that must load)
        type Case<'a> = (&'a str, Vec<(&'a str, String)>, Option<&'a NodeCredentials>);
        let cases: Vec<Case<'_>> = vec![
            (
                "replacing, killed before anything",
                vec![(cert, old.cert().pem()), (key, old.key().pem())],
                Some(&old),
            ),
            (
                "replacing, killed after the pending key",
                vec![
                    (cert, old.cert().pem()),
                    (key, old.key().pem()),
                    (pending, new.key().pem()),
                ],
                Some(&old),
            ),
            (
                "replacing, killed after the certificate (the commit point)",
                vec![
                    (cert, new.cert().pem()),
                    (key, old.key().pem()),
                    (pending, new.key().pem()),
                ],
                Some(&new),
            ),
            (
                "first pair, killed after the pending key",
                vec![(pending, new.key().pem())],
                None,
            ),
            (
                "first pair, killed after the certificate",
                vec![(cert, new.cert().pem()), (pending, new.key().pem())],
                Some(&new),
            ),
            (
                "a pending key that is not a key: never committed",
                vec![
                    (cert, old.cert().pem()),
                    (key, old.key().pem()),
                    (pending, "-----BEGIN PRIVATE KEY-----\nAAAA".into()),
                ],
                Some(&old),
            ),
        ];
        for (what, files_left, expected) in cases {
            let dir = temp_dir("settle");
            for (name, text) in files_left {
                put(&dir, name, text);
            }
            let files = PkiFiles::new(&dir);
            let loaded = files.load_node().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                loaded.as_ref().map(cert_of),
                expected.map(cert_of),
                "{what}"
            );
            assert!(!dir.join(pending).exists(), "{what}: pending key left");
            // And again: the settled state loads the same.
            let again = files.load_node().unwrap();
            assert_eq!(again.as_ref().map(cert_of), expected.map(cert_of), "{what}");
        }

        // A save that completes leaves exactly the pair, whatever was pending before.
        let dir = temp_dir("settle-save");
        put(&dir, pending, old.key().pem());
        let files = PkiFiles::new(&dir);
        files.save_node(&new).unwrap();
        assert_eq!(
            files.load_node().unwrap().map(|c| cert_of(&c)),
            Some(cert_of(&new))
        );
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["node.key", "node.pem"]);

        // A pending key others can read is refused like any key, naming it.
        let dir = temp_dir("settle-mode");
        put(&dir, pending, new.key().pem());
        std::fs::set_permissions(dir.join(pending), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let err = PkiFiles::new(&dir).load_node().unwrap_err().to_string();
        assert!(err.contains("node.key.next"), "{err}");

        // The CA's pair is saved and settled the same way.
        let dir = temp_dir("settle-ca");
        put(&dir, "ca.key.next", ca.key_pem());
        assert!(PkiFiles::new(&dir).load_ca().unwrap().is_none());
        assert!(!dir.join("ca.key.next").exists());
        put(&dir, "ca.pem", ca.cert_pem());
        put(&dir, "ca.key.next", ca.key_pem());
        let loaded = PkiFiles::new(&dir).load_ca().unwrap().unwrap();
        assert_eq!(loaded.pin(), ca.pin());
    }

    #[test]
    fn files_are_0600_round_trip_and_a_0644_key_is_refused() {
        let dir = temp_dir("files");
        let files = PkiFiles::new(&dir);
        assert!(files.load_ca().unwrap().is_none());
        assert!(files.load_node().unwrap().is_none());

        let ca = new_ca("prod");
        let node = member(&ca, "node-a");
        files.save_ca(&ca).unwrap();
        files.save_node(&node).unwrap();
        let now = SystemTime::now();
        let own = files
            .self_signed(&id("node-a"), &[ip("10.0.0.1")], now)
            .unwrap();
        for name in [
            "ca.pem", "ca.key", "node.pem", "node.key", "self.pem", "self.key",
        ] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        assert_eq!(files.load_ca().unwrap().unwrap().pin(), ca.pin());
        assert_eq!(files.load_ca_cert().unwrap().unwrap(), *ca.cert());
        assert_eq!(files.load_node().unwrap().unwrap().cert(), node.cert());
        // Reused across restarts; a new one when the node id changes.
        let again = files.self_signed(&id("node-a"), &[], now).unwrap();
        assert_eq!(again.pin(), own.pin());
        let renamed = files.self_signed(&id("node-b"), &[], now).unwrap();
        assert_ne!(renamed.pin(), own.pin());

        let key = dir.join("node.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = files.load_node().unwrap_err().to_string();
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", key.display())),
            "{err}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(files.load_node().is_ok(), "narrower than 0600 is fine");

        // A member holds the CA certificate without the key: not an error, it just cannot sign.
        std::fs::rename(dir.join("ca.key"), dir.join("ca.key.bak")).unwrap();
        assert!(files.load_ca().unwrap().is_none());
        assert_eq!(files.load_ca_cert().unwrap().unwrap(), *ca.cert());
        // A key without its certificate is.
        std::fs::rename(dir.join("ca.key.bak"), dir.join("ca.key")).unwrap();
        std::fs::remove_file(dir.join("ca.pem")).unwrap();
        let err = files.load_ca().unwrap_err();
        assert!(matches!(err, PkiError::HalfPair { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem does not"), "{err}");

        std::fs::write(dir.join("node.pem"), "garbage").unwrap();
        let err = files.load_node().unwrap_err().to_string();
        assert!(
            err.contains("node.pem") && err.contains("join the cluster again"),
            "{err}"
        );

        let other = member(&ca, "node-a");
        std::fs::write(dir.join("node.pem"), other.cert().pem()).unwrap();
        let err = files.load_node().unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
