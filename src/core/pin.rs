//! SPKI pins: the SHA-256 of a certificate's public key, as kubeadm's
//! `--discovery-token-ca-cert-hash` (`sha256:<hex>`) and curl's `--pinnedpubkey`
//! (`sha256//<base64>`) write it. The one parser of pins (join tokens, `join_cluster`'s `ca_pin`).

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A text that is not a pin (an excerpt of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not an SPKI pin: expected sha256:<64 lowercase hex digits> (kubeadm's form) or sha256//<base64 of 32 bytes> (curl's --pinnedpubkey form); fix: copy it as `stackring inspect` or `GET /v1/bootstrap` on the node prints it")]
pub(crate) struct PinError(String);

/// At most 40 characters of hostile input, quoted, for an error message.
fn excerpt(s: &str) -> String {
    let head: String = s.chars().take(40).collect();
    if head.len() < s.len() {
        format!("{head:?}... ({} bytes)", s.len())
    } else {
        format!("{head:?}")
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (DER): what a join token carries to name the
/// cluster CA, as kubeadm's `--discovery-token-ca-cert-hash` and curl's `--pinnedpubkey` do.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SpkiPin(pub(crate) [u8; 32]);

impl SpkiPin {
    /// The pin of a DER SubjectPublicKeyInfo.
    pub(crate) fn of_spki(spki_der: &[u8]) -> Self {
        SpkiPin(Sha256::digest(spki_der).into())
    }

    /// curl's `--pinnedpubkey` form: `sha256//<base64>`.
    pub(crate) fn curl_form(&self) -> String {
        format!(
            "sha256//{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

impl fmt::Display for SpkiPin {
    /// kubeadm's form: `sha256:<64 lowercase hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl serde::Serialize for SpkiPin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiPin({self})")
    }
}

impl FromStr for SpkiPin {
    type Err = PinError;
    /// Either form, exactly: no whitespace, no uppercase hex, no other hash.
    fn from_str(s: &str) -> Result<Self, PinError> {
        let bad = || PinError(excerpt(s));
        let mut out = [0u8; 32];
        if let Some(hex) = s.strip_prefix("sha256:") {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            if hex.len() != 64 {
                return Err(bad());
            }
            for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
                *byte = digit(pair[0]).ok_or_else(bad)? << 4 | digit(pair[1]).ok_or_else(bad)?;
            }
            Ok(SpkiPin(out))
        } else if let Some(b64) = s.strip_prefix("sha256//") {
            // 32 bytes are 44 base64 characters with padding; checked first to bound the work.
            if b64.len() != 44 {
                return Err(bad());
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad())?;
            out = bytes.try_into().map_err(|_| bad())?;
            Ok(SpkiPin(out))
        } else {
            Err(bad())
        }
    }
}
