//! The immutable snapshot that serves requests, and the shared handle that
//! holds the current one.
//!
//! A request loads the snapshot once and keeps it to its end, so a reload
//! never changes the rules under a request in flight. A snapshot is built
//! from a validated `Config` and the previous snapshot: a backend still in
//! the config (same pool, same addr) gets the previous `Arc<Backend>`, with
//! its in-flight count, latency estimate and pooled connections (see
//! `pool`); a route's client limiter is kept by route name.

pub use crate::pool::{Pool, Refusal};

use crate::auth::Users;
use crate::config::{Config, ListenerConfig, RedirectConfig, RouteConfig, RouteTarget};
use crate::limit::ClientLimiter;
use crate::metrics::Metrics;
use crate::route::Router;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Route {
    pub name: Arc<str>,
    /// This route's `sluice_request_duration_seconds` series.
    pub duration: prometheus::Histogram,
    pub forward: Forward,
    pub config: RouteConfig,
    /// Rate-limit buckets; carried over a reload by route name.
    pub limiter: Option<Arc<ClientLimiter>>,
    /// The users of `basic_auth` (read from its file at load and reload).
    pub users: Option<Arc<Users>>,
    /// The pool that gets a copy of requests (`mirror`).
    pub mirror: Option<Arc<Pool>>,
    /// This route's `sluice_mirrored_requests_total` series.
    pub mirrored: prometheus::IntCounter,
}

/// Where a route sends its requests.
pub enum Forward {
    Pool(Arc<Pool>),
    /// A weighted split, decided per request: the pools with their weights,
    /// and the sum of the weights.
    Split(Vec<(Arc<Pool>, u32)>, u32),
    /// Nothing is forwarded: the client is sent elsewhere.
    Redirect(RedirectConfig),
}

impl Forward {
    /// The pool for one request: a split draws by weight (weight 0 takes
    /// nothing); None for a redirect or a split whose weights are all 0.
    pub fn pick(&self) -> Option<&Arc<Pool>> {
        match self {
            Forward::Pool(p) => Some(p),
            Forward::Split(pools, total) => {
                if *total == 0 {
                    return None;
                }
                let mut n = fastrand::u32(0..*total);
                for (p, w) in pools {
                    if n < *w {
                        return Some(p);
                    }
                    n -= w;
                }
                None
            }
            Forward::Redirect(_) => None,
        }
    }
}

/// What a listener's connections need from the snapshot.
pub struct ListenerView {
    /// The listener's certificates and rustls settings (TLS listeners).
    pub tls: Option<Arc<crate::tls::ListenerTls>>,
    /// Shared with every connection of the listener (one reference count
    /// per connection, not a copy).
    pub config: Arc<ListenerConfig>,
    pub router: Router<Arc<Route>>,
}

pub struct Snapshot {
    pub config: Arc<Config>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    listeners: HashMap<String, ListenerView>,
    /// Routes open to every listener: serves the connections of a listener
    /// that a reload removed while they drain.
    fallback: ListenerView,
    /// Client limiters by route name, for the next snapshot to reuse.
    limiters: HashMap<String, Arc<ClientLimiter>>,
    /// The shared buckets of `scope = "global"` limits (`[redis]`); kept,
    /// with its connection, by a reload that leaves `[redis]` unchanged.
    pub redis: Option<Arc<crate::global_limit::GlobalLimiter>>,
    /// The files this snapshot was built with, for a rebuild after a
    /// runtime change (see `Shared::rebuild`).
    files: crate::files::Files,
    /// What DNS found for the backend names of `dns_refresh` pools; carried
    /// from snapshot to snapshot, replaced by `discovery`.
    pub discovered: Arc<crate::config::resolve::Discovered>,
}

impl Snapshot {
    pub fn build(
        config: Config,
        files: crate::files::Files,
        previous: Option<&Snapshot>,
        metrics: &Metrics,
    ) -> Snapshot {
        let discovered = previous.map(|s| s.discovered.clone()).unwrap_or_default();
        Snapshot::build_discovered(config, files, previous, metrics, discovered)
    }

    /// This snapshot again, with what DNS found now.
    pub fn rediscovered(
        &self,
        discovered: Arc<crate::config::resolve::Discovered>,
        metrics: &Metrics,
    ) -> Snapshot {
        Snapshot::build_discovered(
            (*self.config).clone(),
            self.files.clone(),
            Some(self),
            metrics,
            discovered,
        )
    }

    fn build_discovered(
        config: Config,
        files: crate::files::Files,
        previous: Option<&Snapshot>,
        metrics: &Metrics,
        discovered: Arc<crate::config::resolve::Discovered>,
    ) -> Snapshot {
        // A reload (not the start, whose previous snapshot serves nothing)
        // ramps the backends it adds up from 10% (slow_start).
        let ramp_new = previous.is_some_and(|s| !s.config.listeners.is_empty());
        let pools: BTreeMap<String, Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| {
                let prev = previous.and_then(|s| s.pools.get(&p.name)).map(|p| &**p);
                let tls = files.upstream_tls.get(&p.name).cloned();
                (
                    p.name.clone(),
                    Arc::new(Pool::build(p, prev, metrics, ramp_new, tls, &discovered)),
                )
            })
            .collect();
        let kept_files = files.clone();
        let crate::files::Files { tls, users, .. } = files;
        let routes: Vec<Arc<Route>> = config
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let limiter = r.rate_limit.as_ref().map(|_| {
                    previous
                        .and_then(|s| s.limiters.get(&r.name))
                        .cloned()
                        .unwrap_or_default()
                });
                let forward = match &r.target {
                    RouteTarget::Pool(p) => Forward::Pool(pools.get(p)?.clone()),
                    RouteTarget::Split(split) => Forward::Split(
                        split
                            .iter()
                            .map(|(p, w)| Some((pools.get(p)?.clone(), *w)))
                            .collect::<Option<_>>()?,
                        split.iter().map(|(_, w)| w).sum(),
                    ),
                    RouteTarget::Redirect(r) => Forward::Redirect(r.clone()),
                };
                Some(Arc::new(Route {
                    name: r.name.as_str().into(),
                    duration: metrics.route_duration(&r.name),
                    forward,
                    config: r.clone(),
                    limiter,
                    users: users.get(i).cloned().flatten(),
                    mirror: r.mirror.as_ref().and_then(|m| pools.get(&m.pool).cloned()),
                    mirrored: metrics.mirrored.with_label_values(&[&r.name]),
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
                            r.config.conditions(),
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
                        tls: tls.get(&l.name).cloned(),
                        config: Arc::new(l.clone()),
                        router: router_for(Some(&l.name)),
                    },
                )
            })
            .collect();
        let fallback =
            ListenerView {
                tls: None,
                config: Arc::new(config.listeners.first().cloned().unwrap_or_else(|| {
                    ListenerConfig {
                        name: String::new(),
                        bind: ([127, 0, 0, 1], 0).into(),
                        header_read_timeout: std::time::Duration::from_secs(10),
                        idle_timeout: std::time::Duration::from_secs(60),
                        max_header_bytes: 65536,
                        max_connections: 10000,
                        trusted_proxies: Vec::new(),
                        certificates: Vec::new(),
                        acme_domains: Vec::new(),
                        proxy_protocol: false,
                    }
                })),
                router: router_for(None),
            };
        let limiters = routes
            .iter()
            .filter_map(|r| Some((r.name.to_string(), r.limiter.clone()?)))
            .collect();
        let redis = config.redis.as_ref().map(|r| {
            previous
                .and_then(|s| s.redis.clone())
                .filter(|g| g.config() == r)
                .unwrap_or_else(|| {
                    Arc::new(crate::global_limit::GlobalLimiter::new(
                        r,
                        metrics.redis_errors.clone(),
                    ))
                })
        });
        Snapshot {
            discovered,
            files: kept_files,
            redis,
            config: Arc::new(config),
            pools,
            listeners,
            fallback,
            limiters,
        }
    }

    /// The admin write token, read from `admin.token_file` at load.
    pub fn admin_token(&self) -> Option<&crate::files::AdminToken> {
        self.files.admin_token.as_ref()
    }

    /// Every certificate the listeners serve, with its listener's name.
    pub fn certificates(&self) -> impl Iterator<Item = (&str, &crate::tls::Certificate)> {
        self.listeners.iter().flat_map(|(name, view)| {
            view.tls
                .iter()
                .flat_map(|t| t.certificates.iter())
                .map(move |c| (name.as_str(), &**c))
        })
    }

    /// The view for a listener by name (the fallback if a reload removed it).
    pub fn listener(&self, name: &str) -> &ListenerView {
        self.listeners.get(name).unwrap_or(&self.fallback)
    }
}

/// State shared by every task: the current snapshot and process flags.
pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    /// Held while a new snapshot is built from the current one and
    /// published, so a reload and a runtime change never both build from
    /// the same snapshot and the later store loses the other's change.
    publishing: std::sync::Mutex<()>,
    pub metrics: Metrics,
    /// The last five minutes of every backend, for the status page.
    pub history: crate::history::History,
    draining: AtomicBool,
}

impl Shared {
    pub fn new(snapshot: Snapshot, metrics: Metrics) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            publishing: std::sync::Mutex::new(()),
            metrics,
            history: Default::default(),
            draining: AtomicBool::new(false),
        }
    }

    /// The current snapshot; keep it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Builds the next snapshot from the current one and publishes it with
    /// one atomic store; builds are serialised (see `publishing`).
    pub fn publish_with(&self, build: impl FnOnce(&Snapshot) -> Snapshot) {
        let _one_at_a_time = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let next = build(&self.snapshot.load());
        self.snapshot.store(Arc::new(next));
    }

    /// Rebuilds the current snapshot from its own config and files: after a
    /// runtime change to a backend (its weight), so that strategies built
    /// once per snapshot (schedules, rings) see it from the next request.
    pub fn rebuild(&self) {
        self.publish_with(|current| {
            Snapshot::build(
                (*current.config).clone(),
                current.files.clone(),
                Some(current),
                &self.metrics,
            )
        });
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
