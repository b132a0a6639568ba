//! Reload as a plan: a pure function of what runs now and the new config
//! says what to bind, keep, retune and drain. `reload::apply` carries a
//! plan out; starting is the plan from nothing, so start and reload take
//! the same path.
//!
//! Everything that keeps state across reloads is matched by one key per
//! kind:
//!
//! | kind | key | kept across a reload |
//! |---|---|---|
//! | listener | its bind address | the socket (so connections are not refused); a new name takes effect for new connections |
//! | admin listener | its bind address | the socket |
//! | pool | its name | the retry budget; the balancer (round-robin position, ring) while strategy and members are unchanged |
//! | backend | (pool, addr as written) | health, breaker, latency estimate, in-flight count, rate-limit bucket, connections |
//! | health checker | (pool, addr as written), while the pool has a `health_check` | the running check and its counts (retuned in place) |
//! | client limiter | the route's name, while it has a `rate_limit` | every client's bucket |

use crate::config::Config;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// What runs now, as the plan sees it: the keys of what keeps state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Running {
    /// Listener sockets by bind address, with the name each serves under.
    pub listeners: Vec<(SocketAddr, String)>,
    pub admin: Option<SocketAddr>,
    pub pools: BTreeSet<String>,
    /// (pool, addr as written).
    pub backends: BTreeSet<(String, String)>,
    /// Backends whose pool has a health check.
    pub checked: BTreeSet<(String, String)>,
    /// Routes with a client rate limit, by name.
    pub limiters: BTreeSet<String>,
}

impl Running {
    /// What `config` runs once applied (pools, backends, checkers and
    /// limiters; listeners by their bind address as configured).
    pub fn of(config: &Config) -> Running {
        Running {
            listeners: config
                .listeners
                .iter()
                .map(|l| (l.bind, l.name.clone()))
                .collect(),
            admin: config.admin.as_ref().map(|a| a.bind),
            pools: config.pools.iter().map(|p| p.name.clone()).collect(),
            backends: config
                .pools
                .iter()
                .flat_map(|p| p.backends.iter().map(|b| (p.name.clone(), b.addr.clone())))
                .collect(),
            checked: config
                .pools
                .iter()
                .filter(|p| p.health_check.is_some())
                .flat_map(|p| p.backends.iter().map(|b| (p.name.clone(), b.addr.clone())))
                .collect(),
            limiters: config
                .routes
                .iter()
                .filter(|r| r.rate_limit.is_some())
                .map(|r| r.name.clone())
                .collect(),
        }
    }
}

/// New, kept and removed keys of one kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delta<K> {
    pub start: Vec<K>,
    pub keep: Vec<K>,
    pub stop: Vec<K>,
}

fn delta<K: Ord + Clone>(now: &BTreeSet<K>, next: &BTreeSet<K>) -> Delta<K> {
    Delta {
        start: next.difference(now).cloned().collect(),
        keep: next.intersection(now).cloned().collect(),
        stop: now.difference(next).cloned().collect(),
    }
}

/// What to do with the admin listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// None now, none wanted.
    Off,
    Keep,
    /// Bind here (and stop the old one, if any).
    Bind(SocketAddr),
    Stop,
}

/// What a reload (or start) does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Listeners to bind: (name, bind address).
    pub bind: Vec<(String, SocketAddr)>,
    /// Listeners kept: (bind address, the name they serve under now).
    pub keep: Vec<(SocketAddr, String)>,
    /// Listeners to stop and drain, by bind address.
    pub drain: Vec<SocketAddr>,
    pub admin: Admin,
    pub pools: Delta<String>,
    pub backends: Delta<(String, String)>,
    /// Checkers to start, retune (kept) and stop.
    pub checkers: Delta<(String, String)>,
    pub limiters: Delta<String>,
}

/// The plan that takes `running` to `config`. Pure: no sockets, no state.
pub fn plan(running: &Running, config: &Config) -> Plan {
    let next = Running::of(config);
    let bound: BTreeSet<SocketAddr> = running.listeners.iter().map(|(b, _)| *b).collect();
    let wanted: BTreeSet<SocketAddr> = next.listeners.iter().map(|(b, _)| *b).collect();
    let admin = match (running.admin, next.admin) {
        (None, None) => Admin::Off,
        (Some(a), Some(b)) if a == b => Admin::Keep,
        (_, Some(b)) => Admin::Bind(b),
        (Some(_), None) => Admin::Stop,
    };
    Plan {
        bind: next
            .listeners
            .iter()
            .filter(|(b, _)| !bound.contains(b))
            .map(|(b, n)| (n.clone(), *b))
            .collect(),
        keep: next
            .listeners
            .iter()
            .filter(|(b, _)| bound.contains(b))
            .cloned()
            .collect(),
        drain: running
            .listeners
            .iter()
            .filter(|(b, _)| !wanted.contains(b))
            .map(|(b, _)| *b)
            .collect(),
        admin,
        pools: delta(&running.pools, &next.pools),
        backends: delta(&running.backends, &next.backends),
        checkers: delta(&running.checked, &next.checked),
        limiters: delta(&running.limiters, &next.limiters),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(extra: &str) -> String {
        format!(
            "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:8001\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n{extra}"
        )
    }

    fn config(extra: &str) -> Config {
        Config::parse(&text(extra)).unwrap()
    }

    #[test]
    fn start_is_the_plan_from_nothing() {
        let c = config("[admin]\nbind = \"127.0.0.1:9901\"\n[pool.p.health_check]\n");
        let p = plan(&Running::default(), &c);
        assert_eq!(
            p.bind,
            [("a".to_string(), "127.0.0.1:8001".parse().unwrap())]
        );
        assert!(p.keep.is_empty() && p.drain.is_empty());
        assert_eq!(p.admin, Admin::Bind("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(p.pools.start, ["p"]);
        assert_eq!(p.backends.start.len(), 1);
        assert_eq!(p.checkers.start.len(), 1);
    }

    #[test]
    fn the_same_config_keeps_everything() {
        let c = config("[admin]\n[pool.p.health_check]\n[route.rate_limit]\n");
        let p = plan(&Running::of(&c), &c);
        assert!(p.bind.is_empty() && p.drain.is_empty());
        assert_eq!(p.keep.len(), 1);
        assert_eq!(p.admin, Admin::Keep);
        for d in [&p.backends, &p.checkers] {
            assert!(d.start.is_empty() && d.stop.is_empty() && d.keep.len() == 1);
        }
        assert_eq!(p.limiters.keep, ["p"]);
        assert_eq!(p.pools.keep, ["p"]);
    }

    #[test]
    fn listeners_are_kept_by_bind_address_even_when_renamed() {
        let before = config("");
        let renamed = Config::parse(&text("").replace("name = \"a\"", "name = \"b\"")).unwrap();
        let p = plan(&Running::of(&before), &renamed);
        assert!(p.bind.is_empty() && p.drain.is_empty(), "{p:?}");
        assert_eq!(
            p.keep,
            [("127.0.0.1:8001".parse().unwrap(), "b".to_string())]
        );
        let moved = Config::parse(&text("").replace("8001", "8002")).unwrap();
        let p = plan(&Running::of(&before), &moved);
        assert_eq!(
            p.bind,
            [("a".to_string(), "127.0.0.1:8002".parse().unwrap())]
        );
        assert_eq!(p.drain, ["127.0.0.1:8001".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn backends_checkers_limiters_and_the_admin_follow_their_keys() {
        let before = config("[admin]\n[pool.p.health_check]\n[route.rate_limit]\n");
        let after = Config::parse(
            "[admin]\nbind = \"127.0.0.1:9902\"\n[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:8001\"\n[[route]]\npool = \"q\"\n[pool.p]\nbackends = [{ addr = \"127.0.0.1:9001\" }, { addr = \"127.0.0.1:9002\" }]\n[pool.q]\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n[pool.q.health_check]\n",
        )
        .unwrap();
        let p = plan(&Running::of(&before), &after);
        assert_eq!(p.admin, Admin::Bind("127.0.0.1:9902".parse().unwrap()));
        let key = |pool: &str, port: u16| (pool.to_string(), format!("127.0.0.1:{port}"));
        assert_eq!(p.backends.keep, [key("p", 9001)]);
        assert_eq!(p.backends.start, [key("p", 9002), key("q", 9001)]);
        // Pool p lost its health check, q gained one.
        assert_eq!(p.checkers.stop, [key("p", 9001)]);
        assert_eq!(p.checkers.start, [key("q", 9001)]);
        // The route is now named q, without a rate limit.
        assert_eq!(p.limiters.stop, ["p"]);
        assert_eq!(p.pools.start, ["q"]);
        let off = config("");
        assert_eq!(plan(&Running::of(&before), &off).admin, Admin::Stop);
        assert_eq!(plan(&Running::of(&off), &off).admin, Admin::Off);
    }
}
