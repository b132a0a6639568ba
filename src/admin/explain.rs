//! `GET /api/v1/explain`: how a request with the given properties would be
//! routed and balanced now, sending nothing to any backend.
//!
//! Every answer comes from the code the request path runs: the listener's
//! router with the same condition check (`proxy::policy`), the route's
//! split, each backend's admission reasons (`Pool::reasons`), the hash key
//! (`proxy::hash_key`) and the strategy itself (`Pool::would_pick`). Nothing
//! here decides on its own.

use crate::config::Strategy;
use crate::proxy::{self, policy, Head};
use crate::snapshot::{Forward, Snapshot};
use serde_json::{json, Value};
use std::net::IpAddr;
use tokio::time::Instant;

/// The request `explain` is asked about.
#[derive(Debug, Default)]
pub struct Question {
    pub listener: Option<String>,
    pub host: Option<String>,
    pub path: String,
    pub method: String,
    pub client: Option<IpAddr>,
    /// (lower-case name, value)
    pub headers: Vec<(String, String)>,
}

impl Question {
    /// From the query string (`host`, `path`, `listener`, `method`,
    /// `client`, repeatable `header=NAME:VALUE`).
    pub fn parse(query: &str) -> Result<Question, String> {
        let mut q = Question {
            path: "/".into(),
            method: "GET".into(),
            ..Default::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = super::percent_decode(&v.replace('+', " "))
                .ok_or_else(|| format!("{k}: bad percent-encoding"))?;
            match k {
                "listener" => q.listener = Some(v),
                "host" => q.host = Some(v),
                "path" if v.starts_with('/') => q.path = v,
                "path" => return Err(format!("path: {v:?} does not start with /")),
                "method" => q.method = v.to_ascii_uppercase(),
                "client" => {
                    q.client = Some(
                        v.parse()
                            .map_err(|_| format!("client: {v:?} is not an IP address"))?,
                    )
                }
                "header" => {
                    let (name, value) = v
                        .split_once(':')
                        .ok_or_else(|| format!("header: {v:?} is not NAME:VALUE"))?;
                    q.headers
                        .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(q)
    }
}

impl Head for Question {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }
    fn has(&self, name: &str, value: &str) -> bool {
        self.headers.iter().any(|(n, v)| n == name && v == value)
    }
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_bytes())
    }
    fn each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for (n, v) in &self.headers {
            if n == name {
                f(v.as_bytes());
            }
        }
    }
}

pub fn explain(snap: &Snapshot, q: &Question) -> Value {
    let listener = q
        .listener
        .clone()
        .or_else(|| snap.config.listeners.first().map(|l| l.name.clone()))
        .unwrap_or_default();
    if !snap.config.listeners.iter().any(|l| l.name == listener) {
        return json!({"listener": listener, "route": null, "reason": "no such listener", "pools": []});
    }
    let view = snap.listener(&listener);
    let (path, query) = q
        .path
        .split_once('?')
        .map_or((q.path.as_str(), None), |(p, q)| (p, Some(q)));
    let host = q.host.as_deref();
    let Some(route) = view.router.find_matching(host, path, &|r| {
        policy::conditions_hold(&r.config, q, query)
    }) else {
        let reason = match view.router.find(host, path) {
            Some(_) => {
                "a route matches host and path, but not its method, header or query conditions"
            }
            None => "no route matches this host and path (the request gets 404)",
        };
        return json!({"listener": listener, "route": null, "reason": reason, "pools": []});
    };
    let mut answer = json!({
        "listener": listener,
        "route": &*route.name,
        "reason": null,
    });
    // The route's own policy for this client, where one was given.
    if let Some(ip) = q.client {
        if let Err(e) = policy::admit(&route.config, ip) {
            answer["refused"] = json!({"status": e.status(), "detail": e.detail()});
        }
    }
    let now = Instant::now();
    let pools = match &route.forward {
        Forward::Redirect(r) => {
            let location =
                policy::redirect(r, &route.config, view.tls.is_some(), host, path, query)
                    .field()
                    .map(|(_, l)| l);
            answer["redirect"] = json!(location);
            Vec::new()
        }
        Forward::Pool(p) => vec![(p.clone(), 100u32)],
        Forward::Split(pools, _) => pools.clone(),
    };
    answer["pools"] = pools
        .iter()
        .map(|(pool, split_weight)| {
            // ip_hash needs the client; url_hash only the path.
            let key = match pool.config.strategy {
                Strategy::UrlHash => {
                    proxy::hash_key(pool, IpAddr::from([0, 0, 0, 0]), path, &q.path)
                }
                Strategy::IpHash => q
                    .client
                    .and_then(|ip| proxy::hash_key(pool, ip, path, &q.path)),
                _ => None,
            };
            // A sticky cookie that names a backend able to take it (drain
            // still honours it) decides first, as on the request path.
            let pinned = pool
                .config
                .sticky
                .as_ref()
                .and_then(|s| crate::proxy::headers::cookie_token(q, &s.cookie))
                .and_then(|t| pool.pinned_member(t))
                .filter(|&i| {
                    let mut r = pool.reasons(i, now);
                    r.drain = false;
                    r.usable(true)
                });
            let would_pick = pinned
                .or_else(|| key.and_then(|k| pool.would_pick(k)))
                .map(|i| json!(&*pool.members[i].backend.addr));
            let backends: Vec<Value> = pool
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let reasons = pool.reasons(i, now);
                    json!({
                        "addr": &*m.backend.addr,
                        "usable": reasons.usable(true),
                        "reasons": reasons.names(),
                        "weight": pool.effective_weight(i, now),
                    })
                })
                .collect();
            json!({
                "pool": &*pool.name,
                "split_weight": split_weight,
                "strategy": pool.config.strategy.as_str(),
                "would_pick": would_pick,
                "backends": backends,
            })
        })
        .collect();
    answer
}
