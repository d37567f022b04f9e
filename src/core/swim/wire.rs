//! The prober's datagrams, pure: a compact binary form that fits, with the seal around it, in one
//! IPv6 minimum-MTU packet (no fragments: one lost fragment loses a whole datagram, which is how
//! chitchat's 6 kB digests collapsed under loss at 100 nodes; README "Compared with memberlist").
//!
//! ```text
//! datagram = VERSION from:name kind:u8 body count:u8 update*
//! ping     = seq:u32 target:name          ack = seq:u32
//! ping-req = seq:u32 target:name          gossip = (nothing)
//! sync     = reply:u8                     digest = members:u64 state:u64
//! update   = tag:u8 id:name incarnation:u64 (alive: addr | suspect, dead: by:name)
//! name     = len:u8 bytes (a valid node name: 1–63 of [A-Za-z0-9._-])
//! addr     = 4 ipv4:4 port:u16 | 6 ipv6:16 port:u16
//! ```
//! Integers are little-endian. Decoding refuses anything else, names the first problem, and
//! allocates for at most `MAX_UPDATES` updates, whatever count a datagram claims.

use super::{Envelope, Message, NodeName, Update};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first byte of every prober datagram (after the seal is opened). chitchat 0.11's messages
/// start with its magic number 45,139 in little-endian (0x53 0xB0): the first byte tells the two
/// apart on a shared gossip port.
pub(crate) const VERSION: u8 = 0xA1;
/// The most a datagram may be before sealing: 1,280 (IPv6's minimum MTU) − 48 (IPv6 and UDP
/// headers) − 56 (the seal, `core::seal::OVERHEAD`) leaves 1,176; a little is kept spare.
pub(crate) const MAX_DATAGRAM: usize = 1_150;
/// Updates one datagram may carry (a bound for a decoder, not a target: the size limit comes first).
pub(crate) const MAX_UPDATES: usize = 64;

const PING: u8 = 1;
const ACK: u8 = 2;
const PING_REQ: u8 = 3;
const GOSSIP: u8 = 4;
const SYNC: u8 = 5;
/// Added after kinds 1–5 shipped on main: a prober without it drops the datagram as malformed
/// (silently), and its own anti-entropy (`Sync`) is still answered, so mixed versions converge.
const DIGEST: u8 = 6;

const ALIVE: u8 = 1;
const SUSPECT: u8 = 2;
const DEAD: u8 = 3;

/// The encoded size of an envelope's header and body (its updates not counted).
pub(crate) fn header_len(env: &Envelope) -> usize {
    1 + name_len(&env.from)
        + 1
        + match &env.message {
            Message::Ping { target, .. } | Message::PingReq { target, .. } => 4 + name_len(target),
            Message::Ack { .. } => 4,
            Message::Gossip => 0,
            Message::Sync { .. } => 1,
            Message::Digest { .. } => 16,
        }
        + 1
}

/// The encoded size of one update.
pub(crate) fn update_len(update: &Update) -> usize {
    1 + name_len(update.id())
        + 8
        + match update {
            Update::Alive { addr, .. } => addr_len(addr),
            Update::Suspect { by, .. } | Update::Dead { by, .. } => name_len(by),
        }
}

fn name_len(name: &NodeName) -> usize {
    1 + name.as_str().len()
}

fn addr_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

pub(crate) fn encode(env: &Envelope) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(header_len(env) + env.updates.iter().map(update_len).sum::<usize>());
    out.push(VERSION);
    put_name(&mut out, &env.from);
    match &env.message {
        Message::Ping { seq, target } => {
            out.push(PING);
            out.extend_from_slice(&seq.to_le_bytes());
            put_name(&mut out, target);
        }
        Message::Ack { seq } => {
            out.push(ACK);
            out.extend_from_slice(&seq.to_le_bytes());
        }
        Message::PingReq { seq, target } => {
            out.push(PING_REQ);
            out.extend_from_slice(&seq.to_le_bytes());
            put_name(&mut out, target);
        }
        Message::Gossip => out.push(GOSSIP),
        Message::Sync { reply } => {
            out.push(SYNC);
            out.push(u8::from(*reply));
        }
        Message::Digest { members, state } => {
            out.push(DIGEST);
            out.extend_from_slice(&members.to_le_bytes());
            out.extend_from_slice(&state.to_le_bytes());
        }
    }
    // The sender keeps to MAX_UPDATES (`Swim::take_updates`); a longer list is cut, not wrapped.
    let count = env.updates.len().min(MAX_UPDATES);
    out.push(count as u8);
    for update in &env.updates[..count] {
        match update {
            Update::Alive {
                id,
                incarnation,
                addr,
            } => {
                out.push(ALIVE);
                put_name(&mut out, id);
                out.extend_from_slice(&incarnation.to_le_bytes());
                put_addr(&mut out, addr);
            }
            Update::Suspect {
                id,
                incarnation,
                by,
            }
            | Update::Dead {
                id,
                incarnation,
                by,
            } => {
                out.push(if matches!(update, Update::Suspect { .. }) {
                    SUSPECT
                } else {
                    DEAD
                });
                put_name(&mut out, id);
                out.extend_from_slice(&incarnation.to_le_bytes());
                put_name(&mut out, by);
            }
        }
    }
    out
}

fn put_name(out: &mut Vec<u8>, name: &NodeName) {
    out.push(name.as_str().len() as u8);
    out.extend_from_slice(name.as_str().as_bytes());
}

fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_le_bytes());
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("not a prober datagram (first byte {0:#04x}, expected {VERSION:#04x})")]
    Version(u8),
    #[error("{0} bytes, more than the {MAX_DATAGRAM} a prober datagram may be")]
    TooLong(usize),
    #[error("cut short while reading {0}")]
    Short(&'static str),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("unknown update kind {0}")]
    UpdateKind(u8),
    #[error("{0} updates, more than {MAX_UPDATES}")]
    TooManyUpdates(usize),
    #[error("{0} is not a node name (1–63 of A–Z a–z 0–9 . _ -)")]
    Name(&'static str),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("{0} bytes left over after the last update")]
    Trailing(usize),
    #[error("sync reply flag {0} is neither 0 nor 1")]
    Flag(u8),
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Short(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let bytes = self.take(8, what)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    fn name(&mut self, what: &'static str) -> Result<NodeName, DecodeError> {
        let len = self.u8(what)? as usize;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .ok()
            .and_then(NodeName::parse)
            .ok_or(DecodeError::Name(what))
    }

    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8("address family")? {
            4 => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(self.take(4, "IPv4 address")?).expect("4 bytes"),
            )),
            6 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(self.take(16, "IPv6 address")?).expect("16 bytes"),
            )),
            other => return Err(DecodeError::Family(other)),
        };
        let port = self.take(2, "port")?;
        Ok(SocketAddr::new(ip, u16::from_le_bytes([port[0], port[1]])))
    }
}

pub(crate) fn decode(datagram: &[u8]) -> Result<Envelope, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong(datagram.len()));
    }
    let mut r = Reader { rest: datagram };
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let from = r.name("sender")?;
    let message = match r.u8("message kind")? {
        PING => Message::Ping {
            seq: r.u32("sequence")?,
            target: r.name("target")?,
        },
        ACK => Message::Ack {
            seq: r.u32("sequence")?,
        },
        PING_REQ => Message::PingReq {
            seq: r.u32("sequence")?,
            target: r.name("target")?,
        },
        GOSSIP => Message::Gossip,
        SYNC => Message::Sync {
            reply: match r.u8("reply flag")? {
                0 => false,
                1 => true,
                other => return Err(DecodeError::Flag(other)),
            },
        },
        DIGEST => Message::Digest {
            members: r.u64("members digest")?,
            state: r.u64("state digest")?,
        },
        other => return Err(DecodeError::Kind(other)),
    };
    let count = r.u8("update count")? as usize;
    if count > MAX_UPDATES {
        return Err(DecodeError::TooManyUpdates(count));
    }
    let mut updates = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = r.u8("update kind")?;
        let id = r.name("update's node")?;
        let incarnation = r.u64("incarnation")?;
        updates.push(match tag {
            ALIVE => Update::Alive {
                id,
                incarnation,
                addr: r.addr()?,
            },
            SUSPECT => Update::Suspect {
                id,
                incarnation,
                by: r.name("suspecting node")?,
            },
            DEAD => Update::Dead {
                id,
                incarnation,
                by: r.name("declaring node")?,
            },
            other => return Err(DecodeError::UpdateKind(other)),
        });
    }
    if !r.rest.is_empty() {
        return Err(DecodeError::Trailing(r.rest.len()));
    }
    Ok(Envelope {
        from,
        message,
        updates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        NodeName::parse(s).unwrap()
    }

    fn every_kind() -> Vec<Envelope> {
        let updates = vec![
            Update::Alive {
                id: name("node-2"),
                incarnation: 1_800_000_000_123,
                addr: "[2001:db8::2]:7946".parse().unwrap(),
            },
            Update::Alive {
                id: name("n3"),
                incarnation: 7,
                addr: "192.0.2.3:7946".parse().unwrap(),
            },
            Update::Suspect {
                id: name("n4"),
                incarnation: 9,
                by: name("node-1"),
            },
            Update::Dead {
                id: name("n5.example"),
                incarnation: u64::MAX,
                by: name("n5.example"),
            },
        ];
        let from = name("node-1");
        [
            Message::Ping {
                seq: 42,
                target: name("node-2"),
            },
            Message::Ack { seq: u32::MAX },
            Message::PingReq {
                seq: 0,
                target: name("n_3"),
            },
            Message::Gossip,
            Message::Sync { reply: true },
            Message::Sync { reply: false },
            Message::Digest {
                members: 0x0123_4567_89ab_cdef,
                state: u64::MAX,
            },
        ]
        .into_iter()
        .map(|message| Envelope {
            from: from.clone(),
            message,
            updates: updates.clone(),
        })
        .collect()
    }

    #[test]
    fn every_message_and_update_survives_the_round_trip_at_its_announced_size() {
        for env in every_kind() {
            let bytes = encode(&env);
            let announced = header_len(&env) + env.updates.iter().map(update_len).sum::<usize>();
            assert_eq!(bytes.len(), announced, "{env:?}");
            assert_eq!(decode(&bytes).unwrap(), env);
        }
    }

    /// The digest's bytes, pinned: members already running read them so (a change is a new kind).
    #[test]
    fn a_digest_is_kind_6_with_two_little_endian_words() {
        let bytes = encode(&Envelope {
            from: name("a"),
            message: Message::Digest {
                members: 0x0102_0304_0506_0708,
                state: 9,
            },
            updates: vec![],
        });
        assert_eq!(
            bytes,
            [
                &[VERSION, 1, b'a', 6][..],
                &[8, 7, 6, 5, 4, 3, 2, 1],
                &[9, 0, 0, 0, 0, 0, 0, 0],
                &[0]
            ]
            .concat()
        );
    }

    /// Every prefix of a valid datagram is refused (cut short), and so is one byte too many.
    #[test]
    fn truncated_and_padded_datagrams_are_refused() {
        for env in every_kind() {
            let bytes = encode(&env);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{cut} of {env:?}");
            }
            let mut padded = bytes.clone();
            padded.push(0);
            assert_eq!(decode(&padded), Err(DecodeError::Trailing(1)));
        }
    }

    #[test]
    fn hostile_datagrams_are_refused_with_the_reason() {
        let ping = encode(&every_kind()[0]);
        let with = |at: usize, byte: u8| {
            let mut d = ping.clone();
            d[at] = byte;
            decode(&d)
        };
        // chitchat's own messages, or garbage, on the shared port.
        assert_eq!(with(0, 0x00), Err(DecodeError::Version(0)));
        // A name longer than what follows, a zero-length name, a name with a slash or a NUL.
        assert_eq!(with(1, 200), Err(DecodeError::Short("sender")));
        assert_eq!(with(1, 0), Err(DecodeError::Name("sender")));
        assert_eq!(with(2, b'/'), Err(DecodeError::Name("sender")));
        assert_eq!(with(2, 0), Err(DecodeError::Name("sender")));
        // "node-1" is 6 bytes: the kind sits at 1 + 1 + 6.
        assert_eq!(with(8, 99), Err(DecodeError::Kind(99)));
        let sync = encode(&every_kind()[4]);
        let mut bad_flag = sync.clone();
        bad_flag[9] = 2;
        assert_eq!(decode(&bad_flag), Err(DecodeError::Flag(2)));
        // An update count above the bound is refused before anything is allocated for it.
        let mut gossip = encode(&Envelope {
            from: name("a"),
            message: Message::Gossip,
            updates: vec![],
        });
        *gossip.last_mut().unwrap() = 255;
        assert_eq!(decode(&gossip), Err(DecodeError::TooManyUpdates(255)));
        // A count that promises more updates than the datagram holds.
        *gossip.last_mut().unwrap() = 3;
        assert_eq!(decode(&gossip), Err(DecodeError::Short("update kind")));
        // Huge.
        assert_eq!(
            decode(&vec![VERSION; MAX_DATAGRAM + 1]),
            Err(DecodeError::TooLong(MAX_DATAGRAM + 1))
        );
        // An unknown update kind and address family.
        let alive = encode(&Envelope {
            from: name("a"),
            message: Message::Gossip,
            updates: vec![Update::Alive {
                id: name("b"),
                incarnation: 1,
                addr: "192.0.2.1:1".parse().unwrap(),
            }],
        });
        // VERSION, 1 "a", GOSSIP, count: the update starts at 5.
        let mut bad = alive.clone();
        bad[5] = 9;
        assert_eq!(decode(&bad), Err(DecodeError::UpdateKind(9)));
        let mut bad = alive.clone();
        bad[5 + 1 + 2 + 8] = 5;
        assert_eq!(decode(&bad), Err(DecodeError::Family(5)));
    }

    /// Bytes from a fixed-seed generator: decoding never panics, and what decodes encodes back to
    /// the same bytes (one form per message).
    #[test]
    fn random_bytes_never_panic_and_what_decodes_is_canonical() {
        let mut rng = crate::core::mix::SplitMix64(0x5eed);
        let mut next = || rng.next();
        let seeds: Vec<Vec<u8>> = every_kind().iter().map(encode).collect();
        let mut decoded = 0;
        for round in 0..20_000 {
            let mut d = seeds[round % seeds.len()].clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % d.len();
                d[at] = next() as u8;
            }
            if let Ok(env) = decode(&d) {
                decoded += 1;
                assert_eq!(encode(&env), d);
            }
        }
        assert!(
            decoded > 100,
            "the mutations should leave some valid datagrams"
        );
    }
}
