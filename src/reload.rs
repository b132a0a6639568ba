//! Applying a new config to a running sluice: bind what is new, publish the
//! new snapshot with one atomic store, then drain what was removed.
//!
//! Binding comes first so that a reload that cannot bind a new port fails
//! whole and changes nothing. Listeners whose bind is unchanged keep their
//! sockets (and their connections); the snapshot they read changes.

use crate::admin::Admin;
use crate::config::{Config, ConfigErrors, LoadOptions};
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
            Ok((config, tls)) => {
                for w in &config.warnings {
                    tracing::warn!(file = %path.display(), warning = %w, "config warning");
                }
                self.reload_with(config, tls)
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
        match crate::tls::load(&mut config, LoadOptions::default()) {
            Ok(tls) => self
                .reload_with(config, tls)
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

    /// Swaps in `config` (its certificates loaded in `tls`). On error
    /// nothing has changed.
    pub async fn reload_with(&self, config: Config, tls: crate::tls::Tls) -> Result<(), BindError> {
        let result = self.apply(config, tls).await;
        match &result {
            Ok(()) => {
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

    async fn apply(&self, config: Config, tls: crate::tls::Tls) -> Result<(), BindError> {
        let mut listeners = self.listeners.lock().await;
        let mut admin = self.admin.lock().await;
        let new_admin_socket = match &config.admin {
            Some(a) if admin.as_ref().is_none_or(|old| old.bind != a.bind) => {
                Some((a.bind, BindError::bind("admin", a.bind)?))
            }
            _ => None,
        };
        // 1. Bind the listeners that are new (by name and bind address).
        let mut fresh = Vec::new();
        for l in &config.listeners {
            let kept = listeners
                .iter()
                .any(|old| old.name == l.name && old.bind == l.bind);
            if !kept {
                let socket = BindError::bind_workers(&l.name, l.bind, self.workers.len())?;
                fresh.push((l.name.clone(), l.bind, socket));
            }
        }
        // 2. Publish: from here on new requests see the new config.
        let previous = self.shared.snapshot();
        let config_admin = config.admin.as_ref().map(|a| a.bind);
        let keep: Vec<(String, std::net::SocketAddr)> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.bind))
            .collect();
        self.shared.publish(Snapshot::build(
            config,
            tls,
            Some(&previous),
            &self.shared.metrics,
        ));
        // Start checkers for new backends, retune kept ones, stop removed ones.
        self.reconcile_checkers();
        // 3. Start the new listeners, drain the removed ones.
        let (kept, removed): (Vec<Listener>, Vec<Listener>) = std::mem::take(&mut *listeners)
            .into_iter()
            .partition(|l| keep.iter().any(|(n, b)| *n == l.name && *b == l.bind));
        *listeners = kept;
        for (name, bind, socket) in fresh {
            match Listener::spawn(&name, bind, socket, &self.workers, self.shared.clone()) {
                Ok(l) => {
                    tracing::info!(listener = %name, addr = %l.local_addr, "listening");
                    listeners.push(l);
                }
                Err(e) => tracing::error!(listener = %name, error = %e, "cannot start listener"),
            }
        }
        for l in removed {
            tracing::info!(listener = %l.name, "listener removed, draining");
            tokio::spawn(l.drain());
        }
        let admin_kept = match (&config_admin, admin.as_ref()) {
            (Some(bind), Some(old)) => old.bind == *bind,
            _ => false,
        };
        if !admin_kept {
            if let Some(old) = admin.take() {
                tokio::spawn(old.stop());
            }
        }
        if let Some((bind, socket)) = new_admin_socket {
            match Admin::spawn(bind, socket, self.shared.clone()) {
                Ok(a) => {
                    tracing::info!(addr = %a.local_addr, "admin listening");
                    *admin = Some(a);
                }
                Err(e) => tracing::error!(error = %e, "cannot start the admin listener"),
            }
        }
        Ok(())
    }
}
