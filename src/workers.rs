//! Worker threads, the nginx way: `worker_threads = N` (N > 1) runs N
//! single-threaded tokio runtimes, each on its own thread, with no work
//! stealing between them. Each accepts on its own SO_REUSEPORT socket of
//! every listener (`server::listener`) and serves the connections it
//! accepted start to finish: a request's task, its buffers and its backend
//! connections stay on one thread. The workers share the config snapshot
//! and the per-backend state (atomics and short locks); the control work
//! (signals, reload, health checks, the admin listener) stays on the
//! runtime that started sluice.
//!
//! With one worker (`worker_threads = 1`, or 0 on a one-CPU machine) there
//! are no extra threads: listeners run on the starting runtime, which
//! should then be a current-thread one (as `main` makes it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::runtime::Handle;

/// How many workers `worker_threads` means on this machine.
pub fn count(worker_threads: usize) -> usize {
    match worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Running worker runtimes; they stop when this is dropped.
pub struct Workers {
    handles: Vec<Handle>,
    /// Dropped to stop the worker threads.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
    started: Arc<Vec<AtomicU64>>,
}

impl Workers {
    /// Starts `n` worker threads, or none when `n` is 1 (the current
    /// runtime serves).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        crate::backend::conns::set_workers(n);
        if n <= 1 {
            return Ok(Workers {
                handles: vec![Handle::current()],
                _stop: Vec::new(),
                started: Arc::new(vec![AtomicU64::new(0)]),
            });
        }
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stops.push(tx);
            std::thread::Builder::new()
                .name(format!("sluice-worker-{i}"))
                .spawn(move || {
                    crate::backend::conns::set_worker(i);
                    // Runs until the sender is dropped; dropping the
                    // runtime then ends the tasks still on it.
                    rt.block_on(async move {
                        let _ = rx.await;
                    });
                })?;
        }
        Ok(Workers {
            handles,
            _stop: stops,
            started: Arc::new((0..n).map(|_| AtomicU64::new(0)).collect()),
        })
    }

    /// The runtimes listeners run on, one per worker.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// How many workers serve.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Worker `i`'s count of accepted connections.
    pub fn counter(&self, i: usize) -> Counter {
        Counter(self.started.clone(), i)
    }

    /// Connections accepted per worker so far.
    pub fn accepted_counts(&self) -> Vec<u64> {
        self.started
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// Counts the connections one worker accepted (diagnostics: tests check
/// that every worker serves).
pub struct Counter(Arc<Vec<AtomicU64>>, usize);

impl Counter {
    pub fn add(&self) {
        if let Some(c) = self.0.get(self.1) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}
