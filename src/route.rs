//! Route matching: exact host, then wildcard host, then no host; within
//! each, the longest path prefix; ties go to the earlier route in the file.
//!
//! Prefixes match whole segments ("/v1" matches "/v1" and "/v1/x", never
//! "/v10"), as the Kubernetes Gateway API's PathPrefix. Exact hosts are a
//! hash lookup and wildcard hosts are looked up by each suffix of the request
//! host, so a match costs O(labels + routes of that host), not O(routes).

use crate::config::HostMatch;
use std::borrow::Cow;
use std::collections::HashMap;

struct Entry<T> {
    prefix: String,
    /// Method, header and query conditions: among routes otherwise tied,
    /// more conditions win.
    conditions: usize,
    order: usize,
    value: T,
}

pub struct Router<T> {
    exact: HashMap<String, Vec<Entry<T>>>,
    /// Keyed by suffix with its leading dot: `*.example.com` -> `.example.com`.
    wildcard: HashMap<String, Vec<Entry<T>>>,
    any: Vec<Entry<T>>,
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

/// The best entry of one list: lists are kept sorted by (longest prefix,
/// most conditions, file order), so the first match is the best.
fn first_match<'a, T>(
    list: &'a [Entry<T>],
    path: &str,
    matches: &dyn Fn(&T) -> bool,
) -> Option<&'a Entry<T>> {
    list.iter()
        .find(|e| prefix_matches(&e.prefix, path) && matches(&e.value))
}

impl<T> Router<T> {
    /// Builds a router from routes in file order: (host, path prefix,
    /// number of other conditions, value).
    pub fn new(
        routes: impl IntoIterator<Item = (Option<HostMatch>, String, usize, T)>,
    ) -> Router<T> {
        let mut r = Router {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: Vec::new(),
        };
        for (order, (host, prefix, conditions, value)) in routes.into_iter().enumerate() {
            let e = Entry {
                prefix,
                conditions,
                order,
                value,
            };
            match host {
                Some(HostMatch::Exact(h)) => r.exact.entry(h).or_default().push(e),
                Some(HostMatch::Wildcard(s)) => r.wildcard.entry(s).or_default().push(e),
                None => r.any.push(e),
            }
        }
        let sort = |v: &mut Vec<Entry<T>>| {
            v.sort_by(|a, b| {
                b.prefix
                    .len()
                    .cmp(&a.prefix.len())
                    .then(b.conditions.cmp(&a.conditions))
                    .then(a.order.cmp(&b.order))
            })
        };
        r.exact.values_mut().for_each(sort);
        r.wildcard.values_mut().for_each(sort);
        sort(&mut r.any);
        r
    }

    /// Finds the route for a request. `host` may carry a port and any case.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&T> {
        self.find_matching(host, path, &|_| true)
    }

    /// Finds the best route whose own conditions (`matches`) hold too.
    pub fn find_matching(
        &self,
        host: Option<&str>,
        path: &str,
        matches: &dyn Fn(&T) -> bool,
    ) -> Option<&T> {
        if let Some(host) = host.map(normalize_host) {
            if let Some(e) = self
                .exact
                .get(host.as_ref())
                .and_then(|l| first_match(l, path, matches))
            {
                return Some(&e.value);
            }
            if !self.wildcard.is_empty() {
                let mut best: Option<&Entry<T>> = None;
                // Every proper suffix starting at a dot: a.b.example.com ->
                // .b.example.com, .example.com, .com
                for (i, _) in host.match_indices('.') {
                    if let Some(e) = self
                        .wildcard
                        .get(&host[i..])
                        .and_then(|l| first_match(l, path, matches))
                    {
                        let better = match best {
                            None => true,
                            Some(b) => {
                                (e.prefix.len(), e.conditions, std::cmp::Reverse(e.order))
                                    > (b.prefix.len(), b.conditions, std::cmp::Reverse(b.order))
                            }
                        };
                        if better {
                            best = Some(e);
                        }
                    }
                }
                if let Some(e) = best {
                    return Some(&e.value);
                }
            }
        }
        first_match(&self.any, path, matches).map(|e| &e.value)
    }
}

/// Lower-cases a host and strips any `:port` (IPv6 literals keep their brackets).
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    };
    let without_dot = without_port.strip_suffix('.').unwrap_or(without_port);
    if without_dot.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(without_dot.to_ascii_lowercase())
    } else {
        Cow::Borrowed(without_dot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Option<HostMatch> {
        Some(if let Some(rest) = s.strip_prefix('*') {
            HostMatch::Wildcard(rest.into())
        } else {
            HostMatch::Exact(s.into())
        })
    }

    fn router() -> Router<&'static str> {
        Router::new(vec![
            (None, "/".into(), 0, "fallback"),
            (None, "/v1".into(), 0, "any-v1"),
            (h("*.example.com"), "/".into(), 0, "wild"),
            (h("*.example.com"), "/v1".into(), 0, "wild-v1"),
            (h("api.example.com"), "/v1".into(), 0, "api-v1"),
            (h("api.example.com"), "/v1".into(), 0, "api-v1-later"),
            (h("api.example.com"), "/v1/admin".into(), 0, "api-admin"),
        ])
    }

    #[test]
    fn exact_then_wildcard_then_none() {
        let r = router();
        assert_eq!(r.find(Some("api.example.com"), "/v1/x"), Some(&"api-v1"));
        assert_eq!(r.find(Some("api.example.com"), "/other"), Some(&"wild"));
        assert_eq!(r.find(Some("a.b.example.com"), "/v1"), Some(&"wild-v1"));
        assert_eq!(r.find(Some("example.com"), "/v1"), Some(&"any-v1"));
        assert_eq!(r.find(None, "/x"), Some(&"fallback"));
    }

    #[test]
    fn longest_prefix_then_file_order() {
        let r = router();
        assert_eq!(
            r.find(Some("api.example.com"), "/v1/admin/users"),
            Some(&"api-admin")
        );
        assert_eq!(r.find(Some("api.example.com"), "/v1"), Some(&"api-v1"));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let r = router();
        assert_eq!(r.find(Some("other.org"), "/v10"), Some(&"fallback"));
        assert_eq!(r.find(Some("other.org"), "/v1/"), Some(&"any-v1"));
        let strict: Router<&str> = Router::new(vec![(None, "/v1".into(), 0, "v1")]);
        assert_eq!(strict.find(None, "/v10"), None);
        assert_eq!(strict.find(None, "/"), None);
    }

    #[test]
    fn host_ignores_case_and_port() {
        let r = router();
        assert_eq!(r.find(Some("API.Example.COM:8443"), "/v1"), Some(&"api-v1"));
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("Example.com."), "example.com");
    }

    #[test]
    fn more_conditions_win_among_ties_and_conditions_must_hold() {
        let r: Router<(&str, bool)> = Router::new(vec![
            (None, "/api".into(), 0, ("plain", true)),
            (None, "/api".into(), 2, ("canary", true)),
            (None, "/api".into(), 1, ("post-only", false)),
        ]);
        let holds = |v: &(&str, bool)| v.1;
        assert_eq!(
            r.find_matching(None, "/api/x", &holds).map(|v| v.0),
            Some("canary")
        );
        let never_canary = |v: &(&str, bool)| v.1 && v.0 != "canary";
        assert_eq!(
            r.find_matching(None, "/api/x", &never_canary).map(|v| v.0),
            Some("plain")
        );
    }
}
