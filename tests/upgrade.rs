//! The process lifecycle on real processes: a SIGUSR2 binary upgrade under
//! keep-alive and `Connection: close` load (counting every failure), an
//! upgrade whose new process fails, `--pid-file`, and the service manager's
//! notifications (`NOTIFY_SOCKET`) in order.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixDatagram;

fn config(public: u16, admin: u16, backend: SocketAddr) -> String {
    format!(
        "[runtime]\nshutdown_grace = \"5s\"\n[admin]\nbind = \"127.0.0.1:{admin}\"\n\
         [log]\nlevel = \"info\"\naccess_log = false\n\
         [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{public}\"\n\
         [[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n"
    )
}

/// A sluice process with its own copy of the binary (so the test can
/// replace the file under it), a pid file and a notify socket.
struct Proc {
    child: std::process::Child,
    dir: PathBuf,
    pid_file: PathBuf,
    notify: UnixDatagram,
}

impl Proc {
    fn start(dir: &Path, config_text: &str) -> Proc {
        std::fs::create_dir_all(dir).unwrap();
        let exe = dir.join("sluice");
        std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &exe).unwrap();
        let config = dir.join("sluice.toml");
        std::fs::write(&config, config_text).unwrap();
        let pid_file = dir.join("sluice.pid");
        let socket = dir.join("notify.sock");
        let _ = std::fs::remove_file(&socket);
        let notify = UnixDatagram::bind(&socket).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = std::process::Command::new(&exe)
            .args([
                "--config",
                config.to_str().unwrap(),
                "--pid-file",
                pid_file.to_str().unwrap(),
            ])
            .env("NOTIFY_SOCKET", &socket)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc {
            child,
            dir: dir.to_path_buf(),
            pid_file,
            notify,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The next notification, within `secs`.
    async fn next_notification(&self, secs: u64) -> String {
        let mut buf = vec![0u8; 4096];
        let n = within(secs, self.notify.recv(&mut buf)).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn pid_in_file(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

fn kill(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// Whether process `pid` exists (and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    refused: AtomicUsize,
    failed: AtomicUsize,
}

/// One `Connection: close` request on a new connection.
async fn close_request(addr: SocketAddr) -> Result<(), bool> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|_| true)?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|_| false)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.map_err(|_| false)?;
    if out.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(false)
    }
}

/// Keep-alive and Connection: close clients sending until `stop`.
fn load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (stop, counts) = (stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            // Each keep-alive client has its own pool of one connection.
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let outcome = if i < 8 {
                    let r = tokio::time::timeout(
                        Duration::from_secs(5),
                        c.request(
                            http::Request::get(format!("http://{addr}/"))
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap(),
                        ),
                    )
                    .await;
                    match r {
                        Ok(Ok(resp)) if resp.status() == 200 => {
                            use http_body_util::BodyExt;
                            resp.into_body()
                                .collect()
                                .await
                                .map(|_| ())
                                .map_err(|_| false)
                        }
                        Ok(Err(e)) if e.is_connect() => Err(true),
                        _ => Err(false),
                    }
                } else {
                    close_request(addr).await
                };
                match outcome {
                    Ok(()) => counts.ok.fetch_add(1, Ordering::Relaxed),
                    Err(true) => counts.refused.fetch_add(1, Ordering::Relaxed),
                    Err(false) => counts.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_hands_the_sockets_to_the_new_binary_under_load_without_a_failure() {
    let backend = Backend::start("b").await;
    let (public, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sluice-upgrade-{}", std::process::id()));
    let mut old = Proc::start(&dir, &config(public, admin, backend.addr));
    let first = old.next_notification(20).await;
    assert_eq!(first.trim(), "READY=1", "{}", old.log());
    let old_pid = old.child.id();
    assert_eq!(old.pid_in_file(), Some(old_pid));
    let addr: SocketAddr = ([127, 0, 0, 1], public).into();

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let tasks = load(addr, stop.clone(), counts.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = counts.ok.load(Ordering::Relaxed);
    assert!(before > 20, "the load runs: {before}");

    // Replace the binary file under the running process (as a package
    // upgrade does: a new file renamed over the old path).
    let exe = dir.join("sluice");
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), dir.join("sluice.new")).unwrap();
    std::fs::rename(dir.join("sluice.new"), &exe).unwrap();

    kill(old_pid, "USR2");
    // The new process says MAINPID and READY, and takes the pid file.
    let said = old.next_notification(30).await;
    let new_pid: u32 = said
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no MAINPID in {said:?}\n{}", old.log()));
    assert!(said.contains("READY=1"), "{said}");
    assert_ne!(new_pid, old_pid);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while old.pid_in_file() != Some(new_pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pid file never named the new process"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The old process drains and exits 0; the new one runs the new file.
    let exited = within(20, async {
        loop {
            if let Some(s) = old.child.try_wait().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(exited.code(), Some(0), "{}", old.log());
    let exe_of_new = std::fs::read_link(format!("/proc/{new_pid}/exe")).unwrap();
    assert_eq!(exe_of_new, exe, "the new process runs the replaced file");
    // Load goes on against the new process alone.
    let at_exit = counts.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = within(10, t).await;
    }
    let (ok, refused, failed) = (
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    println!("upgrade under load: {ok} ok, {refused} refused, {failed} failed");
    assert!(ok > at_exit + 20, "the new process serves the load");
    assert_eq!(refused, 0, "no connection refused during the upgrade");
    assert_eq!(failed, 0, "no request failed during the upgrade");
    // The new process counts nothing yet; SIGTERM ends it and its pid file.
    kill(new_pid, "TERM");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alive(new_pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !old.pid_file.exists(),
        "the pid file is removed by the process it names"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_leaves_the_old_process_serving_and_notifications_come_in_order() {
    let backend = Backend::start("b").await;
    let (public, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sluice-upgrade-fail-{}", std::process::id()));
    let mut p = Proc::start(&dir, &config(public, admin, backend.addr));
    assert_eq!(
        p.next_notification(20).await.trim(),
        "READY=1",
        "{}",
        p.log()
    );
    let pid = p.child.id();
    let addr: SocketAddr = ([127, 0, 0, 1], public).into();
    // Reload: RELOADING=1 with the monotonic time, then READY=1.
    kill(pid, "HUP");
    let reloading = p.next_notification(10).await;
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(p.next_notification(10).await.trim(), "READY=1");

    // The new process cannot start: its config is broken now.
    std::fs::write(dir.join("sluice.toml"), "[[listener]]\nname = 1\n").unwrap();
    kill(pid, "USR2");
    let admin_addr: SocketAddr = ([127, 0, 0, 1], admin).into();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = get(&client(), admin_addr, "x", "/metrics").await.body;
        if m.contains("sluice_upgrades_total{result=\"failure\"} 1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed upgrade counted:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.log().contains("upgrade failed"), "{}", p.log());
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "the old process serves on"
    );
    assert_eq!(p.pid_in_file(), Some(pid));
    assert_eq!(get(&client(), addr, "x", "/").await.status, 200);
    // SIGTERM: STOPPING=1, drain, exit 0, pid file gone.
    kill(pid, "TERM");
    assert_eq!(p.next_notification(10).await.trim(), "STOPPING=1");
    let code = within(15, async {
        loop {
            if let Some(s) = p.child.try_wait().unwrap() {
                return s.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(code, Some(0));
    assert!(!p.pid_file.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_and_format_change_on_reload_and_text_has_no_colour_in_a_file() {
    let backend = Backend::start("b").await;
    let (public, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sluice-logs-{}", std::process::id()));
    let text = config(public, admin, backend.addr).replace("level = \"info\"", "level = \"warn\"");
    let p = Proc::start(&dir, &text);
    assert_eq!(
        p.next_notification(20).await.trim(),
        "READY=1",
        "{}",
        p.log()
    );
    assert!(
        !p.log().contains("\"level\":\"INFO\""),
        "warn hides info: {}",
        p.log()
    );
    // Reload into text at info.
    let reloaded = text.replace("level = \"warn\"", "level = \"info\"\nformat = \"text\"");
    std::fs::write(dir.join("sluice.toml"), reloaded).unwrap();
    kill(p.child.id(), "HUP");
    assert!(p.next_notification(10).await.starts_with("RELOADING=1"));
    assert_eq!(p.next_notification(10).await.trim(), "READY=1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = p.log();
        if let Some(line) = log.lines().find(|l| l.contains("config reloaded")) {
            assert!(!line.starts_with('{'), "text, not JSON: {line}");
            assert!(line.contains("INFO"), "{line}");
            assert!(
                !line.contains('\x1b'),
                "no colour codes in a file: {line:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload line at info:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(p.child.id(), "TERM");
    let _ = std::fs::remove_dir_all(&dir);
}
