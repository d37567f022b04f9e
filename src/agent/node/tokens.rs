//! Join tokens on the member that prints them: `<state_dir>/join-tokens.json` (0600, written
//! whole and durably before a token is printed or a redeemed one is acknowledged), behind one
//! lock so that a token is redeemed once even by two joins at the same instant. The rules are
//! in [`crate::core::token`].

use super::ClusterNode;
use crate::core::cluster::JoinRefusal;
use crate::core::peer::PeerAddr;
use crate::core::refusal::{ErrorBody, Refusal, RefusalKind};
use crate::core::token::{JoinToken, TokenBook, TokenCredential, TokenId, TokenInfo, TokenRefusal};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const TOKENS_FILE: &str = "join-tokens.json";

/// The book and where it lives.
pub(super) struct JoinTokens {
    path: PathBuf,
    book: TokenBook,
}

impl JoinTokens {
    /// Reads the book; a damaged one is set aside (its tokens no longer work) rather than
    /// stopping the node.
    pub(super) fn load(state_dir: &Path) -> JoinTokens {
        let path = state_dir.join(TOKENS_FILE);
        let book = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::error!(
                    "{} is damaged ({e}): the join tokens in it no longer work; fix: print new ones with `stackring cluster join-token`",
                    path.display()
                );
                TokenBook::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenBook::default(),
            Err(e) => {
                log::error!(
                    "cannot read {} ({e}): join tokens printed before do not work",
                    path.display()
                );
                TokenBook::default()
            }
        };
        JoinTokens { path, book }
    }

    /// Applies `change` to a copy, makes the copy durable, then keeps it: a change that cannot be
    /// written is refused and changes nothing.
    fn change<T>(
        &mut self,
        change: impl FnOnce(&mut TokenBook) -> Result<T, TokenRefusal>,
    ) -> Result<T, ChangeError> {
        let mut next = self.book.clone();
        let out = change(&mut next).map_err(ChangeError::Refused)?;
        if next != self.book {
            let written = serde_json::to_vec_pretty(&next)
                .map_err(std::io::Error::other)
                .and_then(|json| crate::agent::fsutil::write_atomic(&self.path, &json, 0o600));
            if let Err(e) = written {
                return Err(ChangeError::NotDurable(format!(
                    "cannot write {} ({e}); nothing was changed; fix: free space or repair node.state_dir, then retry",
                    self.path.display()
                )));
            }
            self.book = next;
        }
        Ok(out)
    }
}

/// Why the book did not change.
enum ChangeError {
    Refused(TokenRefusal),
    NotDurable(String),
}

impl From<ChangeError> for Refusal {
    fn from(e: ChangeError) -> Refusal {
        match e {
            ChangeError::Refused(r) => Refusal::new(
                match r {
                    TokenRefusal::TooMany => RefusalKind::Conflict,
                    TokenRefusal::Invalid | TokenRefusal::Expired => RefusalKind::Forbidden,
                },
                ErrorBody::new("JoinTokenError", Some(r.sub_code()), r.description()),
            ),
            ChangeError::NotDurable(why) => Refusal::new(
                RefusalKind::NotDurable,
                ErrorBody::new("StorageError", Some("not_durable"), why),
            ),
        }
    }
}

impl From<ChangeError> for JoinRefusal {
    fn from(e: ChangeError) -> JoinRefusal {
        match e {
            ChangeError::Refused(r) => crate::core::cluster::token_refused(r),
            ChangeError::NotDurable(why) => JoinRefusal {
                error_code: "NodeBootstrapError",
                sub_code: "not_durable",
                description: why,
            },
        }
    }
}

/// What `stackring cluster join-token` prints.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IssuedToken {
    /// The whole token: give it to the joiner (as `cluster.join_token`, or in the file
    /// `cluster.join_token_file` names). Shown once; the member keeps only a hash of its secret.
    pub(crate) token: String,
    pub(crate) id: TokenId,
    pub(crate) cluster: String,
    pub(crate) seed: String,
    pub(crate) ca_pin: String,
    pub(crate) expires_unix: u64,
    pub(crate) ttl_s: u64,
}

/// The answer to `join-token revoke`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RevokedToken {
    pub(crate) id: TokenId,
    pub(crate) revoked: bool,
}

/// A token credential from the operating system's random source.
fn random_credential() -> TokenCredential {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    loop {
        let mut bytes = [0u8; 128];
        OsRng.fill_bytes(&mut bytes);
        if let Some(c) = TokenCredential::from_random(&bytes) {
            return c;
        }
    }
}

impl ClusterNode {
    /// `stackring cluster join-token [--ttl]`: a token for this member's advertised gRPC
    /// endpoint and the cluster CA, kept (as a hash) before it is shown.
    pub(crate) async fn issue_join_token(&self, ttl: Duration) -> Result<IssuedToken, Refusal> {
        let record = self.record().ok_or_else(Refusal::not_in_cluster)?;
        let tls = self.tls();
        if tls.node_cert_expiry().is_none() {
            return Err(Refusal::admin(
                "no_cluster_ca",
                "this member has no cluster certificate yet, so a token could not pin the CA; fix: wait for the bootstrap to complete",
            ));
        }
        let seed = {
            let published = self.shared.identity.borrow();
            let identity = published.identity.as_ref().ok_or_else(|| {
                Refusal::admin(
                    "no_identity",
                    format!(
                        "this node has no identity, so a token could not name where to join: {}",
                        published.not_ready.clone().unwrap_or_default()
                    ),
                )
            })?;
            identity.grpc.advertise
        };
        let seed = PeerAddr::parse(&seed.to_string())
            .map_err(|p| Refusal::internal(format!("advertised gRPC {seed} {}", p.problem)))?;
        let credential = random_credential();
        let token = JoinToken {
            credential: credential.clone(),
            seed: seed.clone(),
            ca_pin: tls.pin(),
        };
        let now = crate::agent::now_unix();
        let stored = self
            .shared
            .tokens
            .lock()
            .await
            .change(|book| book.issue(&credential, now, ttl))
            .map_err(Refusal::from)?;
        log::info!(
            "join token {} printed (until {}, unix time), for joins through {seed}",
            stored.id,
            stored.expires_unix
        );
        Ok(IssuedToken {
            token: token.to_string(),
            id: stored.id,
            cluster: record.name.clone(),
            seed: seed.to_string(),
            ca_pin: token.ca_pin.to_string(),
            expires_unix: stored.expires_unix,
            ttl_s: ttl.as_secs(),
        })
    }

    /// `join-token list`: the tokens not yet used or expired (never their secrets).
    pub(crate) async fn join_tokens(&self) -> Result<Vec<TokenInfo>, Refusal> {
        self.record().ok_or_else(Refusal::not_in_cluster)?;
        Ok(self
            .shared
            .tokens
            .lock()
            .await
            .book
            .list(crate::agent::now_unix()))
    }

    /// `join-token revoke ID`.
    pub(crate) async fn revoke_join_token(&self, id: TokenId) -> Result<RevokedToken, Refusal> {
        self.record().ok_or_else(Refusal::not_in_cluster)?;
        let revoked = self
            .shared
            .tokens
            .lock()
            .await
            .change(|book| Ok(book.revoke(&id)))
            .map_err(Refusal::from)?;
        if revoked {
            log::info!("join token {id} revoked");
        }
        Ok(RevokedToken { id, revoked })
    }

    /// Whether a joiner's token is one this member printed, not expired (nothing changes).
    pub(super) async fn check_token(
        &self,
        credential: &TokenCredential,
    ) -> Result<(), TokenRefusal> {
        self.shared
            .tokens
            .lock()
            .await
            .book
            .check(credential, crate::agent::now_unix())
    }

    /// Uses the token up, durably, before the join is answered.
    pub(super) async fn redeem_token(
        &self,
        credential: &TokenCredential,
    ) -> Result<(), JoinRefusal> {
        let now = crate::agent::now_unix();
        self.shared
            .tokens
            .lock()
            .await
            .change(|book| book.redeem(credential, now))
            .map_err(JoinRefusal::from)
    }
}
