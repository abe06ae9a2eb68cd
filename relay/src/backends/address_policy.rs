//! Which network addresses push endpoints may reach. Web Push, UnifiedPush and forwarding URLs come
//! from users, so without a check the relay would POST into the operator's own network (SSRF). Only
//! public unicast addresses pass, plus the CIDRs the operator lists in
//! `relay.allowed_endpoint_networks` (tests, LANs). The check runs twice: on IP-literal hosts before
//! a request (a resolver is never asked for those), and in [`PublicResolver`] on every address a host
//! name resolves to, at connect time, so a name that re-resolves to 127.0.0.1 (DNS rebinding) fails.
//! Ranges: the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890), RFC 1918, RFC 6598,
//! RFC 4193, RFC 4291 section 2.5.5, RFC 6052, RFC 3056, RFC 4380.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `fd00::/8`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or CIDR network (like 10.0.0.0/8 or fd00::/8)")]
pub struct BadCidr(String);

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    /// Whether `ip` lies in this network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it stands for.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is a public unicast address, one a push endpoint on the internet can have.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()          // 0.0.0.0
        || a == 0                  // 0.0.0.0/8 "this network" (RFC 791)
        || ip.is_loopback()        // 127.0.0.0/8
        || ip.is_private()         // 10/8, 172.16/12, 192.168/16 (RFC 1918)
        || ip.is_link_local()      // 169.254.0.0/16 (RFC 3927)
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10 shared address space, CGNAT (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments (RFC 6890)
        || ip.is_documentation()   // 192.0.2/24, 198.51.100/24, 203.0.113/24 (RFC 5737)
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15 benchmarking (RFC 2544)
        || (a == 192 && b == 88 && c == 99) // 192.88.99.0/24 6to4 relay anycast (RFC 7526)
        || ip.is_multicast()       // 224.0.0.0/4
        || a >= 240) // 240.0.0.0/4 reserved, and 255.255.255.255 broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if s[0] == 0x2002 {
        // 6to4 (RFC 3056): the IPv4 address it embeds decides.
        let o = ip.octets();
        return is_public_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    !(ip.is_unspecified()                        // ::
        || ip.is_loopback()                      // ::1
        || ip.is_multicast()                     // ff00::/8
        || (s[0] & 0xfe00) == 0xfc00             // fc00::/7 unique local (RFC 4193)
        || (s[0] & 0xffc0) == 0xfe80             // fe80::/10 link-local (RFC 4291)
        || (s[0] & 0xffc0) == 0xfec0             // fec0::/10 deprecated site-local (RFC 3879)
        || s[..6] == [0, 0, 0, 0, 0, 0]          // ::/96 IPv4-compatible (deprecated, RFC 4291 2.5.5.1)
        || (s[0] == 0x64 && s[1] == 0xff9b)      // 64:ff9b::/96 and 64:ff9b:1::/48 NAT64 (RFC 6052, 8215)
        || s[..4] == [0x100, 0, 0, 0]            // 100::/64 discard-only (RFC 6666)
        || (s[0] == 0x2001 && s[1] < 0x200)      // 2001::/23 IETF protocol assignments, incl. Teredo
        || (s[0] == 0x2001 && s[1] == 0xdb8)     // 2001:db8::/32 documentation (RFC 3849)
        || s[0] == 0x3fff) // 3fff::/20 documentation (RFC 9637)
}

/// Why an endpoint may not be contacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointRefused {
    /// The host is, or resolves only to, addresses that are not public and not allowed.
    #[error("endpoint address is not public")]
    NotPublic,
    /// The URL does not parse or has no host.
    #[error("endpoint URL is invalid")]
    BadUrl,
}

/// The addresses push endpoints may reach: public ones, plus the operator's exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<Cidr>,
}

impl AddressPolicy {
    /// A policy allowing public addresses and `allowed` networks. Errors: the first entry that is not
    /// a CIDR.
    pub fn new<S: AsRef<str>>(allowed: &[S]) -> Result<AddressPolicy, BadCidr> {
        let allowed = allowed
            .iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(AddressPolicy { allowed })
    }

    /// Whether a connection to `ip` is allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|c| c.contains(ip))
    }

    /// Checks the host of `url` when it is an IP literal (host names are checked when resolved).
    /// Errors: [`EndpointRefused::BadUrl`], [`EndpointRefused::NotPublic`].
    pub fn check_url(&self, url: &str) -> Result<(), EndpointRefused> {
        let parsed = reqwest::Url::parse(url).map_err(|_| EndpointRefused::BadUrl)?;
        let host = parsed.host_str().ok_or(EndpointRefused::BadUrl)?;
        // The URL parser already normalised IPv4 literals (`2130706433`, `0x7f.1`) to dotted form
        // and keeps IPv6 literals in brackets.
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let Ok(ip) = literal.unwrap_or(host).parse::<IpAddr>() else {
            return Ok(());
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(EndpointRefused::NotPublic)
        }
    }
}

/// A reqwest resolver that resolves with the system resolver and keeps only the addresses the
/// policy permits; a name left with none fails with [`EndpointRefused::NotPublic`].
#[derive(Debug, Clone)]
pub struct PublicResolver {
    policy: Arc<AddressPolicy>,
}

impl PublicResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> PublicResolver {
        PublicResolver { policy }
    }
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let permitted: Vec<SocketAddr> = found.filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(EndpointRefused::NotPublic) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// Whether a reqwest error was this policy refusing the address (the refusal is in its source chain).
pub fn is_refusal(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<EndpointRefused>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        let table: &[(&str, bool)] = &[
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("93.184.215.14", true),
            ("100.63.255.255", true),
            ("100.128.0.0", true),
            ("172.15.255.255", true),
            ("172.32.0.0", true),
            ("198.17.255.255", true),
            ("198.20.0.0", true),
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("127.0.0.1", false),
            ("127.255.255.254", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("192.0.0.8", false),
            ("192.0.2.1", false),
            ("198.51.100.7", false),
            ("203.0.113.9", false),
            ("198.18.0.1", false),
            ("198.19.255.255", false),
            ("192.88.99.1", false),
            ("224.0.0.1", false),
            ("239.255.255.250", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("2606:4700:4700::1111", true),
            ("2a00:1450:4001:80b::200e", true),
            ("2002:808:808::1", true),
            ("::", false),
            ("::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("::127.0.0.1", false),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("fe80::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("64:ff9b::7f00:1", false),
            ("100::1", false),
            ("2001:db8::1", false),
            ("2001::1", false),
            ("2002:7f00:1::1", false),
            ("2002:c0a8:101::1", false),
            ("3fff::1", false),
        ];
        for (text, public) in table {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(is_public(ip), *public, "{text}");
        }
    }

    #[test]
    fn cidrs_parse_and_match() {
        let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(loopback.contains("127.0.0.1".parse().unwrap()));
        assert!(loopback.contains("::ffff:127.9.9.9".parse().unwrap()));
        assert!(!loopback.contains("128.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("::1".parse().unwrap()));
        let lan: Cidr = "192.168.4.0/22".parse().unwrap();
        assert!(lan.contains("192.168.7.255".parse().unwrap()));
        assert!(!lan.contains("192.168.8.0".parse().unwrap()));
        let ula: Cidr = "fd00::/8".parse().unwrap();
        assert!(ula.contains("fd12::1".parse().unwrap()));
        assert!(!ula.contains("fe80::1".parse().unwrap()));
        let host: Cidr = "10.0.0.5".parse().unwrap();
        assert!(host.contains("10.0.0.5".parse().unwrap()));
        assert!(!host.contains("10.0.0.6".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("10.0.0.6".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "example.org",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_checks_ip_literal_hosts_and_honours_exceptions() {
        let strict = AddressPolicy::default();
        assert_eq!(
            strict.check_url("http://127.0.0.1:8080/up"),
            Err(EndpointRefused::NotPublic)
        );
        assert_eq!(
            strict.check_url("https://[::1]/up"),
            Err(EndpointRefused::NotPublic)
        );
        assert_eq!(
            strict.check_url("https://[::ffff:169.254.169.254]/x"),
            Err(EndpointRefused::NotPublic)
        );
        // Non-canonical IPv4 forms are normalised by the URL parser (WHATWG URL), not slipped past.
        assert_eq!(
            strict.check_url("http://2130706433/"),
            Err(EndpointRefused::NotPublic)
        );
        assert_eq!(
            strict.check_url("http://0x7f.1/"),
            Err(EndpointRefused::NotPublic)
        );
        assert_eq!(strict.check_url("https://8.8.8.8/x"), Ok(()));
        assert_eq!(strict.check_url("https://push.example.org/x"), Ok(()));
        assert_eq!(strict.check_url("not a url"), Err(EndpointRefused::BadUrl));
        let lan = AddressPolicy::new(&["127.0.0.0/8"]).unwrap();
        assert_eq!(lan.check_url("http://127.0.0.1:8080/up"), Ok(()));
        assert_eq!(
            lan.check_url("http://10.0.0.1/up"),
            Err(EndpointRefused::NotPublic)
        );
        assert!(AddressPolicy::new(&["nonsense"]).is_err());
    }

    #[tokio::test]
    async fn resolver_drops_non_public_addresses() {
        let strict = PublicResolver::new(Arc::new(AddressPolicy::default()));
        let name = Name::from_str("localhost").unwrap();
        assert!(strict.resolve(name).await.is_err());
        let lan = PublicResolver::new(Arc::new(
            AddressPolicy::new(&["127.0.0.0/8", "::1"]).unwrap(),
        ));
        let name = Name::from_str("localhost").unwrap();
        let addrs: Vec<SocketAddr> = lan.resolve(name).await.unwrap().collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
