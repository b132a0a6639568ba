//! How a pool talks to its backends beyond their addresses: the protocol
//! (`protocol`), TLS (`[pool.X.tls]`), the PROXY header it sends and
//! sticky sessions, and the combinations of them that cannot work.

use super::super::defaults;
use super::super::raw::*;
use super::super::*;
use super::Errors;
use std::path::PathBuf;

pub(super) struct Upstream {
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
    pub sticky: Option<StickyConfig>,
    pub tls: Option<UpstreamTlsConfig>,
    pub protocol: UpstreamProtocol,
}

/// `p` is the pool's key path (`pool.NAME`).
pub(super) fn validate_upstream(e: &mut Errors, p: &str, r: &RawPool) -> Upstream {
    let send_proxy_protocol = match r
        .send_proxy_protocol
        .as_deref()
        .unwrap_or(defaults::text("pool.send_proxy_protocol"))
    {
        "off" => None,
        "v1" => Some(ProxyProtocolVersion::V1),
        "v2" => Some(ProxyProtocolVersion::V2),
        other => {
            e.push(
                format!("{p}.send_proxy_protocol"),
                format!("unknown value {other:?} (expected off | v1 | v2)"),
            );
            None
        }
    };
    let sticky = r.sticky.as_ref().and_then(|s| {
        let cookie = s.cookie.clone().unwrap_or_default();
        if cookie.is_empty() {
            return None;
        }
        // A cookie name is an RFC 6265 token.
        let token = cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            e.push(
                format!("{p}.sticky.cookie"),
                format!("{cookie:?} is not a valid cookie name"),
            );
        }
        let ttl = s
            .ttl
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| e.duration(&format!("{p}.sticky.ttl"), &Some(t.clone()), "1h"));
        Some(StickyConfig { cookie, ttl })
    });
    let tls = r.tls.as_ref().map(|t| {
        let q = format!("{p}.tls");
        let path = |v: &Option<String>| v.clone().filter(|s| !s.is_empty()).map(PathBuf::from);
        let server_name = t.server_name.clone().filter(|s| !s.is_empty());
        if let Some(n) = &server_name {
            if rustls_pki_types::ServerName::try_from(n.as_str()).is_err() {
                e.push(
                    format!("{q}.server_name"),
                    format!("{n:?} is not a DNS name or IP address"),
                );
            }
        }
        let client_cert = match (path(&t.cert), path(&t.key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                e.push(format!("{q}.key"), "a client cert needs its key");
                None
            }
            (None, Some(_)) => {
                e.push(format!("{q}.cert"), "a client key needs its cert");
                None
            }
        };
        UpstreamTlsConfig {
            server_name,
            ca: path(&t.ca),
            verify: t.verify.unwrap_or(true),
            client_cert,
        }
    });
    let protocol = match r
        .protocol
        .as_deref()
        .unwrap_or(defaults::text("pool.protocol"))
    {
        "http1" => UpstreamProtocol::Http1,
        "h2" => UpstreamProtocol::H2,
        "h2c" => UpstreamProtocol::H2c,
        other => {
            e.push(
                format!("{p}.protocol"),
                format!("unknown protocol {other:?} (expected http1 | h2 | h2c)"),
            );
            UpstreamProtocol::Http1
        }
    };
    match (protocol, tls.is_some()) {
        (UpstreamProtocol::H2, false) => e.push(
            format!("{p}.protocol"),
            "h2 is HTTP/2 over TLS and needs a [pool.NAME.tls] table; use h2c for cleartext HTTP/2",
        ),
        (UpstreamProtocol::H2c, true) => e.push(
            format!("{p}.protocol"),
            "h2c is cleartext HTTP/2; with [pool.NAME.tls] use h2",
        ),
        _ => {}
    }
    if protocol.is_h2() && send_proxy_protocol.is_some() {
        // One HTTP/2 connection carries many clients' requests: a
        // PROXY header could name only one of them.
        e.push(
            format!("{p}.send_proxy_protocol"),
            "cannot be used with protocol h2 or h2c: a multiplexed connection carries many clients",
        );
    }
    Upstream {
        send_proxy_protocol,
        sticky,
        tls,
        protocol,
    }
}
