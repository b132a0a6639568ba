//! Process lifecycle through the real binary: SIGTERM drains in-flight
//! requests and exits 0.

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
            "[runtime]\nshutdown_grace = \"10s\"\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n[log]\nformat = \"text\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
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
