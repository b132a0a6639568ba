//! sluice: an edge reverse proxy and HTTP load balancer.
//!
//! `Sluice::start` takes a validated `Config`, binds its listeners and
//! serves; `reload` swaps in a new config without dropping anything;
//! `shutdown` drains. The binary (`main.rs`) adds the command line, logging
//! and signals; tests drive the same entry points.

#![forbid(unsafe_code)]

pub mod acme;
pub mod admin;
pub mod auth;
pub mod backend;
pub mod balance;
pub mod certstore;
pub mod checker;
pub mod compress;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod files;
pub mod global_limit;
pub mod history;
pub mod http1;
pub mod limit;
pub mod logging;
pub mod metrics;
pub mod plan;
pub mod pool;
pub mod proxy;
pub mod proxy_protocol;
pub mod reload;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod sticky;
pub mod tls;
pub mod upgrade;
pub mod upstream_tls;
pub mod workers;

use config::Config;
use server::Listener;
use snapshot::{Shared, Snapshot};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Reads, validates and loads a config file and what it names (its
/// certificates): what `--check`, start and a reload do.
pub fn load_config(path: &std::path::Path) -> Result<(Config, files::Files), config::ConfigErrors> {
    let mut config = Config::load(path)?;
    let files = files::load(&mut config, config::LoadOptions::default())?;
    Ok((config, files))
}

/// `load_config` from config text.
pub fn load_config_text(text: &str) -> Result<(Config, files::Files), config::ConfigErrors> {
    let mut config = Config::parse(text)?;
    let files = files::load(&mut config, config::LoadOptions::default())?;
    Ok((config, files))
}

/// A listener that could not be bound.
#[derive(Debug)]
pub struct BindError {
    pub listener: String,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listener {:?}: cannot bind {}: {}",
            self.listener, self.addr, self.source
        )
    }
}

impl std::error::Error for BindError {}

impl BindError {
    /// Binds `addr` for the listener named `listener`, naming it on failure.
    pub fn bind(listener: &str, addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
        if let Some(s) = upgrade::take(listener, addr, 1).pop() {
            return Ok(s);
        }
        server::bind(addr).map_err(|source| BindError {
            listener: listener.to_string(),
            addr,
            source,
        })
    }

    /// Binds one socket per worker for the listener named `listener`.
    pub fn bind_workers(
        listener: &str,
        addr: SocketAddr,
        workers: usize,
    ) -> Result<Vec<std::net::TcpListener>, BindError> {
        let named = |source| BindError {
            listener: listener.to_string(),
            addr,
            source,
        };
        // Sockets handed over by an upgrade first; more are bound beside
        // them (SO_REUSEPORT) if this process runs more workers.
        let mut sockets = upgrade::take(listener, addr, workers.max(1));
        if let Some(first) = sockets.first() {
            let actual = first.local_addr().map_err(named)?;
            while sockets.len() < workers {
                sockets.push(server::bind_reuse_port(actual).map_err(named)?);
            }
            return Ok(sockets);
        }
        server::bind_workers(addr, workers).map_err(named)
    }
}

/// A running sluice.
pub struct Sluice {
    shared: Arc<Shared>,
    workers: workers::Workers,
    listeners: tokio::sync::Mutex<Vec<Listener>>,
    checkers: Arc<std::sync::Mutex<checker::Checkers>>,
    admin: tokio::sync::Mutex<Option<admin::Admin>>,
    /// Wakes the ACME task after a reload.
    acme_wake: Arc<tokio::sync::Notify>,
}

/// Why sluice did not start.
#[derive(Debug)]
pub enum StartError {
    /// A file the config names (a certificate) is missing or broken.
    Config(config::ConfigErrors),
    Bind(BindError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Bind(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<BindError> for StartError {
    fn from(e: BindError) -> StartError {
        StartError::Bind(e)
    }
}

impl Sluice {
    /// Loads the certificates `config` names, binds every listener and
    /// starts serving.
    pub async fn start(mut config: Config) -> Result<Sluice, StartError> {
        let files =
            files::load(&mut config, config::LoadOptions::default()).map_err(StartError::Config)?;
        Sluice::start_with(config, files).await
    }

    /// Binds every listener of `config` (its certificates loaded in `tls`)
    /// and starts serving.
    pub async fn start_with(config: Config, files: files::Files) -> Result<Sluice, StartError> {
        // Before any snapshot: backends size their per-worker pools.
        let n = workers::count(config.runtime.worker_threads);
        let workers = workers::Workers::start(n).map_err(|source| BindError {
            listener: "workers".into(),
            addr: ([0, 0, 0, 0], 0).into(),
            source,
        })?;
        let metrics = metrics::Metrics::default();
        let discovered = discovery::seed(&config).await;
        let mut nothing = Snapshot::build(
            Config {
                admin: None,
                listeners: Vec::new(),
                routes: Vec::new(),
                pools: Vec::new(),
                warnings: Vec::new(),
                ..config.clone()
            },
            files::Files::default(),
            None,
            &metrics,
        );
        // What DNS found goes into the first snapshot (see discovery::seed).
        nothing.discovered = Arc::new(discovered);
        let sluice = Sluice {
            shared: Arc::new(Shared::new(nothing, metrics)),
            workers,
            listeners: tokio::sync::Mutex::new(Vec::new()),
            checkers: Default::default(),
            admin: tokio::sync::Mutex::new(None),
            acme_wake: Default::default(),
        };
        // Start is the plan from nothing: the same path as a reload.
        let plan = plan::plan(&plan::Running::default(), &config);
        sluice.apply(&plan, config, files).await?;
        sluice.shared.metrics.config_loaded();
        tokio::spawn(sample_history(Arc::downgrade(&sluice.shared)));
        let checkers = sluice.checkers.clone();
        tokio::spawn(discovery::run(
            Arc::downgrade(&sluice.shared),
            move |shared| {
                checkers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sync(&shared.snapshot());
            },
        ));
        tokio::spawn(acme::run(
            Arc::downgrade(&sluice.shared),
            sluice.acme_wake.clone(),
        ));
        Ok(sluice)
    }

    /// The address a listener is bound to (useful with port 0).
    pub async fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .lock()
            .await
            .iter()
            .find(|l| &*l.name() == name)
            .map(|l| l.local_addr)
    }

    /// The admin listener's address, if it runs.
    pub async fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.lock().await.as_ref().map(|a| a.local_addr)
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts the binary again with every listening socket (SIGUSR2) and
    /// waits until the new process serves; then this one should drain and
    /// exit. On failure this one serves on. Counted in
    /// `sluice_upgrades_total`.
    pub async fn upgrade(&self) -> Result<u32, upgrade::UpgradeError> {
        // Held across the handover, so no reload changes the sockets meanwhile.
        let listeners = self.listeners.lock().await;
        let admin = self.admin.lock().await;
        let mut sockets: Vec<(String, &std::net::TcpListener)> = Vec::new();
        for l in listeners.iter() {
            let key = upgrade::key(&l.name(), l.bind);
            sockets.extend(l.sockets().iter().map(|s| (key.clone(), s)));
        }
        if let Some(a) = admin.as_ref() {
            sockets.push((upgrade::key("admin", a.bind), &a.handover));
        }
        let result = upgrade::start_successor(&sockets).await;
        let label = if result.is_ok() { "success" } else { "failure" };
        self.shared
            .metrics
            .upgrades
            .with_label_values(&[label])
            .inc();
        result
    }

    /// Connections accepted by each worker so far (diagnostics).
    pub fn worker_connections(&self) -> Vec<u64> {
        self.workers.accepted_counts()
    }

    /// Stops accepting on every listener and lets requests in flight finish
    /// for up to `grace`. Returns whether everything drained in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.set_draining();
        self.checkers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop_all();
        let listeners: Vec<Listener> = std::mem::take(&mut *self.listeners.lock().await);
        let drains = futures_join_all(listeners.into_iter().map(|l| l.drain()));
        let drained = tokio::time::timeout(grace, drains).await.is_ok();
        // The admin listener outlives the drain, so /readyz shows 503 meanwhile.
        if let Some(a) = self.admin.lock().await.take() {
            a.stop().await;
        }
        drained
    }
}

/// Samples every backend into the status page's history once a second,
/// for as long as sluice runs.
async fn sample_history(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let snap = shared.snapshot();
        shared.history.sample(snap.pools.values().flat_map(|p| {
            p.members
                .iter()
                .zip(&p.upstream_duration)
                .map(|(m, durations)| history::Observed {
                    pool: &p.name,
                    addr: &m.backend.addr,
                    totals: m.backend.totals(),
                    durations,
                })
        }));
    }
}

/// Awaits every future (a tiny join_all: one task each, joined in order).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for h in handles {
        if let Err(e) = h.await {
            tracing::error!(error = %e, "drain task failed");
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are registered when this is
/// called, not when it is first polled.
pub fn wait_for_shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move { shutdown_signal(handlers).await }
}

async fn shutdown_signal(
    handlers: (
        std::io::Result<tokio::signal::unix::Signal>,
        std::io::Result<tokio::signal::unix::Signal>,
    ),
) {
    match handlers {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => {
            // Without signal handlers, Ctrl-C through tokio still works.
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot wait for a signal");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The signal loop of the binary: SIGHUP reloads `path`; SIGUSR2 hands the
/// listening sockets to a new copy of the binary, then drains; SIGTERM and
/// SIGINT drain for up to `grace` and return. The service manager hears of
/// each step (`upgrade::notify`). `ready` runs once the signal handlers are
/// in place (a SIGHUP sent as soon as sluice says it is ready must not
/// find the default action, which ends the process).
pub async fn serve_signals(
    sluice: &Sluice,
    path: &std::path::Path,
    grace: Duration,
    ready: impl FnOnce(),
) {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind, name: &str| match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, signal = name, "cannot listen for the signal");
            None
        }
    };
    let mut hup = listen(SignalKind::hangup(), "SIGHUP");
    let mut usr2 = listen(SignalKind::user_defined2(), "SIGUSR2");
    let shutdown = wait_for_shutdown_signal();
    tokio::pin!(shutdown);
    ready();
    let mut upgraded = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                upgrade::notify::reloading();
                // Errors are logged and counted inside; the old config serves on.
                let _outcome = sluice.reload_from(path).await;
                upgrade::notify::reloaded();
            }
            Some(()) = async { match usr2.as_mut() { Some(u) => u.recv().await, None => None } } => {
                tracing::info!("SIGUSR2: starting the new binary with the listening sockets");
                match sluice.upgrade().await {
                    Ok(pid) => {
                        tracing::info!(new_pid = pid, "upgrade: the new process serves; this one drains and exits");
                        upgraded = true;
                        break;
                    }
                    Err(e) => tracing::error!(error = %e, "upgrade failed; this process serves on"),
                }
            }
        }
    }
    // After an upgrade the new process is the service; telling the manager
    // that this one stops would stop the service.
    if !upgraded {
        upgrade::notify::stopping();
    }
    let grace = sluice
        .shared()
        .snapshot()
        .config
        .runtime
        .shutdown_grace
        .max(grace);
    tracing::info!(grace_ms = grace.as_millis() as u64, "draining");
    if sluice.shutdown(grace).await {
        tracing::info!("drained, exiting");
    } else {
        tracing::warn!("shutdown grace elapsed with requests still in flight; exiting");
    }
}
