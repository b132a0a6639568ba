//! Process lifecycle through the real binary: SIGTERM drains in-flight
//! requests and exits 0. The signal tests run sluice with one worker thread,
//! i.e. on tokio's single-threaded scheduler, where signals, reload and
//! drain share the one thread with the traffic.

mod support;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let b = Backend::start("slow").await;
    b.set_delay(Duration::from_millis(1500));
    let port = free_port();
    let admin_port = free_port();
    let path = temp_file(
        "sluice.toml",
        &format!(
            "[runtime]\nshutdown_grace = \"10s\"\nworker_threads = 1\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n[log]\nformat = \"text\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
            b.addr
        ),
    );
    let mut child = Child::spawn(&["--config", path.to_str().unwrap()]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    b.set_delay(Duration::ZERO);
    wait_until_serving(addr, "/", 20).await;
    b.set_delay(Duration::from_millis(1500));
    let before = b.requests();
    let c = client();
    let slow = tokio::spawn(async move { get(&c, addr, "a", "/").await });
    eventually(10, || b.requests() > before).await;
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    assert_eq!(get(&client(), admin, "x", "/readyz").await.status, 200);
    child.signal("TERM");
    // Draining: not ready, while the slow request is still in flight.
    eventually(5, || std::net::TcpStream::connect(addr).is_err()).await;
    let ready = get(&client(), admin, "x", "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "draining\n"));
    let got = within(10, slow).await.unwrap();
    assert_eq!(
        got.status, 200,
        "the in-flight request must finish: {}",
        got.body
    );
    assert_eq!(got.body, "slow");
    assert_eq!(child.wait_exit(10).await, Some(0));
    // And the port is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_is_one_json_line_per_request() {
    let b = Backend::start("b").await;
    let port = free_port();
    let path = temp_file(
        "sluice.toml",
        &format!(
            "[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\n[[route]]\npath_prefix = \"/app\"\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
            b.addr
        ),
    );
    let mut child = Child::spawn(&["--config", path.to_str().unwrap()]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until_serving(addr, "/warmup", 20).await;
    let req = http::Request::get(format!("http://{addr}/app/items?x=1"))
        .header("host", "shop.example")
        .header("x-request-id", "log-test-1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(&client(), req).await.status, 200);
    child.signal("TERM");
    assert_eq!(child.wait_exit(10).await, Some(0));
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let line = out
        .lines()
        .find(|l| l.contains("log-test-1"))
        .unwrap_or_else(|| panic!("no access log line in:\n{out}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("the line is JSON");
    assert_eq!(v["target"], "sluice::access");
    assert!(v["timestamp"].as_str().unwrap().starts_with("20"), "{v}");
    assert_eq!(v["request_id"], "log-test-1");
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["host"], "shop.example");
    assert_eq!(v["path"], "/app/items");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 1, "the backend's body is its name, \"b\"");
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["route"], "p");
    assert_eq!(v["pool"], "p");
    assert_eq!(v["backend"], b.addr.to_string());
    assert_eq!(v["listener"], "public");
    // The warm-up request matched no route: logged too, as a 404.
    assert!(
        out.lines()
            .any(|l| l.contains("\"path\":\"/warmup\"") && l.contains("\"status\":404")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_and_a_bad_file_changes_nothing() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let port = free_port();
    let text = |backend: &Backend, extra: &str| {
        format!(
            "[runtime]\nworker_threads = 1\n[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n{extra}",
            backend.addr
        )
    };
    let path = temp_file("sluice.toml", &text(&a, ""));
    let mut child = Child::spawn(&["--config", path.to_str().unwrap()]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(wait_until_serving(addr, "/", 20).await.body, "A");
    // A broken file: SIGHUP changes nothing.
    std::fs::write(&path, "[[listener]]\nbind = 5\n").unwrap();
    child.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&client(), addr, "x", "/").await.body, "A");
    // A good one: the new backend serves, on the same socket.
    std::fs::write(&path, text(&b, "")).unwrap();
    child.signal("HUP");
    let c = client();
    within(10, async {
        while get(&c, addr, "x", "/").await.body != "B" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    child.signal("TERM");
    assert_eq!(child.wait_exit(10).await, Some(0));
}
