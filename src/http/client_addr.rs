//! Which address a request came from, for what is limited per client (the console's sign-in).
//!
//! Behind a reverse proxy every connection comes from the proxy. `X-Forwarded-For` names the
//! client, but any client can send that header, so it is read only when the connection comes
//! from a proxy listed in `BURSAR_TRUSTED_PROXIES`, and then from the right: each trusted proxy
//! appends the address it was connected from, so the first address from the right that is not a
//! trusted proxy is the client. What a client wrote to the left of that is never read.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client behind `peer` (the connection's address), as the trusted proxies tell it.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    // Several header lines are one list, in order (RFC 9110 §5.3), read here from its end. Each
    // entry is decoded alone, so bytes a client sent cannot hide the entries to their right.
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','));
    let mut nearest = peer;
    for hop in hops {
        // A hop a trusted proxy wrote that is not an address ends what can be believed: the
        // nearest proxy stands for the client.
        let Some(ip) = std::str::from_utf8(hop)
            .ok()
            .and_then(|h| parse_hop(h.trim()))
        else {
            return nearest;
        };
        if !is_trusted(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// One `X-Forwarded-For` entry: an address, an IPv6 address in brackets, or either with a port
/// (an IPv6 address with a port needs its brackets, or the port reads as part of it).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports) as IPv4,
/// so `10.0.0.0/8` covers it.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &headers, &[]),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_connection_not_from_a_trusted_proxy_is_the_client() {
        let headers = forwarded(&["203.0.113.9"]);
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client_and_what_it_wrote_is_not_read() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client wrote "1.2.3.4" itself; the edge proxy appended the client's real address,
        // an inner proxy appended the edge's.
        let headers = forwarded(&["1.2.3.4, 203.0.113.9, 10.0.0.5"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
        // The same list over two header lines.
        let headers = forwarded(&["1.2.3.4", "203.0.113.9,10.0.0.5"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn garbage_from_a_proxy_or_no_header_leaves_the_nearest_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.9, not-an-address, 10.0.0.5"]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        // Only trusted hops: the farthest one.
        let headers = forwarded(&["10.9.9.9, 10.0.0.5"]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn ipv6_hops_with_brackets_or_ports_and_mapped_peers() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        let headers = forwarded(&["[2001:db8::7]:4711"]);
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), &headers, &trusted),
            ip("2001:db8::7")
        );
        let headers = forwarded(&["[2001:db8::8], fd00::1"]);
        assert_eq!(
            client_address(ip("fd00::2"), &headers, &trusted),
            ip("2001:db8::8")
        );
        let headers = forwarded(&["203.0.113.9:1234"]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn bytes_a_client_sent_do_not_hide_what_the_proxy_appended() {
        let trusted = nets(&["10.0.0.0/8"]);
        // What nginx forwards when the client sent a non-UTF-8 value: one line, the client's
        // bytes first.
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.9").unwrap(),
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
        // A proxy that adds its own line after the client's.
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap());
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
    }
}
