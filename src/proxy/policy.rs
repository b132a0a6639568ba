//! A route's own conditions and rules, as pure functions of the request:
//! whether its method/header/query conditions hold, whether the client's
//! address may use it, where a redirect sends the client, and the path the
//! backend gets. No I/O; the front ends apply what these decide.

use super::error::ProxyError;
use super::Head;
use crate::config::{RedirectConfig, RouteConfig};
use std::borrow::Cow;
use std::net::IpAddr;

/// Whether the route's `methods`, `headers` and `query` conditions all hold
/// (the Gateway API's HTTPRouteMatch: exact values, every one needed).
pub fn conditions_hold(route: &RouteConfig, head: &dyn Head, query: Option<&str>) -> bool {
    if !route.methods.is_empty() && !route.methods.iter().any(|m| m.as_bytes() == head.method()) {
        return false;
    }
    if !route.headers.iter().all(|(n, v)| head.has(n, v)) {
        return false;
    }
    route.query.iter().all(|(name, value)| {
        query.is_some_and(|q| {
            q.split('&').any(|pair| {
                let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                decode(n) == name.as_str() && decode(v) == value.as_str()
            })
        })
    })
}

/// Percent-decodes a query component (a `%` not followed by two hex
/// digits stays as it is; `+` is not a space: URLs are not forms).
fn decode(s: &str) -> Cow<'_, str> {
    percent_decode(s, false).unwrap_or(Cow::Borrowed(s))
}

/// Percent-decodes `s`. `strict`: a malformed escape, or bytes that are not
/// UTF-8, make it None (the admin API refuses such a path); otherwise they
/// are kept as they are (lossily for bytes).
pub fn percent_decode(s: &str, strict: bool) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'%', _, _) if strict => return None,
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(text) => Some(Cow::Owned(text)),
        Err(_) if strict => None,
        Err(e) => Some(Cow::Owned(
            String::from_utf8_lossy(e.as_bytes()).into_owned(),
        )),
    }
}

/// `allow` and `deny`, on the client's address after `trusted_proxies`
/// (an IPv4-mapped IPv6 address counts as its IPv4 one).
pub fn admit(route: &RouteConfig, ip: IpAddr) -> Result<(), ProxyError> {
    let ip = ip.to_canonical();
    let allowed = route.allow.is_empty() || route.allow.iter().any(|n| n.contains(&ip));
    if !allowed || route.deny.iter().any(|n| n.contains(&ip)) {
        return Err(ProxyError::Forbidden);
    }
    Ok(())
}

/// The redirect answer for a request: parts the rule does not give are kept
/// from the request, the query included. As in the Gateway API, a rule with
/// a scheme and no port sends the client to the scheme's well-known port;
/// a default port is left out of Location.
pub fn redirect(
    rule: &RedirectConfig,
    route: &RouteConfig,
    tls: bool,
    host: Option<&str>,
    path: &str,
    query: Option<&str>,
) -> ProxyError {
    let request_scheme = if tls { "https" } else { "http" };
    let scheme = rule.scheme.as_deref().unwrap_or(request_scheme);
    let (request_host, request_port) = host.map(split_host).unwrap_or(("", None));
    let Some(host) = rule
        .host
        .as_deref()
        .or(Some(request_host).filter(|h| !h.is_empty()))
    else {
        return ProxyError::Refused {
            status: 400,
            reason: "a redirect needs the request's Host",
        };
    };
    let port = match (rule.port, &rule.scheme) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => request_port,
    };
    let default = match scheme {
        "https" => 443,
        _ => 80,
    };
    let path: Cow<'_, str> = match (&rule.path, &rule.prefix) {
        (Some(p), _) => Cow::Borrowed(p),
        (None, Some(prefix)) => Cow::Owned(replace_prefix(&route.path_prefix, prefix, path)),
        (None, None) => Cow::Borrowed(path),
    };
    let mut location = format!("{scheme}://{host}");
    if let Some(p) = port.filter(|p| *p != default) {
        location.push_str(&format!(":{p}"));
    }
    location.push_str(&path);
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    ProxyError::Redirect {
        code: rule.code,
        location: location.into(),
    }
}

/// A Host value's host (IPv6 literals keep their brackets) and port.
fn split_host(h: &str) -> (&str, Option<u16>) {
    let cut = if h.starts_with('[') {
        h.find(']').map(|e| e + 1)
    } else {
        h.rfind(':')
    };
    match cut {
        Some(i) if h[i..].starts_with(':') => (&h[..i], h[i + 1..].parse().ok()),
        _ => (h, None),
    }
}

/// `path` with the route's `prefix` replaced by `with` ("/api/x" with
/// "/v2" -> "/v2/x"; with "/" -> "/x").
fn replace_prefix(prefix: &str, with: &str, path: &str) -> String {
    let rest = path.get(prefix.trim_end_matches('/').len()..).unwrap_or("");
    let mut out = String::with_capacity(with.len() + rest.len());
    out.push_str(with.trim_end_matches('/'));
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The path and query the backend gets when the route strips or rewrites
/// its prefix; None when it is forwarded as it came.
pub fn rewrite_path(route: &RouteConfig, path: &str, query: Option<&str>) -> Option<String> {
    let with = match (&route.rewrite_prefix, route.strip_prefix) {
        (Some(p), _) => p.as_str(),
        (None, true) => "",
        (None, false) => return None,
    };
    let mut out = replace_prefix(&route.path_prefix, with, path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn route(extra: &str) -> RouteConfig {
        let c = Config::parse(&format!(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
             [[route]]\nname = \"r\"\npath_prefix = \"/api\"\n{extra}\n\
             [pool.p]\nbackends = [{{ addr = \"127.0.0.1:1\" }}]\n"
        ))
        .unwrap();
        c.routes[0].clone()
    }

    #[test]
    fn prefixes_are_stripped_and_rewritten_by_whole_segments() {
        let strip = route("pool = \"p\"\nstrip_prefix = true");
        assert_eq!(
            rewrite_path(&strip, "/api/x", Some("a=1")).unwrap(),
            "/x?a=1"
        );
        assert_eq!(rewrite_path(&strip, "/api", None).unwrap(), "/");
        let rw = route("pool = \"p\"\nrewrite_prefix = \"/v2\"");
        assert_eq!(rewrite_path(&rw, "/api/x", None).unwrap(), "/v2/x");
        assert_eq!(rewrite_path(&rw, "/api", None).unwrap(), "/v2");
        let plain = route("pool = \"p\"");
        assert!(rewrite_path(&plain, "/api/x", None).is_none());
    }

    #[test]
    fn redirects_keep_what_the_rule_does_not_give() {
        let r = route("redirect = { scheme = \"https\", code = 308 }");
        let RouteTarget::Redirect(rule) = &r.target else {
            panic!("a redirect route");
        };
        let loc = |tls, host, path, q| match redirect(rule, &r, tls, host, path, q) {
            ProxyError::Redirect { code, location } => (code, location.to_string()),
            e => panic!("{e}"),
        };
        // The scheme's well-known port replaces the request's.
        assert_eq!(
            loc(false, Some("Example.com:8080"), "/api/x", Some("q=1")),
            (308, "https://Example.com/api/x?q=1".to_string())
        );
        let r2 = route("redirect = { host = \"new.test\", port = 8443, prefix = \"/v2\" }");
        let RouteTarget::Redirect(rule2) = &r2.target else {
            panic!("a redirect route");
        };
        match redirect(rule2, &r2, true, Some("[::1]:9000"), "/api/x", None) {
            ProxyError::Redirect { code, location } => {
                assert_eq!((code, &*location), (302, "https://new.test:8443/v2/x"))
            }
            e => panic!("{e}"),
        }
        // No scheme, no port: the request's port is kept.
        let r3 = route("redirect = { path = \"/moved\" }");
        let RouteTarget::Redirect(rule3) = &r3.target else {
            panic!("a redirect route");
        };
        match redirect(
            rule3,
            &r3,
            false,
            Some("a.test:8080"),
            "/api/x",
            Some("k=v"),
        ) {
            ProxyError::Redirect { location, .. } => {
                assert_eq!(&*location, "http://a.test:8080/moved?k=v")
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn query_values_are_compared_decoded() {
        assert_eq!(decode("a%20b"), "a b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("a+b"), "a+b");
    }

    use crate::config::RouteTarget;
}
