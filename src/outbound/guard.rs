//! Which addresses a notification may reach. A platform registers a URL; Bursar, inside the
//! platform's network, must not become a way into it: loopback, private (RFC 1918, RFC 4193),
//! link-local (and so cloud metadata at 169.254.169.254), CGNAT, unspecified, multicast and
//! broadcast addresses are refused, at registration and again at every connection, after DNS
//! (a name whose answer changes cannot slip past), unless the operator allows private targets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::Url;

/// Why a target was refused, in the platform engineer's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("is not an absolute URL")]
    NotAUrl,
    #[error("must use https (plain http only with `bursar serve --dev`)")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("resolves to {0}, a loopback, private, link-local or otherwise internal address (set BURSAR_ALLOW_PRIVATE_NOTIFICATION_TARGETS=true to allow it)")]
    Internal(IpAddr),
    #[error("does not resolve: {0}")]
    Unresolved(String),
}

/// Whether `ip` is one a notification must not reach.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 100.64.0.0/10: carrier-grade NAT (and some clouds' metadata, 100.100.100.200).
        || (a == 100 && (64..128).contains(&b))
        // 0.0.0.0/8 and 192.0.0.0/24 (IETF protocol assignments).
        || a == 0
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // 198.18.0.0/15: benchmarking; 240.0.0.0/4: reserved.
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local (RFC 4193), fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // 64:ff9b::/96 NAT64 carries IPv4 addresses that are checked as such elsewhere; the
        // well-known prefix to an internal v4 address is internal too.
        || (first == 0x64 && ip.segments()[1] == 0xff9b && {
            let [.., c, d] = ip.segments();
            internal_v4(Ipv4Addr::new((c >> 8) as u8, c as u8, (d >> 8) as u8, d as u8))
        })
}

/// The rules a target is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub allow_http: bool,
    pub allow_private: bool,
}

/// Checks a URL at registration: its form, and every address its host resolves to now.
pub async fn check(raw: &str, policy: Policy) -> Result<Url, Refused> {
    let url = Url::parse(raw).map_err(|_| Refused::NotAUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(Refused::NotHttps),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Credentials);
    }
    let host = url.host_str().ok_or(Refused::NotAUrl)?.to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    for addr in resolve(&host, port).await? {
        if !policy.allow_private && is_internal(addr.ip()) {
            return Err(Refused::Internal(addr.ip()));
        }
    }
    Ok(url)
}

/// The host's addresses (an IP literal is its own).
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| Refused::Unresolved(e.to_string()))?
        .collect();
    if found.is_empty() {
        return Err(Refused::Unresolved("no address".into()));
    }
    Ok(found)
}

/// The connection-time check, as reqwest's resolver: a name resolves only to addresses the
/// policy allows, or the connection fails. (reqwest does not resolve IP literals: the client
/// checks those itself before sending.)
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = resolve(&host, 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            match allowed.first() {
                Some(_) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                None => Err(Box::new(Refused::Unresolved(format!(
                    "{host} resolves only to internal addresses"
                )))
                    as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

impl GuardedResolver {
    pub fn shared(allow_private: bool) -> Arc<Self> {
        Arc::new(Self { allow_private })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_known() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn registration_refuses_internal_and_plain_targets() {
        let strict = Policy {
            allow_http: false,
            allow_private: false,
        };
        assert_eq!(
            check("http://example.com/hook", strict).await,
            Err(Refused::NotHttps)
        );
        assert!(matches!(
            check("https://127.0.0.1/hook", strict).await,
            Err(Refused::Internal(_))
        ));
        assert!(matches!(
            check("https://[::1]:8443/hook", strict).await,
            Err(Refused::Internal(_))
        ));
        // A name that resolves to loopback.
        assert!(matches!(
            check("https://localhost/hook", strict).await,
            Err(Refused::Internal(_))
        ));
        assert_eq!(
            check("https://user:pw@example.com/", strict).await,
            Err(Refused::Credentials)
        );
        let dev = Policy {
            allow_http: true,
            allow_private: true,
        };
        assert!(check("http://127.0.0.1:9/hook", dev).await.is_ok());
    }
}
