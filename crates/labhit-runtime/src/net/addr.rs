//! The address classifier of the server-side request forgery guard: which IP addresses are
//! special (loopback, private, link-local, …) and so never reached through a host name.
//!
//! IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address they
//! carry, so no spelling of `127.0.0.1` passes as public.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is special.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16` and IPv6 unique local `fc00::/7`.
    Private,
    /// `169.254/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// `100.64/10`, carrier-grade NAT.
    SharedAddressSpace,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`.
    Documentation,
    /// `198.18/15`.
    Benchmarking,
    /// `192.0.0/24` (IETF protocol assignments), `240/4`, `100::/64`, site-local `fec0::/10`,
    /// Teredo `2001::/32`, and other ranges not routed on the public internet.
    Reserved,
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::SharedAddressSpace => "shared address space (carrier-grade NAT)",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
        })
    }
}

/// `Some(why)` when `ip` is special, `None` when it is an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<Special> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Special> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => Special::Unspecified,
        (127, _, _) => Special::Loopback,
        (10, _, _) | (192, 168, _) => Special::Private,
        (172, 16..=31, _) => Special::Private,
        (169, 254, _) => Special::LinkLocal,
        (100, 64..=127, _) => Special::SharedAddressSpace,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Special::Documentation,
        (198, 18..=19, _) => Special::Benchmarking,
        (192, 0, 0) | (192, 88, 99) => Special::Reserved,
        (224..=239, _, _) => Special::Multicast,
        _ if ip == Ipv4Addr::BROADCAST => Special::Broadcast,
        (240..=255, _, _) => Special::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Special> {
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => Special::Unspecified,
        [0, 0, 0, 0, 0, 0, 0, 1] => Special::Loopback,
        _ if s[0] & 0xfe00 == 0xfc00 => Special::Private,
        _ if s[0] & 0xffc0 == 0xfe80 => Special::LinkLocal,
        _ if s[0] & 0xffc0 == 0xfec0 => Special::Reserved,
        _ if s[0] & 0xff00 == 0xff00 => Special::Multicast,
        [0x2001, 0xdb8, ..] => Special::Documentation,
        [0x2001, 0, ..] => Special::Reserved,
        [0x100, 0, 0, 0, ..] => Special::Reserved,
        // Anything else outside global unicast 2000::/3 is not routed publicly.
        _ if s[0] & 0xe000 != 0x2000 => Special::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-compatible (deprecated), but not `::` and `::1`.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        // NAT64 well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4: the IPv4 address is in segments 1 and 2.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_special_range_and_passes_public_ones() {
        let table: [(&str, Option<Special>); 34] = [
            ("0.0.0.0", Some(Special::Unspecified)),
            ("0.1.2.3", Some(Special::Unspecified)),
            ("127.0.0.1", Some(Special::Loopback)),
            ("127.255.255.254", Some(Special::Loopback)),
            ("10.1.2.3", Some(Special::Private)),
            ("172.16.0.1", Some(Special::Private)),
            ("172.31.255.255", Some(Special::Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Special::Private)),
            ("169.254.169.254", Some(Special::LinkLocal)),
            ("100.64.0.1", Some(Special::SharedAddressSpace)),
            ("100.128.0.1", None),
            ("224.0.0.1", Some(Special::Multicast)),
            ("255.255.255.255", Some(Special::Broadcast)),
            ("240.0.0.1", Some(Special::Reserved)),
            ("192.0.0.8", Some(Special::Reserved)),
            ("192.0.2.1", Some(Special::Documentation)),
            ("198.18.0.1", Some(Special::Benchmarking)),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("::", Some(Special::Unspecified)),
            ("::1", Some(Special::Loopback)),
            ("::ffff:127.0.0.1", Some(Special::Loopback)),
            ("::ffff:169.254.169.254", Some(Special::LinkLocal)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Special::Loopback)),
            ("64:ff9b::10.0.0.1", Some(Special::Private)),
            ("2002:7f00:1::", Some(Special::Loopback)),
            ("fc00::1", Some(Special::Private)),
            ("fd12:3456::1", Some(Special::Private)),
            ("fe80::1", Some(Special::LinkLocal)),
            ("ff02::1", Some(Special::Multicast)),
            ("2001:db8::1", Some(Special::Documentation)),
            ("2606:4700::1111", None),
        ];
        for (ip, want) in table {
            let parsed: IpAddr = ip.parse().expect(ip);
            assert_eq!(classify(parsed), want, "{ip}");
        }
    }
}
