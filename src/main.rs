//! The `sluice` binary: command line -> config -> logging -> runtime -> run.

/// jemalloc, chosen by measurement (`benches/burst.sh`, README "Resources"):
/// after a burst of 10,000 requests in flight, glibc's malloc kept all of
/// the peak (167 MiB, 26x the idle RSS) and mimalloc idled at twice
/// jemalloc's RSS. A background thread returns freed memory after a second
/// (`dirty_decay_ms`), without waiting for the next allocation.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

use clap::{Parser, Subcommand};
use sluice::Sluice;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "An edge reverse proxy and HTTP load balancer"
)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        default_value = "config/sluice.toml"
    )]
    config: PathBuf,
    /// Validate the config (and its certificate files) and exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start three local demo backends and a proxy in front of them.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the demo's admin listener listens.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Demo { listen, admin }) => demo(listen, admin),
        None if cli.check => check(&cli.config),
        None => run(&cli.config),
    }
}

fn check(path: &Path) -> ExitCode {
    match sluice::load_config(path) {
        Ok((config, _)) => {
            for w in &config.warnings {
                println!("{}: warning: {w}", path.display());
            }
            println!("{}: {}", path.display(), config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{}: {e}", path.display());
            }
            ExitCode::FAILURE
        }
    }
}

/// The main thread's runtime: tokio's single-threaded scheduler. With one
/// worker it serves the traffic too (no work-stealing machinery, no
/// handoff between threads); with more, `Sluice::start` starts one
/// single-threaded runtime per worker thread and this one keeps the
/// control work (signals, reload, health checks, admin).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn demo(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(sluice::demo::run(listen, admin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> ExitCode {
    let (config, files) = match sluice::load_config(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{}: {e}", path.display());
            }
            return ExitCode::FAILURE;
        }
    };
    sluice::logging::init(&config.log);
    for w in &config.warnings {
        tracing::warn!(file = %path.display(), warning = %w, "config warning");
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let grace = config.runtime.shutdown_grace;
        let sluice = match Sluice::start_with(config, files).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("sluice: {e}");
                return ExitCode::FAILURE;
            }
        };
        sluice::serve_signals(&sluice, path, grace).await;
        ExitCode::SUCCESS
    })
}
