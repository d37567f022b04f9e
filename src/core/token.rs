//! Join tokens (kubeadm's shape): `stackring cluster join-token` on a member prints one string
//! that carries where to join (the member's advertised gRPC endpoint), a one-time secret and the
//! cluster CA's pin, so that a new node joins with nothing else — no admin credentials on it, and
//! a pinned TLS handshake (it refuses any other cluster before it sends the secret).
//!
//! Text form: `<id>.<secret>@<seed>/<pin>`, e.g.
//! `k3x9qa.0v6hj2m4c8w1r5t7y9b3n6d0f2g4k8p1@[2001:db8::10]:9095/sha256:8f3a…`. The member keeps
//! only a keyed hash of the secret, with the token's expiry, in `<state_dir>/join-tokens.json`;
//! a token is redeemed once, at the member that printed it. Pure: time comes in as an argument.

use crate::core::peer::PeerAddr;
use crate::core::pin::SpkiPin;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Characters of an id (kubeadm's alphabet: lowercase letters and digits).
pub(crate) const ID_LEN: usize = 6;
/// Characters of a secret: 32 of 36 symbols, 165 bits.
pub(crate) const SECRET_LEN: usize = 32;
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Longest token text read (a seed name is at most 253 characters): a 10 MB value is not parsed.
const MAX_TEXT: usize = 512;
/// Outstanding tokens a member keeps: issuing more first drops expired ones, then refuses.
pub(crate) const MAX_TOKENS: usize = 64;
/// kubeadm's default lifetime.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
pub(crate) const MIN_TTL: Duration = Duration::from_secs(10);
pub(crate) const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The public half of a token: names it in lists, logs and `revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct TokenId(String);

/// The secret half: never logged, never stored (only its keyed hash is).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenSecret(String);

fn of_alphabet(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| ALPHABET.contains(&b))
}

impl FromStr for TokenId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if of_alphabet(s, ID_LEN) {
            Ok(TokenId(s.to_string()))
        } else {
            Err(format!(
                "'{}' is not a join token id ({ID_LEN} lowercase letters or digits, as `stackring cluster join-token list` prints it)",
                crate::core::config::echo(s)
            ))
        }
    }
}

impl TryFrom<String> for TokenId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<TokenId> for String {
    fn from(id: TokenId) -> String {
        id.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl TokenSecret {
    /// The keyed hash a member stores: BLAKE2b-256 under a fixed context, hex.
    pub(crate) fn digest(&self) -> String {
        use blake2::digest::{Update, VariableOutput};
        let mut h = blake2::Blake2bVar::new(32).expect("32 is a valid BLAKE2b output length");
        h.update(b"stackring join token v1\0");
        h.update(self.0.as_bytes());
        let mut out = [0u8; 32];
        h.finalize_variable(&mut out)
            .expect("the buffer is the requested length");
        out.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `<id>.<secret>`: what a joiner sends to the member (in `JoinRequest.token`, over TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenCredential {
    pub(crate) id: TokenId,
    pub(crate) secret: TokenSecret,
}

impl TokenCredential {
    /// From `random`'s bytes (the caller draws them from the OS): each byte picks one symbol,
    /// by rejection so every symbol is equally likely. `None` when the bytes ran out.
    pub(crate) fn from_random(random: &[u8]) -> Option<TokenCredential> {
        let mut symbols = random
            .iter()
            .filter(|b| **b < 252) // 252 = 7 × 36: no symbol is favoured
            .map(|b| ALPHABET[(*b % 36) as usize] as char);
        let id: String = symbols.by_ref().take(ID_LEN).collect();
        let secret: String = symbols.take(SECRET_LEN).collect();
        (id.len() == ID_LEN && secret.len() == SECRET_LEN).then_some(TokenCredential {
            id: TokenId(id),
            secret: TokenSecret(secret),
        })
    }

    /// A credential no book holds (its secret is empty, and issued secrets never are): what a
    /// joiner's unparsable token is checked as, so it costs what a wrong one does.
    pub(crate) fn never() -> TokenCredential {
        TokenCredential {
            id: TokenId("000000".into()),
            secret: TokenSecret(String::new()),
        }
    }

    /// The wire form, `<id>.<secret>`.
    pub(crate) fn wire(&self) -> String {
        format!("{}.{}", self.id, self.secret.0)
    }

    pub(crate) fn parse_wire(text: &str) -> Result<TokenCredential, String> {
        let Some((id, secret)) = text.split_once('.') else {
            return Err("is not '<id>.<secret>'".into());
        };
        let id = id.parse::<TokenId>()?;
        if !of_alphabet(secret, SECRET_LEN) {
            return Err(format!(
                "has a secret that is not {SECRET_LEN} lowercase letters or digits"
            ));
        }
        Ok(TokenCredential {
            id,
            secret: TokenSecret(secret.to_string()),
        })
    }
}

/// A whole join token: the credential, where to redeem it, and the CA the joiner accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinToken {
    pub(crate) credential: TokenCredential,
    /// The issuing member's advertised gRPC endpoint (`host:port`).
    pub(crate) seed: PeerAddr,
    pub(crate) ca_pin: SpkiPin,
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}/{}",
            self.credential.wire(),
            self.seed,
            self.ca_pin
        )
    }
}

/// The fix every malformed token gets.
pub(crate) const TOKEN_FIX: &str = "copy the whole token as `stackring cluster join-token` on a member printed it: '<id>.<secret>@<host:port>/sha256:<hex>'";

impl FromStr for JoinToken {
    type Err = String;
    /// Why a text is not a token; never echoes the secret.
    fn from_str(text: &str) -> Result<JoinToken, String> {
        let t = text.trim();
        if t.len() > MAX_TEXT {
            return Err(format!("is {} characters long, not a join token", t.len()));
        }
        let Some((credential, rest)) = t.split_once('@') else {
            return Err("has no '@' (a join token is '<id>.<secret>@<host:port>/<pin>')".into());
        };
        let credential = TokenCredential::parse_wire(credential)?;
        let Some((seed, pin)) = rest.rsplit_once('/') else {
            return Err("has no '/<pin>' after the seed address".into());
        };
        let seed = PeerAddr::parse(seed).map_err(|p| {
            format!(
                "names a seed '{}' that {}",
                crate::core::config::echo(seed),
                p.problem
            )
        })?;
        if seed.port.is_none() {
            return Err("names a seed without a port".into());
        }
        let ca_pin = pin
            .parse::<SpkiPin>()
            .map_err(|_| format!("ends in '{}', not a CA pin", crate::core::config::echo(pin)))?;
        Ok(JoinToken {
            credential,
            seed,
            ca_pin,
        })
    }
}

/// What a member keeps of a token it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredToken {
    pub(crate) id: TokenId,
    /// `TokenSecret::digest` of the secret.
    pub(crate) secret_digest: String,
    pub(crate) created_unix: u64,
    pub(crate) expires_unix: u64,
}

/// A member's outstanding tokens (`<state_dir>/join-tokens.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBook {
    pub(crate) tokens: Vec<StoredToken>,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    /// No such id, or the secret does not match (the same answer for both).
    Invalid,
    /// The secret matches but the token's time is over.
    Expired,
    /// `MAX_TOKENS` outstanding tokens that have not expired.
    TooMany,
}

impl TokenRefusal {
    pub(crate) fn sub_code(self) -> &'static str {
        match self {
            TokenRefusal::Invalid => "invalid_token",
            TokenRefusal::Expired => "token_expired",
            TokenRefusal::TooMany => "too_many_tokens",
        }
    }

    pub(crate) fn description(self) -> String {
        match self {
            TokenRefusal::Invalid => "the cluster does not know this join token: it is mistyped, was already used, was revoked, or is redeemed at another member than the one that printed it; fix: print a new one with `stackring cluster join-token` on a member".into(),
            TokenRefusal::Expired => "this join token has expired; fix: print a new one with `stackring cluster join-token [--ttl D]` on a member".into(),
            TokenRefusal::TooMany => format!("this member already holds {MAX_TOKENS} unexpired join tokens; fix: revoke unused ones (`stackring cluster join-token list`, `… revoke ID`) or wait for them to expire"),
        }
    }
}

/// A token as `join-token list` shows it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TokenInfo {
    pub(crate) id: TokenId,
    pub(crate) created_unix: u64,
    pub(crate) expires_unix: u64,
}

impl TokenBook {
    /// Drops the tokens whose time is over; how many went.
    pub(crate) fn prune(&mut self, now_unix: u64) -> usize {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.expires_unix > now_unix);
        before - self.tokens.len()
    }

    /// Keeps a new token for `ttl` from `now_unix`.
    pub(crate) fn issue(
        &mut self,
        credential: &TokenCredential,
        now_unix: u64,
        ttl: Duration,
    ) -> Result<StoredToken, TokenRefusal> {
        self.prune(now_unix);
        if self.tokens.len() >= MAX_TOKENS {
            return Err(TokenRefusal::TooMany);
        }
        // Ids are random: a clash is improbable, and refused rather than shadowing a token.
        if self.tokens.iter().any(|t| t.id == credential.id) {
            return Err(TokenRefusal::Invalid);
        }
        let stored = StoredToken {
            id: credential.id.clone(),
            secret_digest: credential.secret.digest(),
            created_unix: now_unix,
            expires_unix: now_unix.saturating_add(ttl.as_secs()),
        };
        self.tokens.push(stored.clone());
        Ok(stored)
    }

    /// Whether `credential` is a token of this book that has not expired (nothing changes).
    /// The secret's digest is compared in constant time.
    pub(crate) fn check(
        &self,
        credential: &TokenCredential,
        now_unix: u64,
    ) -> Result<(), TokenRefusal> {
        let digest = credential.secret.digest();
        let found = self.tokens.iter().find(|t| {
            t.id == credential.id
                && crate::core::cluster::constant_time_eq(
                    t.secret_digest.as_bytes(),
                    digest.as_bytes(),
                )
        });
        match found {
            None => Err(TokenRefusal::Invalid),
            Some(t) if t.expires_unix <= now_unix => Err(TokenRefusal::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Uses the token up: checked as `check` does, then removed (the caller makes it durable
    /// before the join is answered).
    pub(crate) fn redeem(
        &mut self,
        credential: &TokenCredential,
        now_unix: u64,
    ) -> Result<(), TokenRefusal> {
        self.check(credential, now_unix)?;
        self.tokens.retain(|t| t.id != credential.id);
        Ok(())
    }

    /// Removes the token `id`; whether there was one.
    pub(crate) fn revoke(&mut self, id: &TokenId) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| &t.id != id);
        before != self.tokens.len()
    }

    /// The unexpired tokens, soonest to expire first.
    pub(crate) fn list(&self, now_unix: u64) -> Vec<TokenInfo> {
        let mut out: Vec<TokenInfo> = self
            .tokens
            .iter()
            .filter(|t| t.expires_unix > now_unix)
            .map(|t| TokenInfo {
                id: t.id.clone(),
                created_unix: t.created_unix,
                expires_unix: t.expires_unix,
            })
            .collect();
        out.sort_by_key(|t| (t.expires_unix, t.id.clone()));
        out
    }
}

/// A token's lifetime as an operator writes it: `90s`, `30m`, `24h`, `7d`, or sums like `1h30m`;
/// from `MIN_TTL` to `MAX_TTL`.
pub(crate) fn parse_ttl(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "'{}' is not a lifetime; fix: write e.g. 30m, 24h or 7d (units s, m, h, d; from 10s to 30d)",
            crate::core::config::echo(text)
        )
    };
    if t.is_empty() || t.len() > 32 {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    let ttl = Duration::from_secs(total);
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(format!(
            "'{}' is {}; fix: a join token lives from 10s to 30d",
            crate::core::config::echo(text),
            if ttl < MIN_TTL {
                "shorter than 10s"
            } else {
                "longer than 30d"
            }
        ));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(seed: u8) -> TokenCredential {
        let random: Vec<u8> = (0..200u32).map(|i| (i as u8).wrapping_mul(seed)).collect();
        TokenCredential::from_random(&random).unwrap()
    }

    fn pin() -> SpkiPin {
        SpkiPin([7u8; 32])
    }

    #[test]
    fn a_token_prints_and_parses_back_whole() {
        for seed in [
            "[2001:db8::10]:9095",
            "192.0.2.10:9095",
            "node1.example:9095",
        ] {
            let token = JoinToken {
                credential: credential(3),
                seed: PeerAddr::parse(seed).unwrap(),
                ca_pin: pin(),
            };
            let text = token.to_string();
            assert!(text.contains(&format!("@{seed}/sha256:")), "{text}");
            assert_eq!(text.parse::<JoinToken>().unwrap(), token, "{text}");
            // What operators paste: surrounded by whitespace or a newline.
            assert_eq!(format!(" {text}\n").parse::<JoinToken>().unwrap(), token);
        }
    }

    #[test]
    fn random_bytes_make_ids_and_secrets_of_the_alphabet_only() {
        let c = credential(7);
        assert_eq!(c.id.0.len(), ID_LEN);
        assert!(of_alphabet(&c.id.0, ID_LEN));
        assert!(of_alphabet(&c.secret.0, SECRET_LEN));
        // Bytes ≥ 252 are skipped (no symbol favoured); too few bytes make no token.
        assert!(TokenCredential::from_random(&[255u8; 400]).is_none());
        assert!(TokenCredential::from_random(&[1u8; 37]).is_none());
        assert!(TokenCredential::from_random(&[1u8; 38]).is_some());
        // The secret never shows in Debug output.
        assert!(!format!("{c:?}").contains(&c.secret.0));
    }

    #[test]
    fn hostile_token_texts_are_refused_without_echoing_the_secret() {
        let good = JoinToken {
            credential: credential(5),
            seed: PeerAddr::parse("[2001:db8::10]:9095").unwrap(),
            ca_pin: pin(),
        }
        .to_string();
        let secret = credential(5).secret.0;
        let huge = "a".repeat(10_000_000);
        let rows: Vec<(String, &str)> = vec![
            (String::new(), "no '@'"),
            ("   ".into(), "no '@'"),
            (huge.clone(), "characters long"),
            (good.replace('@', "#"), "no '@'"),
            (good.replacen('.', "", 1), "not '<id>.<secret>'"),
            (good.replacen(&secret, &secret.to_uppercase(), 1), "secret"),
            (good.replacen(&secret, &secret[1..], 1), "secret"),
            (good.replacen(&secret, &format!("{secret}x"), 1), "secret"),
            (
                format!("ABCDEF.{secret}@[2001:db8::10]:9095/{}", pin()),
                "token id",
            ),
            (
                format!("abc.{secret}@[2001:db8::10]:9095/{}", pin()),
                "token id",
            ),
            (good.replace("/sha256:", "|sha256:"), "'/<pin>'"),
            (
                good.replace("[2001:db8::10]:9095", "[2001:db8::10]"),
                "without a port",
            ),
            (
                good.replace("[2001:db8::10]:9095", "[2001:db8::10]:99999"),
                "seed",
            ),
            (good.replace("[2001:db8::10]:9095", ""), "seed"),
            (good.replace("[2001:db8::10]:9095", "a b:9095"), "seed"),
            (format!("{}00", good), "not a CA pin"),
            (good.replace("sha256:", "md5:"), "not a CA pin"),
            (format!("{}\u{0}", good), "not a CA pin"),
            (good.replace("@", "@@"), "seed"),
        ];
        for (text, want) in rows {
            let err = text.parse::<JoinToken>().unwrap_err();
            assert!(err.contains(want), "{:.80}: {err}", text);
            assert!(!err.contains(&secret), "{err} echoes the secret");
            assert!(
                err.len() < 300,
                "{:.80}: error of {} bytes",
                text,
                err.len()
            );
        }
    }

    #[test]
    fn a_token_is_redeemed_once_and_not_after_its_time() {
        let mut book = TokenBook::default();
        let a = credential(3);
        let b = credential(11);
        let now = 1_800_000_000;
        book.issue(&a, now, Duration::from_secs(600)).unwrap();
        book.issue(&b, now, Duration::from_secs(60)).unwrap();
        assert_eq!(book.check(&a, now + 1), Ok(()));
        // A wrong secret for a real id reads like an unknown id.
        let wrong = TokenCredential {
            id: a.id.clone(),
            secret: b.secret.clone(),
        };
        assert_eq!(book.check(&wrong, now), Err(TokenRefusal::Invalid));
        assert_eq!(book.redeem(&wrong, now), Err(TokenRefusal::Invalid));
        assert_eq!(book.tokens.len(), 2, "a refused redeem changes nothing");
        // Once, then never again.
        assert_eq!(book.redeem(&a, now + 5), Ok(()));
        assert_eq!(book.redeem(&a, now + 6), Err(TokenRefusal::Invalid));
        // Expired: said as such only to who holds the secret; the last second is over.
        assert_eq!(book.check(&b, now + 59), Ok(()));
        assert_eq!(book.redeem(&b, now + 60), Err(TokenRefusal::Expired));
        assert_eq!(book.list(now + 60), vec![]);
        assert_eq!(book.prune(now + 60), 1);
        assert!(book.tokens.is_empty());
    }

    #[test]
    fn a_member_keeps_a_bounded_number_of_tokens_and_no_secret() {
        let mut book = TokenBook::default();
        let now = 1_800_000_000;
        let mut first = None;
        for i in 0..MAX_TOKENS {
            let c = TokenCredential {
                id: TokenId(format!("t{i:05}")),
                secret: TokenSecret(format!("{i:032}")),
            };
            let ttl = Duration::from_secs(if i == 0 { 30 } else { 3600 });
            book.issue(&c, now, ttl).unwrap();
            first.get_or_insert(c);
        }
        let one_more = credential(13);
        assert_eq!(
            book.issue(&one_more, now, DEFAULT_TTL),
            Err(TokenRefusal::TooMany)
        );
        // Once one has expired, there is room again.
        assert!(book.issue(&one_more, now + 31, DEFAULT_TTL).is_ok());
        let json = serde_json::to_string(&book).unwrap();
        assert!(!json.contains(&one_more.secret.0), "the secret is stored");
        assert!(json.contains(&one_more.secret.digest()));
        assert_eq!(serde_json::from_str::<TokenBook>(&json).unwrap(), book);
        // A hand-edited file with a bad id does not load as a token.
        let bad = json.replacen(&one_more.id.0, "BAD!!!", 1);
        assert!(serde_json::from_str::<TokenBook>(&bad).is_err());
        // Revoke by id.
        assert!(book.revoke(&one_more.id));
        assert!(!book.revoke(&one_more.id));
        assert_eq!(book.check(&one_more, now + 32), Err(TokenRefusal::Invalid));
        let _ = first;
    }

    #[test]
    fn lifetimes_are_read_as_operators_write_them() {
        let ok = [
            ("10s", 10),
            ("90s", 90),
            ("30m", 1800),
            ("24h", 86400),
            ("1h30m", 5400),
            ("7d", 604800),
            ("30d", 2592000),
            (" 2h ", 7200),
        ];
        for (text, secs) in ok {
            assert_eq!(parse_ttl(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        let bad = [
            ("", "not a lifetime"),
            ("0", "not a lifetime"),
            ("0s", "shorter than 10s"),
            ("9s", "shorter than 10s"),
            ("31d", "longer than 30d"),
            ("24", "not a lifetime"),
            ("h", "not a lifetime"),
            ("1.5h", "not a lifetime"),
            ("-1h", "not a lifetime"),
            ("1w", "not a lifetime"),
            ("99999999999999999999d", "not a lifetime"),
            ("18446744073709551615d", "not a lifetime"),
            ("1h 30m", "not a lifetime"),
        ];
        for (text, want) in bad {
            let err = parse_ttl(text).unwrap_err();
            assert!(err.contains(want) && err.contains("fix"), "{text}: {err}");
        }
    }
}
