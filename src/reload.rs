//! Applying a config to a running sluice: `plan::plan` says what to bind,
//! keep, retune and drain; `apply` binds what is new, publishes the new
//! snapshot with one atomic store, starts and stops what the plan says, and
//! drains what was removed. Start is the plan from nothing.
//!
//! Binding comes first so that a reload that cannot bind a new port fails
//! whole and changes nothing. Listeners whose bind is unchanged keep their
//! sockets (and their connections); the snapshot they read changes.

use crate::admin::Admin;
use crate::config::{Config, ConfigErrors, LoadOptions};
use crate::plan::{self, Plan, Running};
use crate::server::Listener;
use crate::snapshot::Snapshot;
use crate::{BindError, Sluice};
use std::path::Path;

/// Why a reload changed nothing.
#[derive(Debug)]
pub enum ReloadError {
    Invalid(ConfigErrors),
    Bind(BindError),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Invalid(e) => write!(f, "invalid config:\n{e}"),
            ReloadError::Bind(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReloadError {}

impl Sluice {
    /// Reads `path` and swaps it in (SIGHUP). An invalid file, or one whose
    /// new listeners cannot be bound, changes nothing: the error is logged
    /// and `sluice_config_reloads_total{result="failure"}` goes up.
    pub async fn reload_from(&self, path: &Path) -> Result<(), ReloadError> {
        let owned = path.to_path_buf();
        // Reading and resolving host names block: keep them off the workers.
        let loaded = tokio::task::spawn_blocking(move || crate::load_config(&owned))
            .await
            .unwrap_or_else(|e| {
                Err(ConfigErrors(vec![crate::config::ConfigError {
                    path: String::new(),
                    message: format!("config loader failed: {e}"),
                }]))
            });
        match loaded {
            Ok((config, files)) => {
                for w in &config.warnings {
                    tracing::warn!(file = %path.display(), warning = %w, "config warning");
                }
                self.reload_with(config, files)
                    .await
                    .map_err(ReloadError::Bind)
            }
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(file = %path.display(), error = %e, "invalid config; the old config keeps serving");
                }
                self.shared.metrics.reload_failed();
                Err(ReloadError::Invalid(errors))
            }
        }
    }

    /// Loads the certificates `config` names and swaps it in. On error
    /// nothing has changed.
    pub async fn reload(&self, mut config: Config) -> Result<(), ReloadError> {
        match crate::files::load(&mut config, LoadOptions::default()) {
            Ok(files) => self
                .reload_with(config, files)
                .await
                .map_err(ReloadError::Bind),
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "invalid config; the old config keeps serving");
                }
                self.shared.metrics.reload_failed();
                Err(ReloadError::Invalid(errors))
            }
        }
    }

    /// Swaps in `config` (its files loaded in `files`). On error
    /// nothing has changed.
    pub async fn reload_with(
        &self,
        config: Config,
        files: crate::files::Files,
    ) -> Result<(), BindError> {
        let plan = plan::plan(&self.running().await, &config);
        let result = self.apply(&plan, config, files).await;
        match &result {
            Ok(()) => {
                self.acme_wake.notify_one();
                self.shared.metrics.reload_succeeded();
                tracing::info!("config reloaded");
            }
            Err(e) => {
                self.shared.metrics.reload_failed();
                tracing::error!(error = %e, "reload failed; the old config keeps serving");
            }
        }
        result
    }

    /// What runs now, as the plan sees it.
    pub(crate) async fn running(&self) -> Running {
        let snap = self.shared.snapshot();
        Running {
            listeners: self
                .listeners
                .lock()
                .await
                .iter()
                .map(|l| (l.bind, l.name().to_string()))
                .collect(),
            admin: self.admin.lock().await.as_ref().map(|a| a.bind),
            ..Running::of(&snap.config)
        }
    }

    /// Carries out `plan` (made from what runs now and `config`). Binding
    /// comes first, so a plan that cannot bind changes nothing.
    pub(crate) async fn apply(
        &self,
        plan: &Plan,
        config: Config,
        files: crate::files::Files,
    ) -> Result<(), BindError> {
        let mut listeners = self.listeners.lock().await;
        let mut admin = self.admin.lock().await;
        // 1. Bind what is new.
        let admin_socket = match plan.admin {
            plan::Admin::Bind(bind) => Some((bind, BindError::bind("admin", bind)?)),
            _ => None,
        };
        let mut fresh = Vec::new();
        for (name, bind) in &plan.bind {
            let sockets = BindError::bind_workers(name, *bind, self.workers.len())?;
            fresh.push((name, *bind, sockets));
        }
        // 2. Publish: from here on new requests see the new config. The
        // snapshot reuses what the plan keeps (by the plan's keys).
        let log_before = self.shared.snapshot().config.log.clone();
        self.shared.publish_with(|previous| {
            Snapshot::build(config, files, Some(previous), &self.shared.metrics)
        });
        let snap = self.shared.snapshot();
        if snap.config.log != log_before {
            crate::logging::apply(&snap.config.log);
        }
        // 3. Health checkers: start, retune, stop; then, for the members
        // DNS found (keyed by address, not by the name in the file), in
        // line with the snapshot.
        {
            let mut checkers = self.checkers.lock().unwrap_or_else(|p| p.into_inner());
            checkers.apply(&plan.checkers, &snap);
            checkers.sync(&snap);
        }
        // 4. Listeners: rename the kept ones, start the new, drain the removed.
        for (bind, name) in &plan.keep {
            if let Some(l) = listeners.iter_mut().find(|l| l.bind == *bind) {
                if *l.name() != **name {
                    tracing::info!(from = %l.name(), to = %name, addr = %l.local_addr, "listener renamed");
                    l.rename(name);
                }
                let max = snap.listener(name).config.max_connections;
                if max != l.max_connections() {
                    tracing::info!(listener = %name, from = l.max_connections(), to = max, "max_connections changed");
                    l.set_max_connections(max);
                }
            }
        }
        let (removed, kept): (Vec<Listener>, Vec<Listener>) = std::mem::take(&mut *listeners)
            .into_iter()
            .partition(|l| plan.drain.contains(&l.bind));
        *listeners = kept;
        for (name, bind, sockets) in fresh {
            match Listener::spawn(name, bind, sockets, &self.workers, self.shared.clone()) {
                Ok(l) => {
                    tracing::info!(listener = %name, addr = %l.local_addr, "listening");
                    listeners.push(l);
                }
                Err(e) => tracing::error!(listener = %name, error = %e, "cannot start listener"),
            }
        }
        for l in removed {
            tracing::info!(listener = %l.name(), "listener removed, draining");
            tokio::spawn(l.drain());
        }
        // 5. The admin listener.
        if matches!(plan.admin, plan::Admin::Bind(_) | plan::Admin::Stop) {
            if let Some(old) = admin.take() {
                tokio::spawn(old.stop());
            }
        }
        if let Some((bind, socket)) = admin_socket {
            match Admin::spawn(bind, socket, self.shared.clone()) {
                Ok(a) => {
                    tracing::info!(addr = %a.local_addr, "admin listening");
                    *admin = Some(a);
                }
                Err(e) => tracing::error!(error = %e, "cannot start the admin listener"),
            }
        }
        tracing::debug!(
            backends_added = plan.backends.start.len(),
            backends_kept = plan.backends.keep.len(),
            backends_removed = plan.backends.stop.len(),
            checkers_started = plan.checkers.start.len(),
            checkers_stopped = plan.checkers.stop.len(),
            "plan applied"
        );
        Ok(())
    }
}
