//! Zero-downtime binary upgrade (SIGUSR2), as nginx's USR2 and HAProxy's
//! master re-exec: the running process starts the executable at its own
//! path again, with the same arguments, handing it every listening socket;
//! the new process binds nothing that it was handed, says when it serves,
//! and the old one then drains and exits.
//!
//! Handover, in the environment of the new process:
//! - `SLUICE_INHERITED_FDS`: one `FD=KEY` per line, KEY being
//!   `NAME@BIND` of a listener (`admin@BIND` for the admin listener); the
//!   sockets are the very ones the old process accepts on (same kernel
//!   socket, same queue), so no connection is refused in between.
//! - `SLUICE_UPGRADE_READY`: an abstract Unix socket name the old process
//!   listens on; the new one connects and writes its pid once its
//!   listeners serve. If it exits first, or says nothing in
//!   `READY_TIMEOUT`, the upgrade failed and the old process serves on.
//!
//! Adopting an inherited descriptor needs `unsafe` (`FromRawFd`), which
//! this library forbids; the binary does it (`main.rs`) and hands the
//! sockets in through `adopt`.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncReadExt;

pub const FDS_ENV: &str = "SLUICE_INHERITED_FDS";
pub const READY_ENV: &str = "SLUICE_UPGRADE_READY";

/// How long the new process has to start serving.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The handover key of a listener's sockets.
pub fn key(name: &str, bind: SocketAddr) -> String {
    format!("{name}@{bind}")
}

/// `SLUICE_INHERITED_FDS` parsed: (fd, key) pairs; malformed lines are
/// skipped (they name nothing this process can use).
pub fn parse_fds(text: &str) -> Vec<(RawFd, String)> {
    text.lines()
        .filter_map(|l| {
            let (fd, key) = l.split_once('=')?;
            Some((
                fd.trim().parse().ok().filter(|&fd| fd > 2)?,
                key.to_string(),
            ))
        })
        .collect()
}

/// Sockets handed over by the previous process, by key, until taken.
static INHERITED: Mutex<Vec<(String, std::net::TcpListener)>> = Mutex::new(Vec::new());

/// Makes inherited sockets available to `take` (called by the binary
/// before it starts).
pub fn adopt(sockets: Vec<(String, std::net::TcpListener)>) {
    let mut all = INHERITED.lock().unwrap_or_else(|p| p.into_inner());
    all.extend(sockets);
}

/// Up to `n` inherited sockets of listener `name` at `bind`: by name and
/// bind, or by bind alone when the port is fixed (a listener renamed in
/// the same change). Empty when nothing was handed over for it.
pub fn take(name: &str, bind: SocketAddr, n: usize) -> Vec<std::net::TcpListener> {
    let mut all = INHERITED.lock().unwrap_or_else(|p| p.into_inner());
    let wanted = key(name, bind);
    let by_bind = format!("@{bind}");
    let matches = |k: &str| k == wanted || (bind.port() != 0 && k.ends_with(&by_bind));
    let mut out = Vec::new();
    let mut i = 0;
    while i < all.len() && out.len() < n {
        if matches(&all[i].0) {
            out.push(all.remove(i).1);
        } else {
            i += 1;
        }
    }
    out
}

/// Closes what no listener of the new config took (a listener the new
/// binary's config dropped).
pub fn release_unused() -> usize {
    let mut all = INHERITED.lock().unwrap_or_else(|p| p.into_inner());
    let n = all.len();
    all.clear();
    n
}

/// Why an upgrade did not happen.
#[derive(Debug)]
pub enum UpgradeError {
    Spawn(std::io::Error),
    Exited(std::process::ExitStatus),
    TimedOut,
}

impl std::fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpgradeError::Spawn(e) => write!(f, "cannot start the new binary: {e}"),
            UpgradeError::Exited(s) => write!(
                f,
                "the new process exited before it served ({s}); see its log lines above"
            ),
            UpgradeError::TimedOut => write!(
                f,
                "the new process did not start serving within {} s and was killed",
                READY_TIMEOUT.as_secs()
            ),
        }
    }
}

/// The executable to start: this process's path, which names the new
/// binary when the file was replaced (Linux reports a replaced executable
/// as "PATH (deleted)").
fn executable() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => path.into(),
        None => exe,
    })
}

/// Starts the successor with `sockets` (key, socket) and waits until it
/// serves. Returns its pid.
pub async fn start_successor(
    sockets: &[(String, &std::net::TcpListener)],
) -> Result<u32, UpgradeError> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "sluice-upgrade-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let ready = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .and_then(|a| std::os::unix::net::UnixListener::bind_addr(&a))
        .and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(l)
        })
        .map_err(UpgradeError::Spawn)?;
    let mut fds = String::new();
    for (key, s) in sockets {
        fds.push_str(&format!("{}={key}\n", s.as_raw_fd()));
    }
    // The sockets are inherited only by this one spawn: close-on-exec is
    // cleared just for it and set again right after.
    let cloexec = |on: bool| {
        for (_, s) in sockets {
            if let Err(e) = socket2::SockRef::from(&s.as_fd()).set_cloexec(on) {
                tracing::warn!(error = %e, "cannot change close-on-exec of a listening socket");
            }
        }
    };
    cloexec(false);
    let spawned = executable().and_then(|exe| {
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(FDS_ENV, &fds)
            .env(READY_ENV, &name)
            .spawn()
    });
    cloexec(true);
    let mut child = spawned.map_err(UpgradeError::Spawn)?;
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            accepted = ready.accept() => {
                if let Ok((mut s, _)) = accepted {
                    let mut said = String::new();
                    let read = tokio::time::timeout(
                        Duration::from_secs(5),
                        s.read_to_string(&mut said),
                    ).await;
                    if matches!(read, Ok(Ok(_))) && said.trim() == pid.to_string() {
                        // Reaped by whoever is its parent after this one
                        // exits (init, or the service manager).
                        drop(child);
                        return Ok(pid);
                    }
                }
            }
            _ = tick.tick() => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(UpgradeError::Exited(status));
                }
                if tokio::time::Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(UpgradeError::TimedOut);
                }
            }
        }
    }
}

/// In a process started by an upgrade: tells the old process, waiting at
/// `name` (the value of `READY_ENV`), that this one serves.
pub fn tell_predecessor(name: &std::ffi::OsStr) -> std::io::Result<()> {
    use std::io::Write;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_encoded_bytes())?;
    let mut s = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    s.write_all(std::process::id().to_string().as_bytes())
}

/// The service manager's notifications (`NOTIFY_SOCKET`; nothing happens
/// without it). Failures are logged, never fatal.
pub mod notify {
    use sd_notify::NotifyState;

    fn send(states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// Listeners are bound and serving. After an upgrade, also the new
    /// main pid (the unit needs `NotifyAccess=all` to take it from us).
    pub fn ready(upgraded: bool) {
        let pid = std::process::id();
        if upgraded {
            send(&[NotifyState::MainPid(pid), NotifyState::Ready]);
        } else {
            send(&[NotifyState::Ready]);
        }
    }

    pub fn reloading() {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    pub fn reloaded() {
        send(&[NotifyState::Ready]);
    }

    pub fn stopping() {
        send(&[NotifyState::Stopping]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handover_list_is_parsed_and_bad_lines_skipped() {
        let got = parse_fds("5=public@127.0.0.1:8080\n6=admin@[::1]:9901\nx=y\n1=stdout@a\n7\n");
        assert_eq!(
            got,
            vec![
                (5, "public@127.0.0.1:8080".to_string()),
                (6, "admin@[::1]:9901".to_string())
            ]
        );
    }

    #[test]
    fn sockets_are_taken_by_name_and_bind_or_by_a_fixed_bind() {
        let l = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fixed: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
        adopt(vec![
            (key("up-a", zero), l()),
            (key("up-a", zero), l()),
            (key("up-old", fixed), l()),
        ]);
        assert_eq!(
            take("up-b", zero, 2).len(),
            0,
            "port 0 matches by name only"
        );
        assert_eq!(take("up-a", zero, 1).len(), 1);
        assert_eq!(take("up-renamed", fixed, 4).len(), 1);
        assert_eq!(release_unused(), 1);
    }
}
