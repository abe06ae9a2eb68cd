//! The client address of an API request, for per-address limits and the failed-login throttle. Behind a
//! reverse proxy every TCP peer is the proxy, so when the peer is one of `[relay] trusted_proxies` the
//! address comes from `client_address_header` (`X-Forwarded-For` by default): the right-most address in
//! it that is not itself a trusted proxy (each proxy appends the peer it saw, so entries to the left of
//! the last trusted hop are whatever the client claimed). Without trusted proxies the header is ignored.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address block such as `10.0.0.0/8` or `::1/128`; a bare address is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressBlock {
    network: IpAddr,
    prefix: u8,
}

impl AddressBlock {
    /// Parses `address[/prefix]`. Errors: a message naming what is wrong, for the configuration check.
    pub fn parse(text: &str) -> Result<AddressBlock, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or address/prefix"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{text:?}: the prefix must be 0 to {max}")),
            },
        };
        Ok(AddressBlock { network, prefix })
    }

    /// Whether `address` is inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                prefix_matches(&net.octets(), &a.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_matches(&net.octets(), &a.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

fn prefix_matches(network: &[u8], address: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if network[..full] != address[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (network[full] & mask) == (address[full] & mask)
}

/// Parses every configured block. Errors: one message per bad entry.
pub fn parse_blocks(entries: &[String]) -> Result<Vec<AddressBlock>, Vec<String>> {
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        match AddressBlock::parse(entry) {
            Ok(block) => blocks.push(block),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(blocks)
    } else {
        Err(problems)
    }
}

/// The client address of a request from TCP peer `peer`. Only when `peer` is a trusted proxy is `header`
/// read; an unparsable entry stops the walk and the last trusted hop is used, so a malformed header can
/// never make a request look like it came from an address of the client's choosing.
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    header: &str,
    trusted: &[AddressBlock],
) -> IpAddr {
    let is_trusted = |a: IpAddr| trusted.iter().any(|block| block.contains(a));
    if !is_trusted(peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all(header)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Ok(address) = entry.parse::<IpAddr>() else {
            break;
        };
        client = address;
        if !is_trusted(address) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    #[test]
    fn blocks_parse_and_match() {
        let block = AddressBlock::parse("10.1.0.0/16").unwrap();
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(block.contains(ip("::ffff:10.1.0.9")));
        let host = AddressBlock::parse("::1").unwrap();
        assert!(host.contains(ip("::1")));
        assert!(!host.contains(ip("::2")));
        assert!(
            AddressBlock::parse("2001:db8::/33")
                .unwrap()
                .contains(ip("2001:db8:7fff::1"))
        );
        assert!(AddressBlock::parse("10.0.0.0/33").is_err());
        assert!(AddressBlock::parse("localhost").is_err());
        assert_eq!(
            parse_blocks(&["1.2.3.4".into(), "x".into(), "y/1".into()])
                .unwrap_err()
                .len(),
            2
        );
    }

    #[test]
    fn header_is_used_only_from_a_trusted_proxy() {
        let trusted = parse_blocks(&["127.0.0.1/32".into(), "10.0.0.0/8".into()]).unwrap();
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &h, "x-forwarded-for", &trusted),
            ip("198.51.100.1"),
            "an untrusted peer cannot choose its address"
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, "x-forwarded-for", &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, "x-forwarded-for", &[]),
            ip("127.0.0.1"),
            "no trusted proxies: the header is ignored"
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let trusted = parse_blocks(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        // The client claimed 1.1.1.1; the outer proxy saw 203.0.113.9; an inner proxy 10.0.0.2.
        let h = headers(&["1.1.1.1, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, "x-forwarded-for", &trusted),
            ip("203.0.113.9")
        );
        // Garbage stops the walk at the last trusted hop.
        let h = headers(&["203.0.113.9, nonsense, 10.0.0.2"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, "x-forwarded-for", &trusted),
            ip("10.0.0.2")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_address(
                ip("127.0.0.1"),
                &HeaderMap::new(),
                "x-forwarded-for",
                &trusted
            ),
            ip("127.0.0.1")
        );
    }
}
