//! The status page in a real browser: headless Chromium (Debian's
//! `chromium`, installed by .ci/run) loads /status from a running sluice;
//! the rendered DOM must show every backend with its state. A screenshot is
//! kept at tests/artifacts/status.png (linked from the README).

mod support;
use std::time::Duration;
use support::*;

fn chromium() -> String {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = std::process::Command::new("which").arg(candidate).output() {
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
        }
    }
    panic!("this test needs a headless browser: apt-get install chromium (.ci/run installs it)");
}

async fn browse(extra: &[&str], url: &str) -> String {
    let profile = std::env::temp_dir().join(format!(
        "sluice-chromium-{}-{}",
        std::process::id(),
        extra.len()
    ));
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        // Let the page's refresh script run before the DOM is taken.
        "--virtual-time-budget=3000",
        "--window-size=1400,440",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished in time")
        .expect("chromium ran");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr>` of one backend in the rendered DOM.
fn row<'a>(dom: &'a str, pool: &str, addr: &str) -> &'a str {
    let key = format!("data-backend=\"{pool}|{addr}\"");
    let start = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no row for {pool}|{addr} in:\n{dom}"));
    let end = dom[start..].find("</tr>").unwrap() + start;
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_every_backend_and_its_state_in_a_browser() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let c = Backend::start("C").await;
    b.set_health_status(503);
    c.set_status(500);
    let toml = format!(
        r#"
[log]
access_log = false
[admin]
bind = "127.0.0.1:0"
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
path_prefix = "/api"
pool = "api"
[[route]]
pool = "web"
[pool.web]
backends = [{{ addr = "{a}", weight = 3 }}, {{ addr = "{b}" }}]
[pool.web.health_check]
interval = "100ms"
[pool.api]
backends = [{{ addr = "{c}" }}]
[pool.api.circuit_breaker]
failure_threshold = 1
open_duration = "1h"
"#,
        a = a.addr,
        b = b.addr,
        c = c.addr
    );
    let s = sluice(&toml).await;
    let addr = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();
    let cl = client();
    assert_eq!(get(&cl, addr, "x", "/api").await.status, 500);
    for _ in 0..5 {
        get(&cl, addr, "x", "/").await;
    }
    eventually(5, || b.checks() >= 1).await;
    // The charts: sampled once a second, so wait until a sample holds the
    // requests just sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let html = get(&cl, admin, "x", "/status").await.body;
        let ra = row(&html, "web", &a.addr.to_string()).to_string();
        if !ra.contains("requests/s: now 0.0/s, max 0.0/s") {
            assert_eq!(ra.matches("<svg class=\"chart\"").count(), 3, "{ra}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request in the chart: {ra}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let url = format!("http://{admin}/status");
    let dom = browse(&["--dump-dom"], &url).await;
    let (ra, rb, rc) = (
        row(&dom, "web", &a.addr.to_string()),
        row(&dom, "web", &b.addr.to_string()),
        row(&dom, "api", &c.addr.to_string()),
    );
    assert!(
        ra.contains("s-up\">up<") && ra.contains("s-closed\">closed<"),
        "{ra}"
    );
    assert!(ra.contains("class=\"weight\">3<"), "{ra}");
    assert!(rb.contains("s-down\">down<"), "{rb}");
    assert!(rc.contains("s-open\">open<"), "{rc}");
    // Charts drawn as inline SVG, for the pool too; the runtime state shows.
    assert!(ra.contains("<polyline points=\""), "{ra}");
    assert!(rc.contains("errors/s: now"), "{rc}");
    assert!(dom.contains("data-charts=\"web\""), "no pool charts");
    assert!(ra.contains("s-ready\">ready<"), "{ra}");
    // The script ran: it stamps the time of its last refresh.
    assert!(
        dom.contains("Updated "),
        "the refresh script did not run:\n{dom}"
    );

    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status.png");
    browse(&[&format!("--screenshot={}", shot.display())], &url).await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "screenshot looks empty"
    );
}
