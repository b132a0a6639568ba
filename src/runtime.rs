//! The immutable snapshot that serves requests, and the shared handle that
//! holds the current one.
//!
//! A request loads the snapshot once and keeps it to its end, so a reload
//! never changes the rules under a request in flight. A snapshot is built
//! from a validated `Config` and the previous snapshot: a backend still in
//! the config (same pool, same addr) gets the previous `Arc<Backend>`, with
//! its in-flight count, latency estimate and pooled connections.

use crate::backend::{Backend, Lease};
use crate::balance::{self, Balancer, Member};
use crate::config::{Config, ListenerConfig, PoolConfig, RouteConfig};
use crate::route::Router;
use arc_swap::ArcSwap;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A pool as one snapshot sees it: members, settings and a balancer.
pub struct Pool {
    pub name: Arc<str>,
    pub config: PoolConfig,
    pub members: Vec<Member>,
    /// Per member: the resolved address as a URI authority.
    authorities: Vec<Authority>,
    balancer: Box<dyn Balancer>,
}

impl Pool {
    fn build(config: &PoolConfig, previous: Option<&Pool>) -> Pool {
        let name: Arc<str> = config.name.as_str().into();
        let mut members = Vec::with_capacity(config.backends.len());
        let mut authorities = Vec::with_capacity(config.backends.len());
        for b in &config.backends {
            let backend = previous
                .and_then(|p| p.members.iter().find(|m| *m.backend.addr == *b.addr))
                .map(|m| {
                    m.backend
                        .upstream
                        .set_connect_timeout(config.connect_timeout);
                    m.backend.clone()
                })
                .unwrap_or_else(|| Arc::new(Backend::new(&name, &b.addr, config.connect_timeout)));
            members.push(Member {
                backend,
                weight: b.weight,
            });
            // A SocketAddr always forms a valid authority.
            authorities.push(
                Authority::try_from(b.resolved.to_string())
                    .unwrap_or_else(|_| Authority::from_static("0.0.0.0:0")),
            );
        }
        let balancer = balance::build(config.strategy, &members);
        Pool {
            name,
            config: config.clone(),
            members,
            authorities,
            balancer,
        }
    }

    /// Whether member `i` may take a request now (health, breaker, rate
    /// limit and bulkhead are all checked here, nowhere else).
    fn usable(&self, i: usize) -> bool {
        let max = self.config.max_in_flight;
        max == 0 || self.members[i].backend.in_flight() < max as u64
    }

    /// Picks a member (skipping those in `tried`) and admits it: the lease
    /// counts the request in flight. `None` when no member can take it.
    pub fn pick(&self, key: Option<u64>, tried: &[usize]) -> Option<(usize, Lease)> {
        // Admission can lose a race the `usable` check won (another request
        // took the last slot): exclude that member and pick again.
        let mut refused: Vec<usize> = Vec::new();
        for _ in 0..4 {
            let i = self.balancer.pick(&self.members, key, &|i| {
                !tried.contains(&i) && !refused.contains(&i) && self.usable(i)
            })?;
            if let Some(lease) = self.members[i].backend.try_lease(self.config.max_in_flight) {
                return Some((i, lease));
            }
            refused.push(i);
        }
        None
    }

    /// The URI that sends `pq` to member `i`.
    pub fn upstream_uri(&self, i: usize, pq: PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authorities[i].clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
    }
}

pub struct Route {
    pub name: Arc<str>,
    pub pool: Arc<Pool>,
    pub config: RouteConfig,
}

/// What a listener's connections need from the snapshot.
pub struct ListenerView {
    pub config: ListenerConfig,
    pub router: Router<Arc<Route>>,
}

pub struct Snapshot {
    pub config: Arc<Config>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    listeners: HashMap<String, ListenerView>,
    /// Routes open to every listener: serves the connections of a listener
    /// that a reload removed while they drain.
    fallback: ListenerView,
}

impl Snapshot {
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Snapshot {
        let pools: BTreeMap<String, Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| {
                let prev = previous.and_then(|s| s.pools.get(&p.name)).map(|p| &**p);
                (p.name.clone(), Arc::new(Pool::build(p, prev)))
            })
            .collect();
        let routes: Vec<Arc<Route>> = config
            .routes
            .iter()
            .filter_map(|r| {
                Some(Arc::new(Route {
                    name: r.name.as_str().into(),
                    pool: pools.get(&r.pool)?.clone(),
                    config: r.clone(),
                }))
            })
            .collect();
        let router_for = |listener: Option<&str>| {
            Router::new(
                routes
                    .iter()
                    .filter(|r| match (&r.config.listeners, listener) {
                        (None, _) => true,
                        (Some(ls), Some(l)) => ls.iter().any(|x| x == l),
                        (Some(_), None) => false,
                    })
                    .map(|r| {
                        (
                            r.config.host.clone(),
                            r.config.path_prefix.clone(),
                            r.clone(),
                        )
                    }),
            )
        };
        let listeners = config
            .listeners
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    ListenerView {
                        config: l.clone(),
                        router: router_for(Some(&l.name)),
                    },
                )
            })
            .collect();
        let fallback = ListenerView {
            config: config
                .listeners
                .first()
                .cloned()
                .unwrap_or_else(|| ListenerConfig {
                    name: String::new(),
                    bind: ([127, 0, 0, 1], 0).into(),
                    header_read_timeout: std::time::Duration::from_secs(10),
                    idle_timeout: std::time::Duration::from_secs(60),
                    max_header_bytes: 65536,
                    max_connections: 10000,
                    trusted_proxies: Vec::new(),
                    certificates: Vec::new(),
                }),
            router: router_for(None),
        };
        Snapshot {
            config: Arc::new(config),
            pools,
            listeners,
            fallback,
        }
    }

    /// The view for a listener by name (the fallback if a reload removed it).
    pub fn listener(&self, name: &str) -> &ListenerView {
        self.listeners.get(name).unwrap_or(&self.fallback)
    }

    pub fn trusted_proxies(&self, listener: &str) -> &[IpNet] {
        &self.listener(listener).config.trusted_proxies
    }
}

/// State shared by every task: the current snapshot and process flags.
pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    draining: AtomicBool,
}

impl Shared {
    pub fn new(snapshot: Snapshot) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            draining: AtomicBool::new(false),
        }
    }

    /// The current snapshot; keep it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a new snapshot with one atomic store.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
