//! A small HTTPS client for the tests' raw requests: rustls over a blocking `TcpStream`, trusting
//! whatever certificate the node presents (trust on first use, as an operator without the pin),
//! and keeping that chain so a test can look at it (its SPKI pin, its length, its SANs).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Accepts any server certificate and remembers the chain it was shown.
#[derive(Debug)]
struct Tofu {
    seen: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Tofu {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.seen.lock().unwrap() = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTPS session on `stream` (connected to `to`), handshake done; and the chain the server
/// presented, leaf first.
pub fn wrap(
    stream: TcpStream,
    to: IpAddr,
) -> std::io::Result<(
    StreamOwned<ClientConnection, TcpStream>,
    Vec<CertificateDer<'static>>,
)> {
    wrap_alpn(stream, to, b"http/1.1")
}

/// [`wrap`] offering the protocol `alpn` (`stackring-discovery` on the gossip port's TCP side).
pub fn wrap_alpn(
    stream: TcpStream,
    to: IpAddr,
    alpn: &[u8],
) -> std::io::Result<(
    StreamOwned<ClientConnection, TcpStream>,
    Vec<CertificateDer<'static>>,
)> {
    let (config, tofu) = tofu_config(alpn, None)?;
    let conn = ClientConnection::new(config, ServerName::IpAddress(to.into()))
        .map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let chain = tofu.seen.lock().unwrap().clone();
    Ok((tls, chain))
}

/// A client configuration that trusts any server (and remembers its chain), speaks `alpn`, and
/// presents `client` (a chain, leaf first, and its key) when the server asks for a certificate.
fn tofu_config(
    alpn: &[u8],
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> std::io::Result<(Arc<ClientConfig>, Arc<Tofu>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tofu = Arc::new(Tofu {
        seen: Mutex::new(vec![]),
        provider: provider.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(tofu.clone());
    let mut config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(std::io::Error::other)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok((Arc::new(config), tofu))
}

/// [`tofu_config`] for callers that hold a certificate of their own (any CA's, or none).
pub fn client_config(
    alpn: &[u8],
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    tofu_config(alpn, client).expect("a client configuration").0
}

/// Reads until the server closes (a missing close_notify after the whole answer is no error).
pub fn read_all(tls: &mut StreamOwned<ClientConnection, TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// One HTTP/1.1 request over HTTPS on a fresh connection to `to`: the raw answer and the chain.
pub fn exchange(
    to: SocketAddr,
    request: &str,
) -> std::io::Result<(Vec<u8>, Vec<CertificateDer<'static>>)> {
    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let (mut tls, chain) = wrap(stream, to.ip())?;
    tls.write_all(request.as_bytes())?;
    tls.flush()?;
    Ok((read_all(&mut tls)?, chain))
}

/// curl's `sha256//<base64>` pin of a certificate's SubjectPublicKeyInfo.
pub fn spki_pin(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    use sha2::Digest;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).expect("a certificate");
    let digest = sha2::Sha256::digest(parsed.tbs_certificate.subject_pki.raw);
    format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The URI SANs of a certificate (`stackring://node/<id>` on a node certificate).
pub fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).expect("a certificate");
    parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}
