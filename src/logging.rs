//! Process logging: JSON lines (default) or text on stdout, with the access
//! log as target `sluice::access` at info, kept on whatever `log.level` is
//! when `log.access_log` is true. `RUST_LOG`, when set, overrides the filter.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(log: &LogConfig) {
    let directives = if log.access_log {
        format!("{},{}=info", log.level, crate::proxy::completion::TARGET)
    } else {
        format!("{},{}=off", log.level, crate::proxy::completion::TARGET)
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // A second init (tests, demo after a failed start) keeps the first.
    let _already_set = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
