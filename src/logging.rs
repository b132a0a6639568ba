//! Process logging: JSON lines (default) or text on stdout, with the access
//! log as target `sluice::access` at info, kept on whatever `log.level` is
//! when `log.access_log` is true. `RUST_LOG`, when set, overrides the filter.
//!
//! The filter and the format are one layer behind a reload handle, so a
//! reload that changes `log.level`, `log.format` or `log.access_log`
//! applies to the next line logged.

use crate::config::{LogConfig, LogFormat};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

static HANDLE: OnceLock<reload::Handle<Boxed, Registry>> = OnceLock::new();

/// Colour only on a terminal, and not when `NO_COLOR` is set
/// (<https://no-color.org>): a file or a pipe gets plain text.
fn colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn layer(log: &LogConfig) -> Boxed {
    let access = if log.access_log { "info" } else { "off" };
    let directives = format!(
        "{},{}={access}",
        log.level,
        crate::proxy::completion::TARGET
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let fmt = tracing_subscriber::fmt::layer().with_target(true);
    match log.format {
        LogFormat::Json => filter
            .and_then(fmt.json().flatten_event(true).with_current_span(false))
            .boxed(),
        LogFormat::Text => filter.and_then(fmt.with_ansi(colour())).boxed(),
    }
}

pub fn init(log: &LogConfig) {
    let (layer, handle) = reload::Layer::new(layer(log));
    // A second init (tests, demo after a failed start) keeps the first.
    if tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .is_ok()
    {
        let _ = HANDLE.set(handle);
    }
}

/// Applies a reloaded `[log]` (a no-op where `init` did not run, as in
/// tests that drive the library).
pub fn apply(log: &LogConfig) {
    if let Some(h) = HANDLE.get() {
        if let Err(e) = h.reload(layer(log)) {
            tracing::error!(error = %e, "cannot apply the new [log] settings");
        }
    }
}
