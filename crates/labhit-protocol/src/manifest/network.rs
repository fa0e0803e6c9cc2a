//! The network allow-list of a manifest (`capabilities.network`): the entry forms, the
//! normalised form of a host, and which requests an entry admits.
//!
//! Entry forms:
//!
//! * `host` (`hooks.example.com`): that host name on the default ports, 80 and 443;
//! * `host:port` (`hooks.example.com:8443`): that host name on that port only;
//! * `*.suffix` and `*.suffix:port` (`*.example.com`): every name that ends in `.suffix`
//!   with at least one more label (`a.example.com`, `a.b.example.com`), never `suffix`
//!   itself;
//! * IP literals (`203.0.113.7`, `203.0.113.7:8080`, `[2001:db8::1]:8080`, `2001:db8::1`):
//!   exactly that address, in canonical form (an IPv4-mapped IPv6 address is the IPv4
//!   address). Only a literal entry reaches a loopback, private or otherwise special address
//!   (see the runtime's server-side request forgery guard).
//!
//! Host names are normalised the same way in entries and requests: ASCII lowercase, one
//! trailing dot removed, labels of letters, digits and `-` (1 to 63 bytes, 253 in all).
//! Non-ASCII names are refused (write the punycode form, `xn--…`), and so are names that a
//! URL parser would read as an IPv4 address in a non-canonical form (`127.1`, `0x7f.0.0.1`,
//! `2130706433`), so that no spelling of an address passes as a host name.
//!
//! Pure parsing and matching: resolution and address checks belong to the host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A normalised host: a host name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name: lowercase ASCII, no trailing dot.
    Name(String),
    /// An IP address in canonical form (IPv4-mapped IPv6 addresses become IPv4).
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why a host or an entry is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The host is empty.
    #[error("the host is empty")]
    Empty,
    /// The host has characters outside ASCII.
    #[error("host `{0}` is not ASCII; write internationalised names in punycode (`xn--…`)")]
    NotAscii(String),
    /// The host is a numeric form of an IPv4 address other than the dotted quad.
    #[error(
        "host `{0}` reads as an IPv4 address in a non-canonical form; write the address as four decimal numbers (`127.0.0.1`)"
    )]
    AmbiguousIpv4(String),
    /// The host is not a valid host name.
    #[error(
        "host `{0}` is not a valid host name (labels of letters, digits and `-`, 1 to 63 bytes each, 253 in all)"
    )]
    InvalidName(String),
    /// A bracketed IPv6 literal that does not parse (zone ids are refused).
    #[error("host `{0}` is not a valid IPv6 address")]
    InvalidIpv6(String),
    /// The port is not a number from 1 to 65535.
    #[error("port `{0}` is not a number from 1 to 65535")]
    InvalidPort(String),
    /// `*.` must be followed by a host name with at least two labels.
    #[error("wildcard entry `{0}` must be `*.` followed by a host name of two labels or more")]
    InvalidWildcard(String),
}

/// Normalises the host part of a URL authority (`Example.COM.`, `[::1]`, `10.0.0.1`).
pub fn normalise_host(raw: &str) -> Result<Host, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| HostError::InvalidIpv6(raw.to_owned()))?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| HostError::InvalidIpv6(raw.to_owned()))?;
        return Ok(Host::Ip(IpAddr::V6(ip).to_canonical()));
    }
    if raw.contains(':') {
        return match raw.parse::<Ipv6Addr>() {
            Ok(ip) => Ok(Host::Ip(IpAddr::V6(ip).to_canonical())),
            Err(_) => Err(HostError::InvalidIpv6(raw.to_owned())),
        };
    }
    if !raw.is_ascii() {
        return Err(HostError::NotAscii(raw.to_owned()));
    }
    let lower = raw.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.last().is_some_and(|last| looks_numeric(last)) {
        return Err(HostError::AmbiguousIpv4(raw.to_owned()));
    }
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.len() > 253 || !labels.iter().all(label_ok) {
        return Err(HostError::InvalidName(raw.to_owned()));
    }
    Ok(Host::Name(name.to_owned()))
}

/// Whether a label is a number as WHATWG URL's IPv4 parser reads one (decimal, `0x` hex or
/// octal with a leading zero): such a last label makes the whole host an IPv4 address.
fn looks_numeric(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .map(|rest| rest.bytes().all(|b| b.is_ascii_hexdigit()));
    match hex {
        Some(all_hex) => all_hex,
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The host part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host (a name or an address).
    Exact(Host),
    /// Every name ending in `.` + this suffix (stored without the leading `*.`).
    Suffix(String),
}

/// One parsed `capabilities.network` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkEntry {
    /// Which hosts.
    pub host: HostPattern,
    /// Which port; `None` means the default ports, 80 and 443.
    pub port: Option<u16>,
}

/// The ports an entry without a port admits: those of `http` and `https`.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

impl NetworkEntry {
    /// Parses an entry (`host`, `host:port`, `*.suffix[:port]`, an IP literal).
    pub fn parse(entry: &str) -> Result<Self, HostError> {
        let (host, port) = split_host_port(entry)?;
        let host = match host.strip_prefix("*.") {
            Some(suffix) => match normalise_host(suffix) {
                Ok(Host::Name(name)) if name.contains('.') => HostPattern::Suffix(name),
                _ => return Err(HostError::InvalidWildcard(entry.to_owned())),
            },
            None => HostPattern::Exact(normalise_host(host)?),
        };
        Ok(Self { host, port })
    }

    /// Whether the entry names an IP address literally.
    pub fn literal_ip(&self) -> Option<IpAddr> {
        match self.host {
            HostPattern::Exact(Host::Ip(ip)) => Some(ip),
            _ => None,
        }
    }

    /// Whether the entry admits a request to `host` on `port`.
    pub fn admits(&self, host: &Host, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        port_ok
            && match (&self.host, host) {
                (HostPattern::Exact(entry), host) => entry == host,
                (HostPattern::Suffix(suffix), Host::Name(name)) => name
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                (HostPattern::Suffix(_), Host::Ip(_)) => false,
            }
    }
}

impl fmt::Display for NetworkEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(host) => write!(f, "{host}")?,
            HostPattern::Suffix(suffix) => write!(f, "*.{suffix}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Splits `host[:port]`; a bare IPv6 address (more than one `:`) has no port.
fn split_host_port(entry: &str) -> Result<(&str, Option<u16>), HostError> {
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(HostError::InvalidPort(p.to_owned())),
    };
    if entry.starts_with('[') {
        return match entry.rfind("]:") {
            Some(at) => Ok((&entry[..=at], Some(parse_port(&entry[at + 2..])?))),
            None => Ok((entry, None)),
        };
    }
    if entry.matches(':').count() > 1 {
        return match entry.parse::<Ipv6Addr>() {
            Ok(_) => Ok((entry, None)),
            Err(_) => Err(HostError::InvalidIpv6(entry.to_owned())),
        };
    }
    match entry.split_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((entry, None)),
    }
}

/// A parsed allow-list: the entries of `capabilities.network`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<NetworkEntry>,
}

impl AllowList {
    /// Parses every entry; the first bad one is the error, with its index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, HostError)> {
        let entries = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| NetworkEntry::parse(entry.as_ref()).map_err(|e| (index, e)))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether there are no entries (no network at all).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries.
    pub fn entries(&self) -> &[NetworkEntry] {
        &self.entries
    }

    /// The entries that admit `host` on `port`.
    pub fn admitting<'a>(
        &'a self,
        host: &'a Host,
        port: u16,
    ) -> impl Iterator<Item = &'a NetworkEntry> + 'a {
        self.entries.iter().filter(move |e| e.admits(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        normalise_host(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn hosts_normalise_or_are_refused() {
        let ok = [
            ("Hooks.Example.COM", "hooks.example.com"),
            ("hooks.example.com.", "hooks.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("localhost", "localhost"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "[::1]"),
            ("[::FFFF:127.0.0.1]", "127.0.0.1"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
            ("a-b.c0", "a-b.c0"),
        ];
        for (raw, want) in ok {
            assert_eq!(host(raw).to_string(), want, "{raw}");
        }
        type IsExpected = fn(&HostError) -> bool;
        let bad: [(&str, IsExpected); 12] = [
            ("", |e| matches!(e, HostError::Empty)),
            (".", |e| matches!(e, HostError::Empty)),
            ("bücher.example", |e| matches!(e, HostError::NotAscii(_))),
            ("127.1", |e| matches!(e, HostError::AmbiguousIpv4(_))),
            ("2130706433", |e| matches!(e, HostError::AmbiguousIpv4(_))),
            ("0x7f.0.0.1", |e| matches!(e, HostError::AmbiguousIpv4(_))),
            ("a.0x7f", |e| matches!(e, HostError::AmbiguousIpv4(_))),
            ("a..b", |e| matches!(e, HostError::InvalidName(_))),
            ("-a.example", |e| matches!(e, HostError::InvalidName(_))),
            ("a_b.example", |e| matches!(e, HostError::InvalidName(_))),
            ("[fe80::1%eth0]", |e| matches!(e, HostError::InvalidIpv6(_))),
            ("[::1", |e| matches!(e, HostError::InvalidIpv6(_))),
        ];
        for (raw, is) in bad {
            let err = normalise_host(raw).expect_err(raw);
            assert!(is(&err), "{raw}: {err:?}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(matches!(
            normalise_host(&long),
            Err(HostError::InvalidName(_))
        ));
    }

    #[test]
    fn entries_parse_and_display_normalised() {
        for (raw, shown) in [
            ("Hooks.Example.com", "hooks.example.com"),
            ("hooks.example.com:8443", "hooks.example.com:8443"),
            ("*.Example.com", "*.example.com"),
            ("*.example.com:80", "*.example.com:80"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:8080", "[::1]:8080"),
            ("2001:db8::1", "[2001:db8::1]"),
            ("[::ffff:127.0.0.1]:9", "127.0.0.1:9"),
        ] {
            let entry = NetworkEntry::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(entry.to_string(), shown, "{raw}");
        }
        for raw in [
            "",
            "a b",
            "host:0",
            "host:65536",
            "host:+80",
            "host:",
            "*.com",
            "*",
            "*.",
            "a.*.example.com",
            "https://x.example",
            "x.example/path",
            "[::1]:x",
            "1:2:3",
        ] {
            assert!(NetworkEntry::parse(raw).is_err(), "{raw} was accepted");
        }
    }

    #[test]
    fn entries_admit_exactly_their_hosts_and_ports() {
        // (entry, host, port, admitted)
        let table = [
            ("hooks.example.com", "hooks.example.com", 443, true),
            ("hooks.example.com", "HOOKS.example.com.", 80, true),
            ("hooks.example.com", "hooks.example.com", 8080, false),
            ("hooks.example.com", "evil.hooks.example.com", 443, false),
            (
                "hooks.example.com",
                "hooks.example.com.evil.net",
                443,
                false,
            ),
            ("hooks.example.com:8080", "hooks.example.com", 8080, true),
            ("hooks.example.com:8080", "hooks.example.com", 80, false),
            ("*.example.com", "a.example.com", 443, true),
            ("*.example.com", "a.b.example.com", 80, true),
            ("*.example.com", "example.com", 443, false),
            ("*.example.com", "badexample.com", 443, false),
            ("*.example.com", "a.example.com", 22, false),
            ("*.example.com:22", "a.example.com", 22, true),
            ("127.0.0.1:8080", "127.0.0.1", 8080, true),
            ("127.0.0.1:8080", "[::ffff:127.0.0.1]", 8080, true),
            ("127.0.0.1:8080", "127.0.0.1", 8081, false),
            ("127.0.0.1:8080", "localhost", 8080, false),
            ("localhost:8080", "127.0.0.1", 8080, false),
            ("[::1]:8080", "[::1]", 8080, true),
            ("[::1]:8080", "[0:0:0:0:0:0:0:1]", 8080, true),
        ];
        for (entry, request, port, want) in table {
            let parsed = NetworkEntry::parse(entry).expect(entry);
            assert_eq!(
                parsed.admits(&host(request), port),
                want,
                "{entry} vs {request}:{port}"
            );
        }
    }

    #[test]
    fn only_ip_entries_are_literal() {
        let list = AllowList::parse(&["a.example", "10.0.0.1:80", "*.b.example"]).expect("list");
        let literal: Vec<_> = list
            .entries()
            .iter()
            .filter_map(|e| e.literal_ip())
            .collect();
        assert_eq!(literal, [IpAddr::from([10, 0, 0, 1])]);
        assert_eq!(
            AllowList::parse(&["ok.example", "a b"]).map(|_| ()),
            Err((1, HostError::InvalidName("a b".into())))
        );
    }
}
