//! SSRF guard for the image URLs users hand us. Std only; the caller passes already-parsed pieces.
//!
//! Flow: `check_scheme(url.scheme())?`, then `check_host(host, &allow)?`:
//! `Ok(Some(ip))` means connect to exactly that IP; `Ok(None)` means resolve the name, run `check_ip` on
//! *every* resolved address, and connect to a checked address (never re-resolve: DNS rebinding).
//! A name the operator listed (`allow.allows_host(name)`) is vouched for, so its addresses may be taken
//! as they are. Every redirect target must go through the same checks.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HINT: &str = "only public hosts may be fetched (allow it with --allow-hosts / D2_ALLOW_HOSTS)";

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked { Scheme(String), Address(IpAddr, &'static str), Host(String, &'static str) }

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Scheme(s) => write!(f, "the URL scheme {s:?} is not allowed; only http and https URLs may be fetched"),
            Blocked::Address(ip, why) => write!(f, "{ip} is {why}; {HINT}"),
            Blocked::Host(h, why) => write!(f, "{h:?} is {why}; {HINT}"),
        }
    }
}

/// Hosts/CIDRs explicitly opened by the operator (comma-separated: "127.0.0.1,10.0.0.0/8,images.example.com,::1").
#[derive(Debug, Clone, Default)]
pub struct AllowList { hosts: Vec<String>, nets: Vec<(IpAddr, u8)> }

impl AllowList {
    /// Entries: IP, `[IPv6]`, CIDR (`10.0.0.0/8`, `fd00::/8`) or exact host name. Empty entries are errors.
    pub fn parse(spec: &str) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        for raw in spec.split(',') {
            let entry = raw.trim();
            let bad = |why: &str| format!("bad --allow-hosts / D2_ALLOW_HOSTS entry {entry:?}: {why}");
            let (addr, prefix) = match entry.split_once('/') { Some((a, p)) => (a, Some(p)), None => (entry, None) };
            let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
            if let Ok(ip) = addr.parse::<IpAddr>() {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len = match prefix {
                    None => max,
                    Some(p) => p.parse::<u8>().ok().filter(|n| *n <= max && p.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| bad(&format!("the prefix length after '/' must be a number from 0 to {max}")))?,
                };
                list.nets.push(match ip {
                    IpAddr::V6(v6) if len >= 96 && v6.to_ipv4_mapped().is_some() => (canonical(ip), len - 96),
                    _ => (ip, len),
                });
                continue;
            }
            let name = entry.trim_end_matches('.').to_ascii_lowercase();
            if entry.is_empty() { return Err(bad("empty entry (stray comma?)")); }
            if prefix.is_some() { return Err(bad("a CIDR needs an IP address before the '/'")); }
            if ends_in_number(&name) { return Err(bad("not a valid IP address")); }
            let label_ok = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name.split('.').all(label_ok) {
                return Err(bad("not an IP address, CIDR or host name (wildcards are not supported)"));
            }
            list.hosts.push(name);
        }
        Ok(list)
    }

    /// Exact, case-insensitive host name match (trailing dot ignored).
    pub fn allows_host(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.');
        self.hosts.iter().any(|n| n.eq_ignore_ascii_case(h))
    }

    /// IP in any listed CIDR / equal to a listed IP (v4-mapped v6 compared as v4).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|&(net, len)| {
            let (a, b, width) = match (ip, net) {
                (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
                (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
                _ => return false,
            };
            (a ^ b).checked_shr(width - u32::from(len)).unwrap_or(0) == 0 // same first `len` bits
        })
    }

    pub fn is_empty(&self) -> bool { self.hosts.is_empty() && self.nets.is_empty() }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip { IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4), v4 => v4 }
}

/// Is the scheme fetchable at all (http/https only).
pub fn check_scheme(scheme: &str) -> Result<(), Blocked> {
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") { Ok(()) }
    else { Err(Blocked::Scheme(scheme.to_string())) }
}

/// Ok if public (or opened by the allow-list), else `Blocked::Address(ip, reason)`.
/// IPv6 that embeds IPv4 (mapped, compatible, SIIT, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by the IPv4.
pub fn check_ip(ip: IpAddr, allow: &AllowList) -> Result<(), Blocked> {
    if allow.allows_ip(ip) { return Ok(()); }
    let why = match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) if allow.allows_ip(IpAddr::V4(v4)) => None,
            Some(v4) => v4_reason(v4),
            None => v6_reason(v6),
        },
    };
    why.map_or(Ok(()), |why| Err(Blocked::Address(ip, why)))
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "the unspecified address",
        (0, ..) => "a reserved \"this network\" address",
        (127, ..) => "a loopback address",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "a private address",
        (169, 254, _) => "a link-local address (cloud metadata lives here)",
        (100, 64..=127, _) => "a carrier-grade NAT (shared) address",
        (192, 0, 0) => "a reserved (IETF protocol) address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a reserved benchmarking address",
        (224..=239, ..) => "a multicast address",
        _ if ip.is_broadcast() => "the broadcast address",
        (240..=255, ..) => "a reserved address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => "the unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        0xfc00..=0xfdff => "a private (unique-local) address",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a private (site-local) address",
        0xff00..=0xffff => "a multicast address",
        0x2001 if s[1] == 0x0db8 => "a documentation address",
        0x2000..=0x3fff => return None, // global unicast
        _ => "a reserved (not globally routable) address",
    })
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let (bits, tail) = (u128::from(ip), Ipv4Addr::from(u128::from(ip) as u32));
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0xffff, 0, ..] => Some(tail), // mapped, SIIT
        [0, 0, 0, 0, 0, 0, ..] if bits > 1 => Some(tail),                       // compatible (not :: / ::1)
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(tail),                           // NAT64
        [0x2002, ..] => Some(Ipv4Addr::from((bits >> 80) as u32)),              // 6to4
        _ => None,
    }
}

/// Check a URL host (WHATWG-normalised or not). `Ok(Some(ip))`: a literal IP that passed;
/// `Ok(None)`: a name to resolve, then check every address with `check_ip`.
pub fn check_host(host: &str, allow: &AllowList) -> Result<Option<IpAddr>, Blocked> {
    let bad = |why| Err(Blocked::Host(host.to_string(), why));
    let h = host.trim();
    let inner = h.strip_prefix('[').and_then(|x| x.strip_suffix(']'));
    if inner.is_some() || h.contains(':') {
        let (addr, zone) = match inner.unwrap_or(h).split_once('%') { Some((a, _)) => (a, true), None => (inner.unwrap_or(h), false) };
        let Ok(v6) = addr.parse::<Ipv6Addr>() else { return bad("not a valid IPv6 address") };
        check_ip(IpAddr::V6(v6), allow)?;
        return if zone { bad("an IPv6 address with a zone id (scoped to a local interface)") } else { Ok(Some(IpAddr::V6(v6))) };
    }
    let name = h.trim_end_matches('.').to_ascii_lowercase();
    if ends_in_number(&name) {
        let Some(v4) = parse_ipv4(&name) else { return bad("not a valid IPv4 address") };
        return check_ip(IpAddr::V4(v4), allow).map(|()| Some(IpAddr::V4(v4)));
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        return bad("not a valid host name");
    }
    if allow.allows_host(&name) { return Ok(None); }
    if name == "localhost" || name.ends_with(".localhost") { bad("a loopback host name") }
    else if name == "metadata" || name.ends_with(".internal") { bad("an internal host name (cloud metadata lives here)") }
    else if name.ends_with(".local") { bad("a local-network (mDNS) host name") }
    else { Ok(None) }
}

/// WHATWG "ends in a number": the last label is all digits or 0x-hex, so the host must be an IPv4 address.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or("");
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || last.strip_prefix("0x").is_some_and(|x| x.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// inet_aton / WHATWG IPv4: 1-4 parts, each decimal, 0-octal or 0x-hex; the last part fills the rest.
fn parse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u64> = name.split('.').map(ipv4_number).collect::<Option<_>>()?;
    let (last, init) = parts.split_last()?;
    if parts.len() > 4 || init.iter().any(|&p| p > 255) || *last >= 1u64 << (8 * (5 - parts.len())) { return None; }
    let v = init.iter().enumerate().fold(*last, |acc, (i, &p)| acc + (p << (8 * (3 - i))));
    Some(Ipv4Addr::from(v as u32))
}

fn ipv4_number(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x") {
        Some(x) => (x, 16),
        None if s.len() > 1 && s.starts_with('0') => (&s[1..], 8),
        None => (s, 10),
    };
    if digits.is_empty() { return (radix == 16).then_some(0); }
    if !digits.chars().all(|c| c.is_digit(radix)) { return None; }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    fn host(h: &str) -> Result<Option<IpAddr>, Blocked> { check_host(h, &AllowList::default()) }
    fn reason(h: &str) -> &'static str {
        match host(h) { Err(Blocked::Address(_, why) | Blocked::Host(_, why)) => why, other => panic!("{h} not blocked: {other:?}") }
    }

    #[test]
    fn loopback_spellings_blocked() {
        for h in ["127.0.0.1", "127.1", "0x7f000001", "0X7F000001", "2130706433", "0177.0.0.1", "0177.0.0.01", "127.0.0.1.",
                  "[::1]", "::1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]"] {
            assert_eq!(reason(h), "a loopback address", "{h}");
        }
    }

    #[test]
    fn other_categories_blocked() {
        for (h, frag) in [ // each host with a phrase its refusal must contain("169.254.169.254", "metadata"), ("[::ffff:169.254.169.254]", "metadata"), ("0xa9fea9fe", "metadata"),
            ("10.0.0.1", "private"), ("10.1.2", "private"), ("012.0.0.1", "private"), ("172.16.5.4", "private"),
            ("192.168.1.1", "private"), ("100.64.0.1", "carrier-grade"), ("0.0.0.0", "unspecified"), ("0", "unspecified"),
            ("0.1.2.3", "this network"), ("[::]", "unspecified"), ("[fe80::1]", "link-local"), ("fe80::1%eth0", "link-local"),
            ("[fc00::1]", "unique-local"), ("[fd12:3456::1]", "unique-local"), ("[ff02::1]", "multicast"), ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"), ("192.0.0.8", "reserved"), ("198.18.0.1", "benchmarking"),
            ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"), ("203.0.113.9", "documentation"),
            ("[2001:db8::1]", "documentation"), ("[100::1]", "not globally routable"),
            ("localhost", "loopback"), ("LOCALHOST.", "loopback"), ("foo.localhost", "loopback"), ("a.b.localhost.", "loopback"),
            ("metadata.google.internal", "metadata"), ("Metadata.Google.Internal.", "metadata"), ("metadata", "metadata"),
            ("printer.local", "mDNS"), ("[2606:4700:4700::1111%eth0]", "zone id"), ("1.2.3.256", "IPv4"), ("256.0.0.1", "IPv4"),
            ("08.0.0.1", "IPv4"), ("1.2.3.4.5", "IPv4"), ("[::1", "IPv6"), ("a b", "host name"), ("", "host name"), ("[zz]", "IPv6")] {
            assert!(reason(h).contains(frag), "{h}: {}", reason(h));
        }
    }

    #[test]
    fn public_hosts_pass() {
        for h in ["8.8.8.8", "1.1.1.1", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]", "[64:ff9b::808:808]", "0x08080808"] {
            assert!(matches!(host(h), Ok(Some(_))), "{h}: {:?}", host(h));
        }
        assert_eq!(host("134744072"), Ok(Some("8.8.8.8".parse().unwrap())));
        for h in ["example.com", "EXAMPLE.com.", "localhost.example.com", "notlocalhost", "my_host.example", "0x1g"] {
            assert_eq!(host(h), Ok(None), "{h}");
        }
    }

    #[test]
    fn allow_list_opens_hosts() {
        let a = AllowList::parse(" 127.0.0.1, 10.0.0.0/8 ,Images.Internal., [::1], ::ffff:192.168.0.0/112").unwrap();
        assert!(!a.is_empty() && AllowList::default().is_empty() && a.allows_host("images.internal."));
        for h in ["127.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]", "10.200.3.4", "[::1]", "192.168.4.5"] {
            assert!(matches!(check_host(h, &a), Ok(Some(_))), "{h}");
        }
        assert_eq!(check_host("IMAGES.INTERNAL.", &a), Ok(None));
        assert!(check_ip("10.9.9.9".parse().unwrap(), &a).is_ok());
        for h in ["127.0.0.2", "172.16.0.1", "other.internal", "localhost"] { assert!(check_host(h, &a).is_err(), "{h}") }
    }

    #[test]
    fn bad_allow_entries_rejected() {
        for spec in ["10.0.0.0/33", "", "a b", ",", "127.0.0.1,,10.0.0.1", "10.0.0.1,", "::1/129", "10.0.0.0/", "10.0.0.0/x",
                     "10.0.0.0/+8", "example.com/24", "*.example.com", "300.1.1.1", "127.1"] {
            let err = AllowList::parse(spec).expect_err(spec);
            assert!(err.contains("entry"), "{spec}: {err}");
        }
        assert!(AllowList::parse("10.0.0.0/33").unwrap_err().contains("\"10.0.0.0/33\""));
        assert!(AllowList::parse("0.0.0.0/0,::/0").unwrap().allows_ip("8.8.8.8".parse().unwrap()));
        let v6 = AllowList::parse("fd00::/8").unwrap();
        assert!(v6.allows_ip("fd12::1".parse().unwrap()) && !v6.allows_ip("fe80::1".parse().unwrap()));
    }

    #[test]
    fn schemes() {
        for s in ["http", "https", "HTTPS"] { assert_eq!(check_scheme(s), Ok(())); }
        for s in ["file", "ftp", "gopher", "data", "javascript", ""] { assert_eq!(check_scheme(s), Err(Blocked::Scheme(s.into()))); }
    }

    #[test]
    fn messages_are_clear() {
        assert_eq!(host("127.0.0.1").unwrap_err().to_string(),
            "127.0.0.1 is a loopback address; only public hosts may be fetched (allow it with --allow-hosts / D2_ALLOW_HOSTS)");
        assert!(host("localhost").unwrap_err().to_string().starts_with("\"localhost\" is a loopback host name; only public"));
        assert!(check_scheme("file").unwrap_err().to_string().contains("only http and https"));
    }
}
