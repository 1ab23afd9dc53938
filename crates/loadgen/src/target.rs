//! The endpoint: an `http://` or `https://` URL, parsed once, and the
//! addresses its host resolves to.
//!
//! Any host is accepted, by name or as an IPv4 or IPv6 literal: what a
//! test may target is the operator's decision, not the tool's. (This
//! project's own suites only ever target loopback; that is a rule of its
//! machines, kept in its tests.)

use std::fmt;
use std::net::SocketAddr;

use http::Uri;

/// Why a URL cannot be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// The URL does not parse, or is not an absolute `http(s)://` URL.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's words.
        reason: String,
    },
}

/// Plain TCP or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`.
    Http,
    /// `https://`: TLS through rustls.
    Https,
}

impl Scheme {
    /// The port a URL without one uses.
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// The URL scheme's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// The parsed endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The whole URL.
    pub uri: Uri,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host as written (name or IP literal, without IPv6 brackets): what
    /// is resolved, and the TLS server name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Value of the `Host` header (`host[:port]` as written).
    pub authority: String,
    /// Path and query sent in the request line.
    pub path_and_query: String,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL.
    pub(crate) fn parse(url: &str) -> Result<Self, TargetError> {
        let bad = |reason: &str| TargetError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
            bad(&format!("{e}; expected e.g. https://host:8000/v1/infer"))
        })?;
        let scheme =
            match uri.scheme_str() {
                Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
                Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
                Some(other) => {
                    return Err(bad(&format!(
                        "scheme {other:?} is not supported; use http:// or https://"
                    )))
                }
                None => return Err(bad(
                    "expected an absolute http:// or https:// URL, e.g. https://host:8000/v1/infer",
                )),
            };
        let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not sent; pass them as a header (-H 'Authorization: ...')",
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("the URL has no host"));
        }
        // `http::Uri` accepts any text after the colon and then reports no
        // port, which would silently mean the scheme's default: read it here.
        let port = match written_port(authority.as_str()) {
            None => scheme.default_port(),
            Some(text) => parse_port(text).ok_or_else(|| {
                let what = if text.is_empty() {
                    "nothing follows the ':' after the host".to_owned()
                } else {
                    format!("{text:?} is not a TCP port")
                };
                bad(&format!(
                    "{what}; the port must be 1..=65535 (or left out, with the ':': 80 for http://, 443 for https://)"
                ))
            })?,
        };
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            authority: authority.as_str().to_owned(),
            scheme,
            uri,
            host,
            port,
            path_and_query,
        })
    }

    /// The same endpoint with another path (and query).
    pub(crate) fn with_path(&self, path_and_query: &str) -> Result<Self, TargetError> {
        Self::parse(&format!(
            "{}://{}{path_and_query}",
            self.scheme.name(),
            self.authority
        ))
    }

    /// Whether requests go over TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uri)
    }
}

/// The port text after the host (`[v6]:port` or `host:port`), `None` when
/// the authority has no `:port` part.
fn written_port(authority: &str) -> Option<&str> {
    let after_host = match authority.strip_prefix('[') {
        Some(rest) => &rest[rest.find(']')? + 1..],
        None => authority,
    };
    after_host.rfind(':').map(|at| &after_host[at + 1..])
}

/// A port number: ASCII digits only (no sign), 1..=65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&port| port > 0)
}

/// Resolves the target's host, IPv4 addresses first (servers most often
/// bind them; a connection tries each address in turn).
pub(crate) async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, TargetError> {
    let failed = |reason: String| TargetError::Resolve {
        host: target.host.clone(),
        reason,
    };
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(failed("no addresses".into()));
    }
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.dedup();
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_host_and_both_schemes_parse() {
        let t = Target::parse("http://127.0.0.1:8000/v1/infer").unwrap();
        assert_eq!(
            (t.scheme, t.port, t.path_and_query.as_str()),
            (Scheme::Http, 8000, "/v1/infer")
        );
        let t = Target::parse("https://gpu-host.example/v2/models/m/infer?x=1").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port, t.authority.as_str()),
            (Scheme::Https, "gpu-host.example", 443, "gpu-host.example")
        );
        assert_eq!(t.path_and_query, "/v2/models/m/infer?x=1");
        let t = Target::parse("http://10.1.2.3:8000/v1/infer").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.1.2.3", 8000));
        let t = Target::parse("https://[2001:db8::1]:8443/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("2001:db8::1", 8443, "[2001:db8::1]:8443")
        );
        assert_eq!(Target::parse("http://h").unwrap().path_and_query, "/");
        assert!(Target::parse("HTTPS://h/x").unwrap().is_tls());
    }

    #[test]
    fn bad_urls_say_what_is_allowed() {
        let reason = |url: &str| match Target::parse(url) {
            Err(TargetError::BadUrl { reason, .. }) => reason,
            other => panic!("{url}: {other:?}"),
        };
        assert!(reason("ftp://h/x").contains("use http:// or https://"));
        assert!(reason("127.0.0.1:80").contains("absolute"));
        assert!(reason("/v1/infer").contains("absolute"));
        assert!(reason("http://user:pw@h/x").contains("header"));
        assert!(reason("http://[::1/x").contains("expected e.g."));
    }

    #[test]
    fn a_port_outside_1_to_65535_is_refused_not_replaced_by_the_default() {
        let reason = |url: &str| match Target::parse(url) {
            Err(TargetError::BadUrl { reason, .. }) => reason,
            other => panic!("{url}: {other:?}"),
        };
        for url in [
            "http://127.0.0.1:99999/v1",
            "http://127.0.0.1:65536/v1",
            "http://127.0.0.1:0/v1",
            "http://127.0.0.1:abc/v1",
            "http://127.0.0.1:+80/v1",
            "https://[::1]:99999/v1",
            "http://localhost:-1/v1",
        ] {
            let why = reason(url);
            assert!(why.contains("is not a TCP port"), "{url}: {why}");
            assert!(why.contains("the port must be 1..=65535"), "{url}: {why}");
        }
        for url in ["http://127.0.0.1:/v1", "https://[::1]:/v1"] {
            let why = reason(url);
            assert!(why.contains("nothing follows the ':'"), "{url}: {why}");
            assert!(why.contains("the port must be 1..=65535"), "{url}: {why}");
        }
        // The edges, a leading zero, and no port at all.
        let port = |url: &str| Target::parse(url).unwrap().port;
        assert_eq!(port("http://127.0.0.1:1/v1"), 1);
        assert_eq!(port("http://127.0.0.1:65535/v1"), 65535);
        assert_eq!(port("http://127.0.0.1:08000/v1"), 8000);
        assert_eq!(port("https://[::1]:8443/v1"), 8443);
        assert_eq!(port("http://[::1]/v1"), 80);
        assert_eq!(port("https://h/v1"), 443);
    }

    #[tokio::test]
    async fn loopback_names_resolve() {
        let t = Target::parse("http://127.0.0.1:9/x").unwrap();
        assert_eq!(
            resolve(&t).await.unwrap(),
            vec!["127.0.0.1:9".parse::<SocketAddr>().unwrap()]
        );
        let t = Target::parse("http://[::1]:9/x").unwrap();
        assert_eq!(resolve(&t).await.unwrap()[0].port(), 9);
    }
}
