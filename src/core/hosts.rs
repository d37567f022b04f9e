//! `/etc/hosts`: does it map `::1` and `127.0.0.1` to `localhost`, and the fix that adds the line.
//!
//! Parsing compares typed addresses (`0:0:0:0:0:0:0:1` is `::1`), ignores comments, and the fix
//! appends a line while keeping every other byte of the file.

use std::net::IpAddr;

pub(crate) const IPV6_LOCALHOST_LINE: &str = "::1\tlocalhost ip6-localhost ip6-loopback";
pub(crate) const IPV4_LOCALHOST_LINE: &str = "127.0.0.1\tlocalhost";

/// Whether some line of `text` maps `ip` to `name` (case-insensitive, as the resolver does).
pub(crate) fn maps(text: &str, ip: IpAddr, name: &str) -> bool {
    text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(Ok(addr)) = fields.next().map(str::parse::<IpAddr>) else {
            return false;
        };
        addr == ip && fields.any(|n| n.eq_ignore_ascii_case(name))
    })
}

/// `text` with `line` appended, every existing byte kept.
pub(crate) fn with_line(text: &str, line: &str) -> String {
    let mut out = String::with_capacity(text.len() + line.len() + 2);
    out.push_str(text);
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn recognises_mappings_by_typed_address() {
        let table: &[(&str, &str, bool)] = &[
            ("::1 localhost\n", "::1", true),
            ("::1\tip6-localhost ip6-loopback localhost\n", "::1", true),
            ("0:0:0:0:0:0:0:1 LOCALHOST\n", "::1", true),
            ("# ::1 localhost\n", "::1", false),
            ("::1 ip6-localhost\n", "::1", false),
            ("2001:db8::1 localhost\n", "::1", false),
            ("127.0.0.1 localhost\n", "::1", false),
            ("127.0.0.1 localhost # and more\n", "127.0.0.1", true),
            ("127.0.1.1 localhost\n", "127.0.0.1", false),
            ("", "::1", false),
        ];
        for (text, addr, want) in table {
            assert_eq!(maps(text, ip(addr), "localhost"), *want, "{text:?} {addr}");
        }
    }

    #[test]
    fn fix_keeps_every_byte() {
        let original = "127.0.0.1 localhost\n# comment\n192.0.2.7 db   # no newline at end";
        let fixed = with_line(original, IPV6_LOCALHOST_LINE);
        assert!(fixed.starts_with(original));
        assert_eq!(
            &fixed[original.len()..],
            "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
        assert!(maps(&fixed, ip("::1"), "localhost"));
    }
}
