//! Fast text for IP addresses (RFC 5952 canonical IPv6, dotted-quad IPv4), identical to `std`'s
//! `Display` but without going through `fmt` machinery: `inspect --json` on a host with thousands
//! of addresses spent a third of its time formatting them.

use serde::Serializer;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest text: `ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff` (39) or `::ffff:255.255.255.255`.
pub(crate) struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    pub(crate) fn new(ip: &IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; 48],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => t.v4(v4),
            IpAddr::V6(v6) => t.v6(v6),
        }
        t
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits, hex letters, '.' and ':' are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn decimal(&mut self, n: u8) {
        if n >= 100 {
            self.push(b'0' + n / 100);
        }
        if n >= 10 {
            self.push(b'0' + (n / 10) % 10);
        }
        self.push(b'0' + n % 10);
    }

    fn v4(&mut self, ip: &Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            self.decimal(octet);
        }
    }

    fn hex(&mut self, group: u16) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let nibble = ((group >> shift) & 0xf) as usize;
            if nibble != 0 || started || shift == 0 {
                self.push(DIGITS[nibble]);
                started = true;
            }
        }
    }

    fn v6(&mut self, ip: &Ipv6Addr) {
        if let Some(v4) = ip.to_ipv4_mapped() {
            self.buf[..7].copy_from_slice(b"::ffff:");
            self.len = 7;
            return self.v4(&v4);
        }
        let groups = ip.segments();
        // The longest run of two or more zero groups (the first one on a tie) becomes "::".
        let (mut best_start, mut best_len) = (0, 0);
        let mut i = 0;
        while i < 8 {
            if groups[i] == 0 {
                let start = i;
                while i < 8 && groups[i] == 0 {
                    i += 1;
                }
                if i - start > best_len {
                    (best_start, best_len) = (start, i - start);
                }
            } else {
                i += 1;
            }
        }
        if best_len < 2 {
            best_len = 0;
            best_start = 8;
        }
        for (i, group) in groups.iter().enumerate() {
            if i == best_start {
                self.push(b':');
                self.push(b':');
                continue;
            }
            if i > best_start && i < best_start + best_len {
                continue;
            }
            if i > 0 && i != best_start + best_len {
                self.push(b':');
            }
            self.hex(*group);
        }
    }
}

/// `#[serde(serialize_with = "ipfmt::serialize")]` for an `IpAddr` field.
pub(crate) fn serialize<S: Serializer>(ip: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(IpText::new(ip).as_str())
}

/// The same for a list of addresses.
pub(crate) fn serialize_list<S: Serializer>(ips: &[IpAddr], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(ips.len()))?;
    for ip in ips {
        seq.serialize_element(IpText::new(ip).as_str())?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_as_std(ip: IpAddr) {
        assert_eq!(IpText::new(&ip).as_str(), ip.to_string(), "{ip:?}");
    }

    #[test]
    fn matches_std_on_edge_cases() {
        for text in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1:0:0:0:1",
            "fe80::1:2:3:4",
            "2001:db8:1:0:ffff:ffff:ffff:fff0",
            "0:1::",
            "1:0:1:0:1:0:1:0",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
            "64:ff9b::192.0.2.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "fd00::1:5",
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.10",
            "10.0.0.1",
        ] {
            same_as_std(text.parse().unwrap());
        }
    }

    #[test]
    fn matches_std_on_many_patterns() {
        // Every pattern of zero / small / large groups over 8 positions (3^8 = 6561).
        for mut pattern in 0..6561u32 {
            let mut groups = [0u16; 8];
            for g in groups.iter_mut() {
                *g = [0, 0x1, 0xabcd][(pattern % 3) as usize];
                pattern /= 3;
            }
            same_as_std(IpAddr::V6(Ipv6Addr::from(groups)));
        }
        for n in (0..=u32::MAX).step_by(7_919_993) {
            same_as_std(IpAddr::V4(Ipv4Addr::from(n)));
        }
    }
}
