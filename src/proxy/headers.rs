//! Header rules of the spec: X-Forwarded-*, X-Request-Id, Host, and the
//! hop-by-hop headers that never cross a proxy (RFC 9110 section 7.6.1).

use super::error::ProxyError;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::Version;
use ipnet::IpNet;
use std::io::Write;
use std::net::IpAddr;

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The host the client asked for, checked: one Host header at most; an
/// absolute-form (or HTTP/2 `:authority`) target wins and must agree with
/// Host when both are present; HTTP/1.1 requires one of them.
pub fn request_host(parts: &Parts) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    match (parts.uri.authority(), host) {
        (Some(auth), Some(h)) => {
            if !auth.as_str().eq_ignore_ascii_case(h.to_str().unwrap_or("")) {
                return Err(ProxyError::BadRequest(
                    "request target's authority disagrees with Host",
                ));
            }
            Ok(Some(h.clone()))
        }
        (Some(auth), None) => HeaderValue::from_str(auth.as_str())
            .map(Some)
            .map_err(|_| ProxyError::BadRequest("invalid authority")),
        (None, Some(h)) => Ok(Some(h.clone())),
        (None, None) if parts.version == Version::HTTP_10 || parts.version == Version::HTTP_09 => {
            Ok(None)
        }
        (None, None) => Err(ProxyError::BadRequest("missing Host header")),
    }
}

/// Removes hop-by-hop headers, including every header named in Connection.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the few names present is
    // cheaper than hashing seven names to find each absent (the profile
    // showed header-map hashing at 3.5% of a small request's CPU).
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the request path knows about the client for forwarding headers.
pub struct Forwarded<'a> {
    pub peer: IpAddr,
    pub https: bool,
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
}

/// Rewrites a request's headers for the backend.
pub fn rewrite_request(headers: &mut HeaderMap, fwd: &Forwarded<'_>) {
    // `TE: trailers` says the client takes trailers (gRPC needs it); it is
    // the one TE value passed on, as Envoy does. Other codings are hop-local.
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    remove_hop_by_hop(headers);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // Append the peer to any X-Forwarded-For chain (several headers count as
    // one list, RFC 9110 section 5.3).
    // The peer's address is formatted on the stack: the header value is
    // then the request's only allocation for it.
    let mut buf = [0u8; 64];
    let peer = {
        let mut w = &mut buf[..];
        let _ = write!(w, "{}", fwd.peer);
        let n = 64 - w.len();
        std::str::from_utf8(&buf[..n]).unwrap_or("")
    };
    let xff = {
        let mut chain = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        if chain.peek().is_none() {
            HeaderValue::from_str(peer)
        } else {
            let mut joined = chain.collect::<Vec<_>>().join(", ");
            joined.push_str(", ");
            joined.push_str(peer);
            HeaderValue::from_str(&joined)
        }
    };
    if let Ok(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if fwd.https { "https" } else { "http" }),
    );
    match fwd.host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
            headers.insert(header::HOST, h.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    headers.insert(X_REQUEST_ID.clone(), fwd.request_id.clone());
}

/// Rewrites a backend's response headers for the client.
pub fn rewrite_response(headers: &mut HeaderMap, request_id: &HeaderValue) {
    remove_hop_by_hop(headers);
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// The client's address: the peer, unless the peer is a trusted proxy, in
/// which case X-Forwarded-For is walked from the right past trusted hops
/// (the rightmost untrusted address is the first one a trusted hop saw).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let mut last = peer;
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => last = ip,
            Ok(ip) => return ip,
            Err(_) => return last,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::request::Builder) -> Parts {
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_rules() {
        let p = parts(http::Request::get("/x").header("host", "a.com"));
        assert_eq!(request_host(&p).unwrap().unwrap(), "a.com");
        let p = parts(http::Request::get("http://a.com/x").header("host", "A.com"));
        assert_eq!(request_host(&p).unwrap().unwrap(), "A.com");
        let p = parts(http::Request::get("http://b.com/x").header("host", "a.com"));
        assert_eq!(request_host(&p).unwrap_err().status(), 400);
        let p = parts(
            http::Request::get("/x")
                .header("host", "a.com")
                .header("host", "b.com"),
        );
        assert!(request_host(&p).is_err());
        let p = parts(http::Request::get("/x"));
        assert!(request_host(&p).is_err());
        let p = parts(http::Request::get("/x").version(Version::HTTP_10));
        assert_eq!(request_host(&p).unwrap(), None);
    }

    #[test]
    fn hop_by_hop_and_forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil"));
        let host = HeaderValue::from_static("a.com");
        let id = HeaderValue::from_static("id1");
        rewrite_request(
            &mut h,
            &Forwarded {
                peer: "9.9.9.9".parse().unwrap(),
                https: false,
                host: Some(&host),
                request_id: &id,
            },
        );
        for gone in ["connection", "x-secret", "keep-alive"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 9.9.9.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.com");
        assert_eq!(h["x-request-id"], "id1");
    }

    #[test]
    fn each_hop_by_hop_header_goes_alone_and_others_stay() {
        for name in HOP_BY_HOP.iter() {
            let mut h = HeaderMap::new();
            h.insert("x-kept", HeaderValue::from_static("1"));
            h.insert(name.clone(), HeaderValue::from_static("x"));
            remove_hop_by_hop(&mut h);
            assert!(!h.contains_key(name), "{name}");
            assert_eq!(h["x-kept"], "1");
        }
        let mut h = HeaderMap::new();
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn longest_ipv6_peer_is_appended_whole() {
        let peer: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        let id = HeaderValue::from_static("id1");
        let fwd = Forwarded {
            peer,
            https: true,
            host: None,
            request_id: &id,
        };
        let mut h = HeaderMap::new();
        rewrite_request(&mut h, &fwd);
        assert_eq!(h["x-forwarded-for"], peer.to_string().as_str());
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        rewrite_request(&mut h, &fwd);
        assert_eq!(h["x-forwarded-for"], format!("1.1.1.1, {peer}").as_str());
    }

    #[test]
    fn client_ip_only_trusts_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 7.7.7.7, 10.0.0.2"),
        );
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "7.7.7.7".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_ip(outsider, &h, &trusted), outsider);
        assert_eq!(client_ip(peer, &h, &[]), peer);
    }
}
