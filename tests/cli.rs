//! The command line, as a user types it: --check, --version, --help, demo.

mod support;
use std::process::Command;
use support::*;

fn sluice_cmd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sluice.toml");
    let (code, out) = sluice_cmd(&["--check", "--config", example]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "one-line summary expected: {out}");
    assert!(
        out.contains("config ok: 2 listener(s), 4 route(s), 3 pool(s), 6 backend(s)"),
        "{out}"
    );
}

#[test]
fn check_lists_every_error_with_its_key_path() {
    let path = temp_file(
        "bad.toml",
        r#"
[[listener]]
name = "public"
bind = "0.0.0.0:8080"
max_conections = 5
[[route]]
pool = "api"
[[route]]
pool = "nope"
[pool.api]
strategy = "fastest"
request_timeout = "30"
backends = [{ addr = "127.0.0.1:9001" }, { addr = "10.0.0.1" }, { addr = "127.0.0.1:9002", weight = 0 }]
"#,
    );
    let (code, out) = sluice_cmd(&["--check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "listener[0].max_conections: unknown key",
        "route[1].pool: unknown pool \"nope\"",
        "pool.api.strategy: unknown strategy \"fastest\"",
        "pool.api.request_timeout: invalid duration \"30\"",
        "pool.api.backends[1].addr: invalid socket address \"10.0.0.1\"",
        "pool.api.backends[2].weight: must be between 1 and 256, got 0",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(out.lines().count(), 6, "{out}");

    let (code, out) = sluice_cmd(&["--check", "--config", "/no/such/file.toml"]);
    assert_eq!(code, 1);
    assert!(out.contains("cannot read /no/such/file.toml"), "{out}");
    let syntax = temp_file("syntax.toml", "[[listener]\nname = 1\n");
    let (code, out) = sluice_cmd(&["--check", "--config", syntax.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("line 1"),
        "a syntax error names its line: {out}"
    );
}

#[test]
fn version_and_help() {
    let (code, out) = sluice_cmd(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("sluice {}", env!("CARGO_PKG_VERSION")));
    let (code, out) = sluice_cmd(&["--help"]);
    assert_eq!(code, 0);
    for word in ["--config", "--check", "demo"] {
        assert!(out.contains(word), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_and_stops_on_sigterm() {
    let (p, a) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{p}");
    let admin = format!("127.0.0.1:{a}");
    let mut child = Child::spawn(&["demo", "--listen", &listen, "--admin", &admin]);
    let addr = listen.parse().unwrap();
    let first = wait_until_serving(addr, "/", 20).await;
    assert!(first.body.contains("backend"), "{}", first.body);
    let c = client();
    let mut bodies = std::collections::HashSet::new();
    for _ in 0..30 {
        let got = get(&c, addr, "localhost", "/").await;
        assert!(
            got.status == 200 || got.status == 500 || got.status == 429 || got.status == 503,
            "{}",
            got.status
        );
        bodies.insert(got.body.split(' ').take(4).collect::<Vec<_>>().join(" "));
    }
    assert!(
        bodies.len() >= 2,
        "the demo should spread traffic: {bodies:?}"
    );
    child.signal("TERM");
    assert_eq!(child.wait_exit(15).await, Some(0));
}
