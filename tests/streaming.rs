//! Bodies stream both ways: a transfer far larger than any buffer passes
//! through sluice with flat memory. One test in this file, so that the
//! process's peak RSS is this transfer's alone.

mod support;
use bytes::Bytes;
use http_body_util::BodyExt;
use support::*;

const TOTAL: u64 = 1024 * 1024 * 1024;

/// Reads a body to its end, counting bytes, never holding more than a frame.
async fn drain(mut body: hyper::body::Incoming) -> u64 {
    let mut got = 0u64;
    within(120, async {
        while let Some(frame) = body.frame().await {
            got += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        }
    })
    .await;
    got
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_up_and_a_gibibyte_down_with_flat_memory() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let c: hyper_util::client::legacy::Client<_, Repeat> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let before = peak_rss_kib();

    // Upload: the backend echoes the body back as it arrives, so the bytes
    // stream both ways at once.
    let req = http::Request::post(format!("http://{addr}/echo"))
        .header("host", "a")
        .body(Repeat {
            left: TOTAL,
            chunk: Bytes::from(vec![b'u'; 256 * 1024]),
        })
        .unwrap();
    let resp = within(120, c.request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(drain(resp.into_body()).await, TOTAL);

    // Download only.
    let resp = within(
        30,
        c.request(
            http::Request::get(format!("http://{addr}/bytes/{TOTAL}"))
                .header("host", "a")
                .body(Repeat {
                    left: 0,
                    chunk: Bytes::new(),
                })
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["content-length"], TOTAL.to_string());
    assert_eq!(drain(resp.into_body()).await, TOTAL);

    let grown_mib = (peak_rss_kib() - before) / 1024;
    // Client, sluice and backend all live in this process; 3 GiB moved
    // through sluice (1 GiB up, echoed 1 GiB down, then 1 GiB down).
    assert!(
        grown_mib < 64,
        "peak RSS grew by {grown_mib} MiB moving 3 GiB"
    );
}
