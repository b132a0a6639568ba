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
    /// Keep the current process id in FILE (after a binary upgrade, the new
    /// process's).
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
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
        None => run(&cli.config, cli.pid_file.as_deref()),
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

/// Adopts the listening sockets a previous sluice handed over on SIGUSR2
/// (see `sluice::upgrade`), and forgets the variable so that nothing else
/// reads it again.
fn adopt_inherited_sockets() {
    use std::os::fd::FromRawFd;
    let Some(text) = std::env::var_os(sluice::upgrade::FDS_ENV) else {
        return;
    };
    std::env::remove_var(sluice::upgrade::FDS_ENV);
    let mut sockets = Vec::new();
    for (fd, key) in sluice::upgrade::parse_fds(&text.to_string_lossy()) {
        // SAFETY: the previous process listed these descriptors as the
        // listening sockets it let this process inherit (close-on-exec
        // cleared for this one exec), nothing in this process has opened
        // or adopted them yet (this runs first, once, before any thread),
        // and each is owned from here on by exactly one TcpListener.
        let socket = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        // Anything but a listening TCP socket is refused (and closed).
        match socket
            .local_addr()
            .and_then(|_| socket.set_nonblocking(true))
        {
            Ok(()) => sockets.push((key, socket)),
            Err(e) => eprintln!("sluice: inherited descriptor {fd} ({key}) is unusable: {e}"),
        }
    }
    sluice::upgrade::adopt(sockets);
}

/// Writes this process's id to the pid file: to a temporary file renamed
/// over it, so a reader never finds it empty or half written.
fn write_pid(file: &Path) {
    let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
    let written = std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::error!(file = %file.display(), error = %e, "cannot write the pid file");
    }
}

/// Removes the pid file, unless another process (the upgraded one) has
/// written its own id there since.
fn remove_pid(file: &Path) {
    let ours =
        std::fs::read_to_string(file).is_ok_and(|t| t.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(file);
    }
}

fn run(path: &Path, pid_file: Option<&Path>) -> ExitCode {
    adopt_inherited_sockets();
    // Read and cleared before any other thread runs: started by an upgrade,
    // the previous process waits to hear from this one here.
    let predecessor = std::env::var_os(sluice::upgrade::READY_ENV);
    std::env::remove_var(sluice::upgrade::READY_ENV);
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
        let unused = sluice::upgrade::release_unused();
        if unused > 0 {
            tracing::info!(sockets = unused, "closed handed-over sockets the config no longer uses");
        }
        // Started by an upgrade: the old process drains once it hears this.
        let upgraded = predecessor.is_some();
        // Once the signal handlers exist: whoever reads the pid file may
        // signal this process at once.
        let ready = || {
            if let Some(f) = pid_file {
                write_pid(f);
            }
            if let Some(name) = &predecessor {
                if let Err(e) = sluice::upgrade::tell_predecessor(name) {
                    tracing::error!(error = %e, "cannot tell the previous process that this one serves");
                }
            }
            sluice::upgrade::notify::ready(upgraded);
            tracing::info!(pid = std::process::id(), upgraded, "serving");
        };
        sluice::serve_signals(&sluice, path, grace, ready).await;
        if let Some(f) = pid_file {
            remove_pid(f);
        }
        ExitCode::SUCCESS
    })
}
