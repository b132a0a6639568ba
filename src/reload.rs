//! Applying a new config to a running sluice: bind what is new, publish the
//! new snapshot with one atomic store, then drain what was removed.
//!
//! Binding comes first so that a reload that cannot bind a new port fails
//! whole and changes nothing. Listeners whose bind is unchanged keep their
//! sockets (and their connections); the snapshot they read changes.

use crate::config::Config;
use crate::runtime::Snapshot;
use crate::server::{self, Listener};
use crate::{BindError, Sluice};

impl Sluice {
    /// Swaps in `config`. On error nothing has changed.
    pub async fn reload(&self, config: Config) -> Result<(), BindError> {
        let mut listeners = self.listeners.lock().await;
        // 1. Bind the listeners that are new (by name and bind address).
        let mut fresh = Vec::new();
        for l in &config.listeners {
            let kept = listeners
                .iter()
                .any(|old| old.name == l.name && old.bind == l.bind);
            if !kept {
                let socket = server::bind(l.bind).map_err(|source| BindError {
                    listener: l.name.clone(),
                    addr: l.bind,
                    source,
                })?;
                fresh.push((l.name.clone(), l.bind, socket));
            }
        }
        // 2. Publish: from here on new requests see the new config.
        let previous = self.shared.snapshot();
        let keep: Vec<(String, std::net::SocketAddr)> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.bind))
            .collect();
        self.shared
            .publish(Snapshot::build(config, Some(&previous)));
        // 3. Start the new listeners, drain the removed ones.
        let (kept, removed): (Vec<Listener>, Vec<Listener>) = std::mem::take(&mut *listeners)
            .into_iter()
            .partition(|l| keep.iter().any(|(n, b)| *n == l.name && *b == l.bind));
        *listeners = kept;
        for (name, bind, socket) in fresh {
            match Listener::spawn(&name, bind, socket, self.shared.clone()) {
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
        Ok(())
    }
}
