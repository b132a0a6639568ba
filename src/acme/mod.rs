//! Certificates obtained and renewed automatically (ACME, RFC 8555): a
//! background task per process that keeps a certificate for every name in
//! the listeners' `acme_domains`.
//!
//! At start it serves what `state_dir` kept from earlier runs; a name
//! without a certificate, or whose certificate is within `renew_before` of
//! its expiry, gets a new one (`obtain`). A failure is logged, counted
//! (`sluice_acme_renewals_total{result="failure"}`) and tried again after
//! a backoff (30 s, doubling up to an hour) while the old certificate, if
//! any, keeps serving: nothing that serves waits on this task. A reload
//! wakes it, so new names are obtained at once.

pub mod obtain;

use crate::certstore::store;
use crate::snapshot::Shared;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;

const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// The longest the task sleeps: it looks again at least this often.
const LOOK_EVERY: Duration = Duration::from_secs(3600);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A name's retry state after failures.
struct Retry {
    at: Instant,
    backoff: Duration,
}

/// Runs until the `Shared` it serves is gone; `wake` makes it look again
/// at once (after a reload).
pub async fn run(shared: Weak<Shared>, wake: Arc<Notify>) {
    let mut retries: HashMap<String, Retry> = HashMap::new();
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let snap = strong.snapshot();
        let metrics = strong.metrics.acme_renewals.clone();
        drop(strong);
        let mut sleep = LOOK_EVERY;
        if let Some(acme) = &snap.config.acme {
            let names: BTreeSet<&String> = snap
                .config
                .listeners
                .iter()
                .flat_map(|l| &l.acme_domains)
                .collect();
            for name in names {
                if store().cert(name).is_none() {
                    if let Some(kept) = obtain::load_kept(&acme.state_dir, name) {
                        store().install(name, kept);
                    }
                }
                let renew_at = store()
                    .cert(name)
                    .map(|c| c.not_after - acme.renew_before.as_secs() as i64);
                let now = unix_now();
                if let Some(at) = renew_at.filter(|at| *at > now) {
                    sleep = sleep.min(Duration::from_secs((at - now) as u64));
                    continue;
                }
                if let Some(r) = retries.get(name.as_str()) {
                    if r.at > Instant::now() {
                        sleep = sleep.min(r.at - Instant::now());
                        continue;
                    }
                }
                tracing::info!(name = %name, renewal = renew_at.is_some(), "obtaining a certificate (ACME)");
                match obtain::obtain(acme, name).await {
                    Ok(not_after) => {
                        metrics.with_label_values(&["success"]).inc();
                        retries.remove(name.as_str());
                        tracing::info!(name = %name, not_after, "certificate obtained (ACME)");
                        let at = not_after - acme.renew_before.as_secs() as i64 - unix_now();
                        sleep = sleep.min(Duration::from_secs(at.max(60) as u64));
                    }
                    Err(e) => {
                        metrics.with_label_values(&["failure"]).inc();
                        let backoff = retries
                            .get(name.as_str())
                            .map_or(FIRST_BACKOFF, |r| (r.backoff * 2).min(MAX_BACKOFF));
                        tracing::warn!(name = %name, error = %e, retry_in = ?backoff, "could not obtain a certificate (ACME); what is served stays");
                        retries.insert(
                            name.clone(),
                            Retry {
                                at: Instant::now() + backoff,
                                backoff,
                            },
                        );
                        sleep = sleep.min(backoff);
                    }
                }
            }
        }
        drop(snap);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
        }
    }
}
