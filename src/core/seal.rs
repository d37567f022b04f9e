//! Sealed gossip: every datagram a member sends is encrypted and authenticated under the
//! cluster's gossip key, so that only members can speak (or read) gossip. An outsider's datagram,
//! forged, mutated or replayed, is refused before chitchat sees it, with the reason counted.
//!
//! Two wire formats (all integers big-endian), both XChaCha20-Poly1305 under the one key every
//! member shares, whose 192-bit nonces (a random session per process, then a counter) never
//! repeat across members, unlike 96-bit ones:
//! - standard (every build): `"SRg1"` · key id (4) · nonce (24: session 16 · counter 8) ·
//!   sealed(sender clock ms (8) · message) · tag (16): 56 bytes beyond the message;
//! - compact (a member says it opens it, `Format::Compact`): `"S2"` · key id (4) · session (8) ·
//!   counter (6) · sealed(sender clock s (4) · message) · tag (16): 40 bytes. Its nonce is
//!   session · `COMPACT_DOMAIN` · 0 0 · counter: never a standard nonce (a sealer's standard
//!   session never ends with `COMPACT_DOMAIN`), unique per sealer while the counter stays below
//!   2^48, and across processes unless two of the sessions ever made under one key share 64
//!   random bits (for a million process starts, about 3 in 10^8).
//!
//! The magic and the key id are authenticated too; the nonce is, by being the nonce.
//!
//! Pure: the caller passes the clock and the session's randomness.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

pub(crate) const KEY_LEN: usize = 32;
const MAGIC: [u8; 4] = *b"SRg1";
const KEY_ID_LEN: usize = 4;
const SESSION_LEN: usize = 16;
const NONCE_LEN: usize = SESSION_LEN + 8;
const AAD_LEN: usize = MAGIC.len() + KEY_ID_LEN;
const HEADER_LEN: usize = AAD_LEN + NONCE_LEN;
const CLOCK_LEN: usize = 8;
const TAG_LEN: usize = 16;
/// Bytes a sealed datagram carries beyond the chitchat message (standard format).
pub(crate) const OVERHEAD: usize = HEADER_LEN + CLOCK_LEN + TAG_LEN;
const COMPACT_MAGIC: [u8; 2] = *b"S2";
const COMPACT_SESSION_LEN: usize = 8;
const COMPACT_COUNTER_LEN: usize = 6;
const COMPACT_AAD_LEN: usize = COMPACT_MAGIC.len() + KEY_ID_LEN;
const COMPACT_HEADER_LEN: usize = COMPACT_AAD_LEN + COMPACT_SESSION_LEN + COMPACT_COUNTER_LEN;
const COMPACT_CLOCK_LEN: usize = 4;
/// The middle of a compact nonce: sets it apart from every standard one.
const COMPACT_DOMAIN: [u8; 8] = *b"SRg2-40b";
/// Bytes a compact datagram carries beyond the message.
pub(crate) const COMPACT_OVERHEAD: usize = COMPACT_HEADER_LEN + COMPACT_CLOCK_LEN + TAG_LEN;
/// A sealer's counter past this cannot be written in a compact datagram (2^48: at 100 datagrams
/// a second, 89,000 years); it then seals in the standard format.
const COMPACT_COUNTER_MAX: u64 = (1 << 48) - 1;

/// Which wire format a datagram is sealed in: standard, which every build opens, or compact (16
/// bytes less), only to a member that said it opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    Standard,
    Compact,
}
/// A sender session seen for the first time is accepted only when its clock is this close to
/// ours: captured datagrams of a process that is gone cannot be replayed later. Generous, so that
/// a node whose clock drifts keeps gossiping (preflight warns about an unsynchronised clock).
pub(crate) const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
/// How far behind a session's newest datagram one may arrive (UDP reorders) and still be
/// accepted, once.
const REPLAY_WINDOW: u64 = 128;
/// Sessions remembered; the one heard from longest ago is forgotten first.
const MAX_SESSIONS: usize = 4096;

/// A 256-bit cluster gossip key. Its text form is 64 hex digits; `Debug` shows only its id.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct GossipKey([u8; KEY_LEN]);

/// The first 4 bytes of a hash of the key: names a key in datagrams, `gossip-key list` and logs
/// without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct KeyId([u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl KeyId {
    /// 8 hex digits, as `gossip-key list` shows them (the one validator of a key id).
    pub(crate) fn parse(text: &str) -> Result<KeyId, String> {
        let trimmed = text.trim();
        match parse_hex(trimmed).map(<[u8; KEY_ID_LEN]>::try_from) {
            Some(Ok(bytes)) => Ok(KeyId(bytes)),
            _ => Err(format!(
                "'{}' is not a gossip key id: a key id is {} hex digits; fix: copy it from `stackring cluster gossip-key list`",
                crate::core::config::echo(&trimmed.escape_debug().to_string()),
                KEY_ID_LEN * 2
            )),
        }
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

impl GossipKey {
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> GossipKey {
        GossipKey(bytes)
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Option<GossipKey> {
        Some(GossipKey(bytes.try_into().ok()?))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn id(&self) -> KeyId {
        use blake2::Digest;
        let hash = blake2::Blake2b512::new()
            .chain_update(b"stackring gossip key id\0")
            .chain_update(self.0)
            .finalize();
        KeyId([hash[0], hash[1], hash[2], hash[3]])
    }

    pub(crate) fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// 64 hex digits (what `gossip-key install` takes and the state file keeps).
    pub(crate) fn parse(text: &str) -> Result<GossipKey, String> {
        let text = text.trim();
        match parse_hex(text).map(<[u8; KEY_LEN]>::try_from) {
            Some(Ok(bytes)) => Ok(GossipKey(bytes)),
            _ => Err(format!(
                "the gossip key given ({} characters{}) is not {} hex digits (256 bits; the value is a secret, so it is not repeated here); fix: run `stackring cluster gossip-key install` without KEY to generate one, or make one with `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`",
                text.chars().count(),
                if text.chars().all(|c| c.is_ascii_hexdigit()) { "" } else { ", some not hex digits" },
                KEY_LEN * 2,
            )),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GossipKey({})", self.id())
    }
}

impl Serialize for GossipKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for GossipKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GossipKey, D::Error> {
        let text = String::deserialize(d)?;
        GossipKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The keys a member opens datagrams with; it seals with `primary`. Consul's keyring: install a
/// new key everywhere, use it everywhere, then remove the old one, and no datagram is refused on
/// the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Keyring {
    primary: GossipKey,
    #[serde(default)]
    others: Vec<GossipKey>,
}

impl Keyring {
    pub(crate) fn new(primary: GossipKey) -> Keyring {
        Keyring {
            primary,
            others: Vec::new(),
        }
    }

    /// A keyring as a `Join` reply carries it: the key in use first. None when empty or a key is
    /// not 32 bytes.
    pub(crate) fn from_keys(keys: &[Vec<u8>]) -> Option<Keyring> {
        let (first, rest) = keys.split_first()?;
        let mut ring = Keyring::new(GossipKey::from_slice(first)?);
        for k in rest {
            ring.install(GossipKey::from_slice(k)?);
        }
        Some(ring)
    }

    pub(crate) fn primary(&self) -> &GossipKey {
        &self.primary
    }

    /// The primary first.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &GossipKey> {
        std::iter::once(&self.primary).chain(&self.others)
    }

    fn find(&self, id: KeyId) -> Option<&GossipKey> {
        self.keys().find(|k| k.id() == id)
    }

    /// Adds a key to open datagrams with (idempotent).
    pub(crate) fn install(&mut self, key: GossipKey) {
        if self.find(key.id()).is_none() {
            self.others.push(key);
        }
    }

    /// Seals with the installed key `id` from now on (the old primary stays installed).
    pub(crate) fn use_key(&mut self, id: KeyId) -> Result<(), String> {
        if self.primary.id() == id {
            return Ok(());
        }
        let at = self.others.iter().position(|k| k.id() == id).ok_or_else(|| {
            format!("gossip key {id} is not installed on this node; fix: `stackring cluster gossip-key install` it first")
        })?;
        let key = self.others.remove(at);
        let old = std::mem::replace(&mut self.primary, key);
        self.others.insert(0, old);
        Ok(())
    }

    /// Stops opening datagrams sealed with `id`; the key in use cannot be removed.
    pub(crate) fn remove(&mut self, id: KeyId) -> Result<(), String> {
        if self.primary.id() == id {
            return Err(format!(
                "gossip key {id} is the one in use; fix: `stackring cluster gossip-key use` another key first"
            ));
        }
        let before = self.others.len();
        self.others.retain(|k| k.id() != id);
        if self.others.len() == before {
            return Err(format!("gossip key {id} is not installed on this node"));
        }
        Ok(())
    }
}

/// A change of a keyring, as `gossip-key install|use|remove` asks it on every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyringOp {
    Install(GossipKey),
    Use(KeyId),
    Remove(KeyId),
}

impl KeyringOp {
    /// The op from its wire form (`action` with a key for install, a key id otherwise), through
    /// the one validator of each value.
    pub(crate) fn parse(action: &str, key: &str, key_id: &str) -> Result<KeyringOp, String> {
        match action {
            "install" => GossipKey::parse(key).map(KeyringOp::Install),
            "use" => KeyId::parse(key_id).map(KeyringOp::Use),
            "remove" => KeyId::parse(key_id).map(KeyringOp::Remove),
            other => Err(format!(
                "action '{}' is not install, use or remove",
                crate::core::config::echo(&other.escape_debug().to_string())
            )),
        }
    }

    pub(crate) fn action(&self) -> &'static str {
        match self {
            KeyringOp::Install(_) => "install",
            KeyringOp::Use(_) => "use",
            KeyringOp::Remove(_) => "remove",
        }
    }

    /// The key the op is about (never the key itself: logs and replies name keys by id).
    pub(crate) fn key_id(&self) -> KeyId {
        match self {
            KeyringOp::Install(k) => k.id(),
            KeyringOp::Use(id) | KeyringOp::Remove(id) => *id,
        }
    }

    /// Applies the op to `ring` (refused with the keyring's sentence, `ring` then unchanged).
    pub(crate) fn apply(&self, ring: &mut Keyring) -> Result<(), String> {
        match self {
            KeyringOp::Install(key) => {
                ring.install(key.clone());
                Ok(())
            }
            KeyringOp::Use(id) => ring.use_key(*id),
            KeyringOp::Remove(id) => ring.remove(*id),
        }
    }

    /// Whether a member whose keyring is `ids` (as it gossips them, primary first) can take this
    /// op: `None` when it can, else why not, in the keyring's own words. What `use` and
    /// `remove` check on every live member before changing any.
    pub(crate) fn precheck(&self, ids: &[KeyId]) -> Option<String> {
        match self {
            KeyringOp::Install(_) => None,
            KeyringOp::Use(id) if !ids.contains(id) => Some(format!(
                "gossip key {id} is not installed on this node; fix: `stackring cluster gossip-key install` it first"
            )),
            KeyringOp::Remove(id) if ids.first() == Some(id) => Some(format!(
                "gossip key {id} is the one in use; fix: `stackring cluster gossip-key use` another key first"
            )),
            _ => None,
        }
    }
}

impl Keyring {
    /// Key ids, the primary first: what a member gossips about its keyring.
    pub(crate) fn ids(&self) -> Vec<KeyId> {
        self.keys().map(GossipKey::id).collect()
    }
}

/// Key ids as gossiped (`primary,other,…`); ids that do not parse are skipped.
pub(crate) fn encode_ids(ids: &[KeyId]) -> String {
    ids.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn decode_ids(text: &str) -> Vec<KeyId> {
    text.split(',')
        .filter_map(|t| KeyId::parse(t).ok())
        .collect()
}

/// Why a datagram was refused (the `reason` label of `stackring_gossip_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rejected {
    /// Not a sealed datagram at all (plain chitchat, garbage, truncated).
    NotSealed,
    /// Sealed under a key this node does not have (another cluster, or a removed key).
    UnknownKey,
    /// The tag does not verify: forged or mutated.
    Forged,
    /// Authentic, but seen before (or too far behind its session's newest).
    Replayed,
    /// Authentic, from a session not seen before whose clock is too far from ours.
    Stale,
}

impl Rejected {
    pub(crate) const ALL: [Rejected; 5] = [
        Rejected::NotSealed,
        Rejected::UnknownKey,
        Rejected::Forged,
        Rejected::Replayed,
        Rejected::Stale,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejected::NotSealed => "not_sealed",
            Rejected::UnknownKey => "unknown_key",
            Rejected::Forged => "forged",
            Rejected::Replayed => "replayed",
            Rejected::Stale => "stale",
        }
    }
}

/// The sending half of one process: a random session, then a counter, make every nonce unique.
/// Both formats share the counter (a compact nonce never equals a standard one).
pub(crate) struct Sealer {
    session: [u8; SESSION_LEN],
    counter: u64,
}

impl Sealer {
    pub(crate) fn new(mut session: [u8; SESSION_LEN]) -> Sealer {
        // A standard session ending like a compact nonce's middle could meet a compact nonce of
        // this very sealer: one bit makes that impossible (the chance was 2^-64).
        if session[COMPACT_SESSION_LEN..] == COMPACT_DOMAIN {
            session[SESSION_LEN - 1] ^= 1;
        }
        Sealer {
            session,
            counter: 0,
        }
    }

    /// Writes the sealed datagram for `message` into `out` (cleared first), standard format.
    pub(crate) fn seal(&mut self, key: &GossipKey, now_ms: u64, message: &[u8], out: &mut Vec<u8>) {
        self.seal_as(Format::Standard, key, now_ms, message, out);
    }

    /// Writes the sealed datagram for `message` into `out` (cleared first), in `format`; the
    /// standard one once the counter is past what a compact datagram can carry.
    pub(crate) fn seal_as(
        &mut self,
        format: Format,
        key: &GossipKey,
        now_ms: u64,
        message: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let counter = self.counter;
        self.counter += 1;
        let aad_len = if format == Format::Compact && counter <= COMPACT_COUNTER_MAX {
            out.reserve(COMPACT_OVERHEAD + message.len());
            out.extend_from_slice(&COMPACT_MAGIC);
            out.extend_from_slice(&key.id().0);
            out.extend_from_slice(&self.session[..COMPACT_SESSION_LEN]);
            out.extend_from_slice(&counter.to_be_bytes()[8 - COMPACT_COUNTER_LEN..]);
            // Seconds since the epoch, modulo 2^32 (read back near the receiver's clock).
            out.extend_from_slice(&((now_ms / 1000) as u32).to_be_bytes());
            COMPACT_AAD_LEN
        } else {
            out.reserve(OVERHEAD + message.len());
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&key.id().0);
            out.extend_from_slice(&self.session);
            out.extend_from_slice(&counter.to_be_bytes());
            out.extend_from_slice(&now_ms.to_be_bytes());
            AAD_LEN
        };
        out.extend_from_slice(message);
        let header_len = if aad_len == AAD_LEN {
            HEADER_LEN
        } else {
            COMPACT_HEADER_LEN
        };
        let nonce = nonce_of(&out[..header_len]);
        let (header, body) = out.split_at_mut(header_len);
        let tag = key
            .cipher()
            .encrypt_in_place_detached(&nonce, &header[..aad_len], body)
            .expect("a gossip datagram is far below the cipher's length limit");
        out.extend_from_slice(&tag);
    }
}

/// The 24-byte nonce a header (of either format, already told apart by its length) names.
fn nonce_of(header: &[u8]) -> XNonce {
    let mut nonce = XNonce::default();
    if header.len() == HEADER_LEN {
        nonce.copy_from_slice(&header[AAD_LEN..]);
    } else {
        let (session, counter) = header[COMPACT_AAD_LEN..].split_at(COMPACT_SESSION_LEN);
        nonce[..COMPACT_SESSION_LEN].copy_from_slice(session);
        nonce[COMPACT_SESSION_LEN..SESSION_LEN].copy_from_slice(&COMPACT_DOMAIN);
        nonce[NONCE_LEN - COMPACT_COUNTER_LEN..].copy_from_slice(counter);
    }
    nonce
}

#[derive(Debug, Clone, Copy)]
struct Window {
    newest: u64,
    /// Bit i: counter `newest - i` was accepted.
    seen: u128,
    heard_ms: u64,
}

/// The receiving half: which counters of which sessions were accepted.
#[derive(Default)]
pub(crate) struct ReplayGuard {
    sessions: HashMap<[u8; SESSION_LEN], Window>,
}

impl ReplayGuard {
    /// Whether `counter` of `session` is new; marks it. Only called for authentic datagrams, so an
    /// outsider cannot fill the table or advance a window.
    fn accept(
        &mut self,
        session: [u8; SESSION_LEN],
        counter: u64,
        sent_ms: u64,
        now_ms: u64,
    ) -> Result<(), Rejected> {
        if let Some(w) = self.sessions.get_mut(&session) {
            if counter > w.newest {
                let shift = counter - w.newest;
                w.seen = if shift >= 128 { 0 } else { w.seen << shift };
                w.seen |= 1;
                w.newest = counter;
            } else {
                let behind = w.newest - counter;
                if behind >= REPLAY_WINDOW || w.seen & (1u128 << behind) != 0 {
                    return Err(Rejected::Replayed);
                }
                w.seen |= 1u128 << behind;
            }
            w.heard_ms = now_ms;
            return Ok(());
        }
        if sent_ms.abs_diff(now_ms) > MAX_CLOCK_SKEW_MS {
            return Err(Rejected::Stale);
        }
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, w)| w.heard_ms)
                .map(|(s, _)| *s)
            {
                self.sessions.remove(&oldest);
            }
        }
        self.sessions.insert(
            session,
            Window {
                newest: counter,
                seen: 1,
                heard_ms: now_ms,
            },
        );
        Ok(())
    }
}

/// Opens a datagram of either format: the message inside, or why it is refused.
pub(crate) fn open(
    keyring: &Keyring,
    guard: &mut ReplayGuard,
    now_ms: u64,
    datagram: &[u8],
) -> Result<Vec<u8>, Rejected> {
    let (aad_len, header_len, clock_len) = if datagram.len() >= OVERHEAD
        && datagram[..MAGIC.len()] == MAGIC
    {
        (AAD_LEN, HEADER_LEN, CLOCK_LEN)
    } else if datagram.len() >= COMPACT_OVERHEAD && datagram[..COMPACT_MAGIC.len()] == COMPACT_MAGIC
    {
        (COMPACT_AAD_LEN, COMPACT_HEADER_LEN, COMPACT_CLOCK_LEN)
    } else {
        return Err(Rejected::NotSealed);
    };
    let (header, rest) = datagram.split_at(header_len);
    let id = KeyId(
        header[aad_len - KEY_ID_LEN..aad_len]
            .try_into()
            .expect("4 bytes"),
    );
    let key = keyring.find(id).ok_or(Rejected::UnknownKey)?;
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = body.to_vec();
    let nonce = nonce_of(header);
    key.cipher()
        .decrypt_in_place_detached(&nonce, &header[..aad_len], &mut plain, tag.into())
        .map_err(|_| Rejected::Forged)?;
    // The replay window is per (session, format): the nonce's first 16 bytes name both.
    let session: [u8; SESSION_LEN] = nonce[..SESSION_LEN].try_into().expect("16 bytes");
    let counter = u64::from_be_bytes(nonce[SESSION_LEN..].try_into().expect("8 bytes"));
    let sent_ms = if clock_len == CLOCK_LEN {
        u64::from_be_bytes(plain[..CLOCK_LEN].try_into().expect("8 bytes"))
    } else {
        let secs = u32::from_be_bytes(plain[..COMPACT_CLOCK_LEN].try_into().expect("4 bytes"));
        unwrap_seconds(secs, now_ms)
    };
    guard.accept(session, counter, sent_ms, now_ms)?;
    plain.drain(..clock_len);
    Ok(plain)
}

/// A compact datagram's clock (seconds modulo 2^32) as milliseconds: the value nearest the
/// receiver's own clock (2^32 s is 136 years: no ambiguity within any skew that is accepted).
fn unwrap_seconds(secs: u32, now_ms: u64) -> u64 {
    let now_s = now_ms / 1000;
    let base = now_s & !0xFFFF_FFFF;
    [
        base.checked_sub(1 << 32),
        Some(base),
        base.checked_add(1 << 32),
    ]
    .into_iter()
    .flatten()
    .map(|b| b | u64::from(secs))
    .min_by_key(|candidate| candidate.abs_diff(now_s))
    .unwrap_or(base)
    .saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn key(n: u8) -> GossipKey {
        GossipKey::from_bytes([n; KEY_LEN])
    }

    fn sealed(sealer: &mut Sealer, k: &GossipKey, at: u64, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        sealer.seal(k, at, msg, &mut out);
        out
    }

    #[test]
    fn a_member_opens_what_a_member_sealed_and_nothing_is_in_clear() {
        let ring = Keyring::new(key(1));
        let mut sender = Sealer::new([7; 16]);
        let msg = b"cluster-name node1 2001:db8::5".to_vec();
        let d = sealed(&mut sender, ring.primary(), NOW, &msg);
        assert_eq!(d.len(), msg.len() + OVERHEAD);
        assert!(!d.windows(5).any(|w| w == b"node1"), "plaintext leaked");
        let mut guard = ReplayGuard::default();
        assert_eq!(open(&ring, &mut guard, NOW, &d), Ok(msg));
    }

    /// Each case refused with its reason, leaving no state; then `good` opens.
    fn assert_refused_and_good_opens(
        ring: &Keyring,
        cases: Vec<(&str, Vec<u8>, Rejected)>,
        good: &[u8],
    ) {
        for (what, datagram, want) in cases {
            let mut guard = ReplayGuard::default();
            assert_eq!(open(ring, &mut guard, NOW, &datagram), Err(want), "{what}");
            assert!(
                guard.sessions.is_empty(),
                "{what}: a refused datagram left state"
            );
        }
        let mut guard = ReplayGuard::default();
        assert!(open(ring, &mut guard, NOW, good).is_ok());
    }

    #[test]
    fn hostile_datagrams_are_refused_with_their_reason() {
        let ring = Keyring::new(key(1));
        let mut sender = Sealer::new([7; 16]);
        let good = sealed(&mut sender, &key(1), NOW, b"hello gossip");
        let other_cluster = sealed(&mut Sealer::new([8; 16]), &key(2), NOW, b"hello gossip");
        let mut flipped_body = good.clone();
        flipped_body[HEADER_LEN + 9] ^= 1;
        let mut flipped_tag = good.clone();
        *flipped_tag.last_mut().unwrap() ^= 0x80;
        let mut flipped_nonce = good.clone();
        flipped_nonce[AAD_LEN + 3] ^= 1;
        let mut forged_key_id = other_cluster.clone();
        forged_key_id[MAGIC.len()..AAD_LEN].copy_from_slice(&key(1).id().0);
        let mut chitchat_plain = vec![0x5a, 0xc8, 0x00, 0x01];
        chitchat_plain.extend_from_slice(&[0u8; 80]);
        let cases: Vec<(&str, Vec<u8>, Rejected)> = vec![
            ("empty", vec![], Rejected::NotSealed),
            ("one byte", vec![0], Rejected::NotSealed),
            (
                "plain chitchat message",
                chitchat_plain,
                Rejected::NotSealed,
            ),
            ("magic only", MAGIC.to_vec(), Rejected::NotSealed),
            (
                "truncated by one",
                good[..good.len() - 1].to_vec(),
                Rejected::Forged,
            ),
            (
                "header only",
                good[..OVERHEAD - 1].to_vec(),
                Rejected::NotSealed,
            ),
            ("another cluster's key", other_cluster, Rejected::UnknownKey),
            ("our key id, another key", forged_key_id, Rejected::Forged),
            ("a flipped body bit", flipped_body, Rejected::Forged),
            ("a flipped tag bit", flipped_tag, Rejected::Forged),
            ("a flipped nonce bit", flipped_nonce, Rejected::Forged),
            ("64 KiB of zeros", vec![0; 65_507], Rejected::NotSealed),
            (
                "magic then garbage",
                [&MAGIC[..], &[0xff; 200]].concat(),
                Rejected::UnknownKey,
            ),
        ];
        assert_refused_and_good_opens(&ring, cases, &good);
    }

    fn compact(sealer: &mut Sealer, k: &GossipKey, at: u64, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        sealer.seal_as(Format::Compact, k, at, msg, &mut out);
        out
    }

    /// The compact format byte by byte: 40 bytes beyond the message, the magic, key id, the
    /// session's first 8 bytes and a 6-byte counter in clear, the rest sealed; it opens like a
    /// standard one, and one sealer's datagrams of both formats, interleaved, are each accepted.
    #[test]
    fn a_compact_datagram_is_40_bytes_over_the_message_and_opens_like_a_standard_one() {
        let ring = Keyring::new(key(1));
        let mut sender = Sealer::new([7; 16]);
        let msg = b"cluster-name node1 2001:db8::5".to_vec();
        let first = compact(&mut sender, &key(1), NOW, &msg);
        assert_eq!(COMPACT_OVERHEAD, 40);
        assert_eq!(first.len(), msg.len() + 40);
        assert_eq!(&first[..2], b"S2");
        assert_eq!(&first[2..6], &key(1).id().0);
        assert_eq!(&first[6..14], &[7; 8]);
        assert_eq!(&first[14..20], &[0, 0, 0, 0, 0, 0]);
        assert!(!first.windows(5).any(|w| w == b"node1"), "plaintext leaked");
        let standard = sealed(&mut sender, &key(1), NOW, &msg);
        let second = compact(&mut sender, &key(1), NOW, &msg);
        assert_eq!(&second[14..20], &[0, 0, 0, 0, 0, 2], "one counter for both");
        let mut guard = ReplayGuard::default();
        for d in [&second, &standard, &first] {
            assert_eq!(open(&ring, &mut guard, NOW, d), Ok(msg.clone()));
        }
        for d in [&second, &standard, &first] {
            assert_eq!(open(&ring, &mut guard, NOW, d), Err(Rejected::Replayed));
        }
        // The counter past 2^48 - 1 cannot be written compactly: the standard format then.
        let mut old = Sealer::new([9; 16]);
        old.counter = COMPACT_COUNTER_MAX;
        assert_eq!(
            compact(&mut old, &key(1), NOW, b"m").len(),
            1 + COMPACT_OVERHEAD
        );
        assert_eq!(compact(&mut old, &key(1), NOW, b"m").len(), 1 + OVERHEAD);
    }

    /// A compact nonce is never a standard one, even from a session chosen to look like one.
    #[test]
    fn compact_and_standard_nonces_never_meet() {
        let mut session = [5u8; 16];
        session[8..].copy_from_slice(&COMPACT_DOMAIN);
        let sealer = Sealer::new(session);
        assert_ne!(sealer.session[8..], COMPACT_DOMAIN);
        let standard = |counter: u64| {
            let mut h = [&MAGIC[..], &[0; 4], &sealer.session, &counter.to_be_bytes()].concat();
            h.truncate(HEADER_LEN);
            nonce_of(&h)
        };
        let compact_nonce = |counter: u64| {
            let h = [
                &COMPACT_MAGIC[..],
                &[0; 4],
                &sealer.session[..8],
                &counter.to_be_bytes()[2..],
            ]
            .concat();
            nonce_of(&h)
        };
        for counter in [0, 1, 255, 1 << 40, COMPACT_COUNTER_MAX] {
            assert_ne!(standard(counter), compact_nonce(counter));
            assert_eq!(&compact_nonce(counter)[8..16], &COMPACT_DOMAIN);
        }
    }

    #[test]
    fn hostile_compact_datagrams_are_refused_with_their_reason() {
        let ring = Keyring::new(key(1));
        let mut sender = Sealer::new([7; 16]);
        let good = compact(&mut sender, &key(1), NOW, b"hello gossip");
        let other_cluster = compact(&mut Sealer::new([8; 16]), &key(2), NOW, b"hello gossip");
        let flip = |at: usize| {
            let mut d = good.clone();
            d[at] ^= 1;
            d
        };
        let mut forged_key_id = other_cluster.clone();
        forged_key_id[2..6].copy_from_slice(&key(1).id().0);
        // A compact datagram passed off as a standard one (and back): the formats do not mix.
        let mut as_standard = [&MAGIC[..], &good[2..]].concat();
        as_standard.extend_from_slice(&[0; 16]);
        let standard = sealed(&mut sender, &key(1), NOW, b"hello gossip");
        let as_compact = [&COMPACT_MAGIC[..], &standard[4..]].concat();
        let cases: Vec<(&str, Vec<u8>, Rejected)> = vec![
            ("magic only", COMPACT_MAGIC.to_vec(), Rejected::NotSealed),
            (
                "header only",
                good[..COMPACT_OVERHEAD - 1].to_vec(),
                Rejected::NotSealed,
            ),
            (
                "truncated by one",
                good[..good.len() - 1].to_vec(),
                Rejected::Forged,
            ),
            ("a flipped magic bit", flip(1), Rejected::NotSealed),
            ("a flipped key id bit", flip(3), Rejected::UnknownKey),
            ("a flipped session bit", flip(8), Rejected::Forged),
            ("a flipped counter bit", flip(19), Rejected::Forged),
            ("a flipped clock bit", flip(21), Rejected::Forged),
            ("a flipped body bit", flip(26), Rejected::Forged),
            ("a flipped tag bit", flip(good.len() - 1), Rejected::Forged),
            ("another cluster's key", other_cluster, Rejected::UnknownKey),
            ("our key id, another key", forged_key_id, Rejected::Forged),
            ("relabelled standard", as_standard, Rejected::Forged),
            ("relabelled compact", as_compact, Rejected::Forged),
            (
                "magic then garbage",
                [&COMPACT_MAGIC[..], &[0xff; 200]].concat(),
                Rejected::UnknownKey,
            ),
        ];
        assert_refused_and_good_opens(&ring, cases, &good);
    }

    /// The compact clock is whole seconds modulo 2^32, read back near the receiver's clock: the
    /// same skew rule, to the second.
    #[test]
    fn a_compact_session_first_heard_with_a_clock_far_from_ours_is_stale() {
        let ring = Keyring::new(key(1));
        let skew = MAX_CLOCK_SKEW_MS;
        let cases = [
            (NOW - skew - 1000, Err(Rejected::Stale)),
            (NOW - skew, Ok(())),
            (NOW + skew, Ok(())),
            (NOW + skew + 1000, Err(Rejected::Stale)),
            (NOW + (1 << 32) * 1000, Ok(())), // 136 years ahead reads as now: the modulus
            (0, Err(Rejected::Stale)),
        ];
        for (i, (sent, want)) in cases.into_iter().enumerate() {
            let d = compact(&mut Sealer::new([i as u8; 16]), &key(1), sent, b"x");
            let mut guard = ReplayGuard::default();
            assert_eq!(
                open(&ring, &mut guard, NOW, &d).map(|_| ()),
                want,
                "sent at {sent}"
            );
        }
        for (secs, now_ms, want_s) in [
            (5u32, 7_000u64, 5u64),
            (u32::MAX, 5_000, 0xFFFF_FFFF), // before the epoch's first wrap: nearest is 2^32 - 1
            (1, (1u64 << 32) * 1000 + 500, (1 << 32) + 1),
            (u32::MAX, (1u64 << 32) * 1000 + 500, (1 << 32) - 1),
        ] {
            assert_eq!(
                unwrap_seconds(secs, now_ms),
                want_s * 1000,
                "{secs} at {now_ms}"
            );
        }
    }

    #[test]
    fn a_replayed_datagram_is_refused_but_reordered_ones_are_accepted_once() {
        let ring = Keyring::new(key(1));
        let mut sender = Sealer::new([3; 16]);
        let d: Vec<Vec<u8>> = (0..300)
            .map(|i| sealed(&mut sender, &key(1), NOW + i, b"m"))
            .collect();
        let mut guard = ReplayGuard::default();
        // counter: expected outcome, in arrival order.
        let arrivals: &[(usize, Result<(), Rejected>)] = &[
            (0, Ok(())),
            (0, Err(Rejected::Replayed)),
            (5, Ok(())),
            (3, Ok(())),
            (3, Err(Rejected::Replayed)),
            (5, Err(Rejected::Replayed)),
            (1, Ok(())),
            (200, Ok(())),
            (73, Ok(())),                  // 127 behind: still in the window
            (72, Err(Rejected::Replayed)), // 128 behind: too old
            (4, Err(Rejected::Replayed)),
            (201, Ok(())),
            (73, Err(Rejected::Replayed)),
        ];
        for (n, want) in arrivals {
            let got = open(&ring, &mut guard, NOW + 1, &d[*n]).map(|_| ());
            assert_eq!(&got, want, "datagram #{n}");
        }
    }

    #[test]
    fn a_session_first_heard_with_a_clock_far_from_ours_is_stale() {
        let ring = Keyring::new(key(1));
        let cases = [
            (NOW - MAX_CLOCK_SKEW_MS - 1, Err(Rejected::Stale)),
            (NOW - MAX_CLOCK_SKEW_MS, Ok(())),
            (NOW + MAX_CLOCK_SKEW_MS, Ok(())),
            (NOW + MAX_CLOCK_SKEW_MS + 1, Err(Rejected::Stale)),
            (0, Err(Rejected::Stale)),
            (u64::MAX, Err(Rejected::Stale)),
        ];
        for (i, (sent, want)) in cases.into_iter().enumerate() {
            let d = sealed(&mut Sealer::new([i as u8; 16]), &key(1), sent, b"x");
            let mut guard = ReplayGuard::default();
            assert_eq!(
                open(&ring, &mut guard, NOW, &d).map(|_| ()),
                want,
                "sent at {sent}"
            );
        }
        // Once a session is known, its clock no longer matters (a long-lived peer's drift).
        let mut sender = Sealer::new([99; 16]);
        let mut guard = ReplayGuard::default();
        assert!(open(
            &ring,
            &mut guard,
            NOW,
            &sealed(&mut sender, &key(1), NOW, b"x")
        )
        .is_ok());
        let late = sealed(&mut sender, &key(1), 0, b"x");
        assert!(open(&ring, &mut guard, NOW, &late).is_ok());
    }

    #[test]
    fn sessions_are_bounded() {
        let ring = Keyring::new(key(1));
        let mut guard = ReplayGuard::default();
        for i in 0..(MAX_SESSIONS as u32 + 10) {
            let mut session = [0u8; 16];
            session[..4].copy_from_slice(&i.to_be_bytes());
            let d = sealed(&mut Sealer::new(session), &key(1), NOW, b"x");
            assert!(open(&ring, &mut guard, NOW + u64::from(i), &d).is_ok());
        }
        assert_eq!(guard.sessions.len(), MAX_SESSIONS);
    }

    #[test]
    fn rotation_install_use_remove_never_refuses_a_datagram_in_flight() {
        let mut ring = Keyring::new(key(1));
        let mut old_sender = Sealer::new([1; 16]);
        let mut guard = ReplayGuard::default();
        ring.install(key(2));
        ring.install(key(2));
        assert_eq!(ring.keys().count(), 2, "install is idempotent");
        // Installed but not used yet: both keys open.
        assert!(open(
            &ring,
            &mut guard,
            NOW,
            &sealed(&mut old_sender, &key(1), NOW, b"a")
        )
        .is_ok());
        assert!(open(
            &ring,
            &mut guard,
            NOW,
            &sealed(&mut old_sender, &key(2), NOW, b"b")
        )
        .is_ok());
        ring.use_key(key(2).id()).unwrap();
        assert_eq!(ring.primary(), &key(2));
        assert!(open(
            &ring,
            &mut guard,
            NOW,
            &sealed(&mut old_sender, &key(1), NOW, b"c")
        )
        .is_ok());
        assert!(ring.remove(key(2).id()).unwrap_err().contains("in use"));
        ring.remove(key(1).id()).unwrap();
        assert_eq!(
            open(
                &ring,
                &mut guard,
                NOW,
                &sealed(&mut old_sender, &key(1), NOW, b"d")
            ),
            Err(Rejected::UnknownKey)
        );
        assert!(ring
            .remove(key(1).id())
            .unwrap_err()
            .contains("not installed"));
        assert!(ring.use_key(key(3).id()).unwrap_err().contains("install"));
    }

    #[test]
    fn key_text_table() {
        let good = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        assert!(GossipKey::parse(good).is_ok());
        assert!(GossipKey::parse(&format!(" {good}\n")).is_ok());
        for bad in [
            "",
            "00",
            &good[..63],
            &format!("{good}00"),
            &good.replace('0', "g"),
            "é".repeat(32).as_str(),
            &"a".repeat(10_000),
        ] {
            let e = GossipKey::parse(bad).unwrap_err();
            assert!(e.contains("64 hex digits") && e.contains("fix:"), "{e}");
            assert!(e.len() < 300, "the error echoes the input: {e}");
        }
        let k = GossipKey::parse(good).unwrap();
        assert!(!format!("{k:?}").contains("0011"), "Debug leaks the key");
        let json = serde_json::to_string(&Keyring::new(k.clone())).unwrap();
        assert_eq!(
            serde_json::from_str::<Keyring>(&json).unwrap(),
            Keyring::new(k)
        );
        assert_eq!(KeyId::parse(&key(1).id().to_string()), Ok(key(1).id()));
    }

    #[test]
    fn keyring_ops_parse_through_one_validator_each_and_refuse_with_the_value() {
        let hex = key(7).to_hex();
        let id = key(7).id().to_string();
        assert_eq!(
            KeyringOp::parse("install", &hex, ""),
            Ok(KeyringOp::Install(key(7)))
        );
        assert_eq!(
            KeyringOp::parse("use", "", &id),
            Ok(KeyringOp::Use(key(7).id()))
        );
        let bad: [(&str, &str, &str, &str); 7] = [
            ("install", &hex[..63], "", "63 characters"),
            ("install", &format!("{hex}0"), "", "65 characters"),
            (
                "install",
                &format!("{}zz", &hex[..62]),
                "",
                "not hex digits",
            ),
            ("install", &"a".repeat(10_000), "", "10000 characters"),
            ("use", "", "12345", "'12345' is not a gossip key id"),
            (
                "remove",
                "",
                "nothex!!",
                "'nothex!!' is not a gossip key id",
            ),
            ("rotate", "", "", "'rotate' is not install, use or remove"),
        ];
        for (action, k, kid, want) in bad {
            let e = KeyringOp::parse(action, k, kid).unwrap_err();
            assert!(e.contains(want), "{action}: {e}");
            assert!(e.contains("fix") || action == "rotate", "{e}");
            assert!(e.len() < 400, "the error stays short: {e}");
        }
        // A key is a secret: its refusal does not repeat it.
        let near = format!("{}0", &hex[..62]);
        assert!(!KeyringOp::parse("install", &near, "")
            .unwrap_err()
            .contains(&near[..20]));
    }

    #[test]
    fn keyring_ops_apply_or_refuse_with_the_keyrings_sentence_and_precheck_agrees() {
        let (a, b) = (key(1), key(2));
        let mut ring = Keyring::new(a.clone());
        let cases: [(KeyringOp, Result<(), &str>, Vec<KeyId>); 6] = [
            (
                KeyringOp::Use(b.id()),
                Err("is not installed"),
                vec![a.id()],
            ),
            (KeyringOp::Install(b.clone()), Ok(()), vec![a.id(), b.id()]),
            (
                KeyringOp::Remove(a.id()),
                Err("is the one in use"),
                vec![a.id(), b.id()],
            ),
            (KeyringOp::Use(b.id()), Ok(()), vec![b.id(), a.id()]),
            (KeyringOp::Remove(a.id()), Ok(()), vec![b.id()]),
            (KeyringOp::Install(b.clone()), Ok(()), vec![b.id()]),
        ];
        for (op, want, after) in cases {
            let before = ring.clone();
            let pre = op.precheck(&before.ids());
            let got = op.apply(&mut ring);
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{op:?}"),
                Err(text) => {
                    assert!(got.as_ref().unwrap_err().contains(text), "{op:?}: {got:?}");
                    assert_eq!(ring, before, "a refused op changes nothing");
                }
            }
            // Precheck refuses exactly what apply refuses, except remove of an absent key
            // (harmless: nothing to remove there).
            assert_eq!(pre.is_some(), got.is_err(), "{op:?}");
            assert_eq!(ring.ids(), after, "{op:?}");
            assert_eq!(decode_ids(&encode_ids(&ring.ids())), ring.ids());
        }
    }
}
