//! Who a call comes from, as the per-client shares see it.
//!
//! A share keyed by the full address would give one host many shares: a machine holds the whole
//! 127.0.0.0/8 loopback, and an IPv6 host usually 2^64 addresses of its /64. So every share is
//! keyed by a [`ClientKey`]: the address's /32 for IPv4 and its /64 for IPv6 (an IPv4 address
//! mapped into IPv6 counts as IPv4).
//!
//! Behind a load balancer or an ingress every connection comes from the proxy, so every client
//! would share one share. `--trusted-proxies CIDR,...` names the proxies: a call whose connection
//! comes from one of them is taken to come from the right-most `X-Forwarded-For` entry that is
//! not itself a trusted proxy (entries left of it are the client's own words, and anyone can write
//! them). A call from any other address is its connection's address, whatever its headers say.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The address of the client on the other end of a call (its connection's, or the one a trusted
/// proxy forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// The part of a client's address that per-client shares are keyed by: IPv4 /32, IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientAddr {
    /// The key of this client's shares.
    pub fn key(self) -> ClientKey {
        match self.0.to_canonical() {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                ClientKey(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}/32"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

impl Default for ClientKey {
    fn default() -> Self {
        Self(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// The networks whose connections are proxies that forward the client's address
/// (`--trusted-proxies`); empty by default: no header is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// How many `X-Forwarded-For` entries are looked at, at most (a chain of proxies is short).
const MAX_FORWARDED_HOPS: usize = 16;

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of CIDR blocks or single addresses (`10.0.0.0/8,::1`).
    fn from_str(list: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for item in list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let network = match item.parse::<IpNet>() {
                Ok(network) => network,
                Err(_) => item
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("not a CIDR block or an IP address: {item:?}"))?,
            };
            networks.push(network);
        }
        Ok(Self(networks))
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client of a call whose connection comes from `peer`: `peer` itself unless it is a
    /// trusted proxy; then the right-most `X-Forwarded-For` entry that is not a trusted proxy (or
    /// the left-most entry, when every one is). An entry that is not an address ends the walk:
    /// the last trusted hop is taken, since nothing left of it can be believed.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        if !self.contains(peer) {
            return ClientAddr(peer);
        }
        let mut client = peer;
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|byte| *byte == b','))
            .take(MAX_FORWARDED_HOPS);
        for entry in entries {
            let Some(address) = forwarded_address(entry) else {
                break;
            };
            client = address;
            if !self.contains(address) {
                break;
            }
        }
        ClientAddr(client)
    }
}

/// The address of one `X-Forwarded-For` entry, read on its own (bytes outside ASCII in another
/// entry change nothing), with a port dropped (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn forwarded_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Some(bracketed) = text.strip_prefix('[') {
        let (inside, _port) = bracketed.split_once(']')?;
        return inside.parse().ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.append("x-forwarded-for", value);
            }
        }
        headers
    }

    #[test]
    fn a_share_is_keyed_by_the_ipv4_address_and_the_ipv6_slash_64() {
        let key = |text: &str| ClientAddr(addr(text)).key().to_string();
        assert_eq!(key("127.0.0.1"), "127.0.0.1/32");
        assert_ne!(key("127.0.0.1"), key("127.0.0.2"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.1.2.3"), key("10.1.2.3"));
    }

    #[test]
    fn trusted_proxies_parse_blocks_and_single_addresses() {
        let proxies: TrustedProxies = "10.0.0.0/8, 192.168.1.7 ,fd00::/8"
            .parse()
            .unwrap_or_default();
        assert!(proxies.contains(addr("10.20.30.40")));
        assert!(proxies.contains(addr("192.168.1.7")));
        assert!(!proxies.contains(addr("192.168.1.8")));
        assert!(proxies.contains(addr("fd12::1")));
        assert!(proxies.contains(addr("::ffff:10.0.0.1")));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("nonsense".parse::<TrustedProxies>().is_err());
        assert!(""
            .parse::<TrustedProxies>()
            .is_ok_and(|proxies| proxies.is_empty()));
    }

    #[test]
    fn a_call_from_an_untrusted_address_is_that_address_whatever_it_forwards() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap_or_default();
        let client = proxies.client_of(addr("203.0.113.5"), &forwarded(&["198.51.100.1"]));
        assert_eq!(client, ClientAddr(addr("203.0.113.5")));
        let none = TrustedProxies::default();
        let client = none.client_of(addr("10.0.0.1"), &forwarded(&["198.51.100.1"]));
        assert_eq!(client, ClientAddr(addr("10.0.0.1")));
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap_or_default();
        let peer = addr("10.0.0.2");
        // The client wrote a fake entry first; the proxy appended the real address.
        let headers = forwarded(&["1.2.3.4, 198.51.100.7"]);
        assert_eq!(proxies.client_of(peer, &headers).0, addr("198.51.100.7"));
        // Two proxies, entries over two headers.
        let headers = forwarded(&["1.2.3.4", "198.51.100.7, 10.1.1.1"]);
        assert_eq!(proxies.client_of(peer, &headers).0, addr("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(proxies.client_of(peer, &HeaderMap::new()).0, peer);
        // Bytes outside ASCII in the client's own entry do not hide the proxy's entry.
        let mut odd = HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_bytes(b"\x80, 198.51.100.7") {
            odd.append("x-forwarded-for", value);
        }
        assert_eq!(proxies.client_of(peer, &odd).0, addr("198.51.100.7"));
        // Ports are dropped.
        let headers = forwarded(&["198.51.100.7:5678"]);
        assert_eq!(proxies.client_of(peer, &headers).0, addr("198.51.100.7"));
        let headers = forwarded(&["[2001:db8::7]:443"]);
        assert_eq!(proxies.client_of(peer, &headers).0, addr("2001:db8::7"));
        // Garbage stops the walk at the last trusted hop.
        let headers = forwarded(&["198.51.100.7, garbage, 10.1.1.1"]);
        assert_eq!(proxies.client_of(peer, &headers).0, addr("10.1.1.1"));
    }
}
