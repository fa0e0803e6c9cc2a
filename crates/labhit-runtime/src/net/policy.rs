//! The check of one outbound request, before anything is connected: the scheme, the
//! normalised host and the port against the allow-list, then the resolution of a host name
//! and the server-side request forgery guard on every address it resolves to.
//!
//! The guard: an address that is loopback, private, link-local or otherwise special (see
//! [`super::addr`]) is reached only when an entry that admits the request names that very
//! address as an IP literal (`127.0.0.1:8080`). A host name entry never reaches one, even
//! when the name resolves to it (`localhost` listed is still refused). The addresses that
//! pass are the only ones [`super::send`] connects to: nothing is resolved twice, so a name
//! that resolves differently a moment later (DNS rebinding) changes nothing.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use labhit_protocol::manifest::network::{AllowList, Host, HostError, normalise_host};
use wasmtime_wasi_http::Error;

use super::addr::{Special, classify};

/// Why a request was refused. The [`fmt::Display`] form is the log line's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The scheme is neither `http` nor `https`.
    Scheme(String),
    /// The URL has no host, or a host that does not normalise.
    Host(String, HostError),
    /// No allow-list entry admits this host and port.
    NotListed {
        /// The normalised host.
        host: Host,
        /// The port of the request.
        port: u16,
    },
    /// The host resolves only to special addresses, which a host name never reaches.
    Special {
        /// The normalised host.
        host: Host,
        /// One refused address, with the port of the request.
        addr: SocketAddr,
        /// Its class.
        why: Special,
    },
    /// The name does not resolve.
    Dns {
        /// The normalised host.
        host: Host,
        /// The resolver's message.
        message: String,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(scheme) => write!(
                f,
                "scheme `{scheme}` is not supported: this host sends `http` and `https` only"
            ),
            Self::Host(raw, err) => write!(f, "host `{raw}` is refused: {err}"),
            Self::NotListed { host, port } => write!(
                f,
                "`{host}:{port}` is not in the manifest's `capabilities.network` (rule: allow-list); add `{host}:{port}` to it to allow it"
            ),
            Self::Special { host, addr, why } => write!(
                f,
                "`{host}` resolves to {}, a {why} address (rule: request forgery guard); a host name entry never reaches it, only an IP literal entry naming that address (`{addr}`) does",
                addr.ip()
            ),
            Self::Dns { host, message } => write!(f, "`{host}` does not resolve: {message}"),
        }
    }
}

impl Denial {
    /// The `wasi:http` error the guest sees.
    pub fn error(&self) -> Error {
        match self {
            Self::Scheme(_) | Self::NotListed { .. } => Error::HttpRequestDenied,
            Self::Host(..) => Error::HttpRequestUriInvalid,
            Self::Special { .. } => Error::DestinationIpProhibited,
            Self::Dns { message, .. } => Error::DnsError {
                rcode: Some(message.clone()),
                info_code: None,
            },
        }
    }
}

/// A request that passed the allow-list, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The normalised host.
    pub host: Host,
    /// The port (80 for `http`, 443 for `https` when the URL names none).
    pub port: u16,
    /// Whether the request goes over TLS (`https`).
    pub tls: bool,
    /// The addresses an admitting entry names literally.
    literal: Vec<IpAddr>,
}

/// Checks the scheme, host and port of a request URI against `list`.
pub fn admit(list: &AllowList, uri: &http::Uri) -> Result<Admitted, Denial> {
    let (tls, default_port) = match uri.scheme_str().unwrap_or("") {
        "http" => (false, 80),
        "https" => (true, 443),
        other => return Err(Denial::Scheme(other.to_owned())),
    };
    let raw = uri.host().unwrap_or("");
    let host = normalise_host(raw).map_err(|e| Denial::Host(raw.to_owned(), e))?;
    let port = uri.port_u16().unwrap_or(default_port);
    let literal: Vec<IpAddr> = list
        .admitting(&host, port)
        .filter_map(|entry| entry.literal_ip())
        .collect();
    if list.admitting(&host, port).next().is_none() {
        return Err(Denial::NotListed { host, port });
    }
    Ok(Admitted {
        host,
        port,
        tls,
        literal,
    })
}

impl Admitted {
    /// The addresses to connect to: the host's own address, or what its name resolves to,
    /// with special addresses kept only when an admitting entry names them literally.
    pub async fn resolve(&self, timeout: Duration) -> Result<Vec<SocketAddr>, Denial> {
        let candidates: Vec<SocketAddr> = match &self.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, self.port)],
            Host::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), self.port));
                let dns = |message: String| Denial::Dns {
                    host: self.host.clone(),
                    message,
                };
                match tokio::time::timeout(timeout, lookup).await {
                    Err(_) => return Err(dns("the lookup timed out".into())),
                    Ok(Err(err)) => return Err(dns(err.to_string())),
                    Ok(Ok(addrs)) => addrs.collect(),
                }
            }
        };
        self.guard(candidates)
    }

    /// The server-side request forgery guard over resolved addresses.
    pub fn guard(&self, candidates: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Denial> {
        let mut refused = None;
        let mut allowed = Vec::new();
        for addr in candidates {
            let ip = addr.ip().to_canonical();
            match classify(ip) {
                Some(why) if !self.literal.contains(&ip) => {
                    refused.get_or_insert((SocketAddr::new(ip, addr.port()), why));
                }
                _ => allowed.push(SocketAddr::new(ip, addr.port())),
            }
        }
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some((addr, why))) => Err(Denial::Special {
                host: self.host.clone(),
                addr,
                why,
            }),
            (true, None) => Err(Denial::Dns {
                host: self.host.clone(),
                message: "no address".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(entries: &[&str], url: &str) -> Result<Admitted, Denial> {
        let list = AllowList::parse(entries).expect("entries");
        admit(&list, &url.parse().expect("uri"))
    }

    #[test]
    fn admits_by_scheme_host_and_port() {
        assert!(check(&["a.example"], "http://A.Example./x").is_ok());
        assert!(check(&["a.example:8080"], "http://a.example:8080/").is_ok());
        let https = check(&["a.example"], "https://a.example/").expect("https on 443");
        assert!(https.tls && https.port == 443);
        assert!(
            !check(&["a.example"], "http://a.example/")
                .expect("http")
                .tls
        );
        assert!(matches!(
            check(&["a.example:80"], "https://a.example/"),
            Err(Denial::NotListed { port: 443, .. })
        ));
        assert!(matches!(
            check(&["a.example"], "ftp://a.example/"),
            Err(Denial::Scheme(s)) if s == "ftp"
        ));
        assert!(matches!(
            check(&["a.example"], "http://a.example:8080/"),
            Err(Denial::NotListed { port: 8080, .. })
        ));
        assert!(matches!(
            check(&["a.example"], "http://b.example/"),
            Err(Denial::NotListed { .. })
        ));
        assert!(matches!(
            check(&["a.example"], "http://127.1/"),
            Err(Denial::Host(_, HostError::AmbiguousIpv4(_)))
        ));
    }

    #[test]
    fn guard_keeps_special_addresses_only_for_literal_entries() {
        let name = check(&["localhost:9"], "http://localhost:9/").expect("admitted");
        let loopback: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().expect("addr");
        let public: SocketAddr = "93.184.216.34:9".parse().expect("addr");
        assert!(matches!(
            name.guard(vec![loopback, mapped]),
            Err(Denial::Special {
                why: Special::Loopback,
                ..
            })
        ));
        assert_eq!(name.guard(vec![loopback, public]), Ok(vec![public]));
        let literal = check(&["127.0.0.1:9"], "http://127.0.0.1:9/").expect("admitted");
        assert_eq!(literal.guard(vec![mapped]), Ok(vec![loopback]));
        let other = check(&["127.0.0.1:9", "10.0.0.1:9"], "http://10.0.0.1:9/").expect("admitted");
        assert!(matches!(
            other.guard(vec![loopback]),
            Err(Denial::Special { .. })
        ));
    }
}
