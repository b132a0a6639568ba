//! `sluice demo`: three local backends (healthy, slow, flaky) behind a
//! proxy on 127.0.0.1:8080, with health checks, breakers, a rate limit,
//! retries and the admin listener on 127.0.0.1:9901.

use crate::config::Config;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Healthy,
    /// Answers after 250 ms.
    Slow,
    /// Fails every third request with a 500.
    Flaky,
}

/// Starts one demo backend on `127.0.0.1:0` and returns its address.
pub async fn start_backend(kind: Kind) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counter = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(kind, addr, counter.clone(), req));
                if let Err(e) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, "demo backend connection ended");
                }
            });
        }
    });
    Ok(addr)
}

async fn answer(
    kind: Kind,
    addr: SocketAddr,
    counter: Arc<AtomicU64>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let health_check = req.uri().path() == "/healthz";
    let (status, text) = match kind {
        _ if health_check => (StatusCode::OK, "ok".to_string()),
        Kind::Healthy => (
            StatusCode::OK,
            format!("hello from the healthy backend ({addr})\n"),
        ),
        Kind::Slow => {
            tokio::time::sleep(Duration::from_millis(250)).await;
            (
                StatusCode::OK,
                format!("hello from the slow backend ({addr}), 250 ms later\n"),
            )
        }
        Kind::Flaky if n % 3 == 2 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the flaky backend ({addr}) failed\n"),
        ),
        Kind::Flaky => (
            StatusCode::OK,
            format!("hello from the flaky backend ({addr})\n"),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

/// The demo's config, with the three backends' addresses filled in.
pub fn config_text(listen: SocketAddr, admin: SocketAddr, backends: [SocketAddr; 3]) -> String {
    let [healthy, slow, flaky] = backends;
    format!(
        r#"# The config `sluice demo` runs.
[admin]
bind = "{admin}"

[log]
level = "info"
format = "text"

[[listener]]
name = "demo"
bind = "{listen}"

[[route]]
name = "demo"
pool = "demo"
[route.rate_limit]
requests_per_second = 20.0
burst = 40

[pool.demo]
strategy = "least_response_time"
backends = [
  {{ addr = "{healthy}", weight = 2 }},
  {{ addr = "{slow}" }},
  {{ addr = "{flaky}" }},
]
connect_timeout = "1s"
request_timeout = "5s"

[pool.demo.health_check]
path = "/healthz"
interval = "2s"
timeout = "1s"

[pool.demo.circuit_breaker]
failure_threshold = 3
open_duration = "10s"

[pool.demo.retry]
attempts = 2
"#
    )
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(listen: SocketAddr, admin: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let backends = [
        start_backend(Kind::Healthy).await?,
        start_backend(Kind::Slow).await?,
        start_backend(Kind::Flaky).await?,
    ];
    let text = config_text(listen, admin, backends);
    let config = Config::parse(&text)?;
    crate::logging::init(&config.log);
    let sluice = crate::Sluice::start(config).await?;
    let addr = sluice.listener_addr("demo").await.unwrap_or(listen);
    println!(
        "sluice demo is running.\n\
         \n  proxy:    http://{addr}/\n  admin:    http://{admin}/  (metrics, pools, status)\n\
         \n  backends: healthy {} (weight 2), slow {} (+250 ms), flaky {} (every third request fails)\n\
         \nTry:\n  curl -i http://{addr}/\n  for i in $(seq 20); do curl -s http://{addr}/; done\n\
         \nPress Ctrl-C to stop.\n",
        backends[0], backends[1], backends[2]
    );
    crate::wait_for_shutdown_signal().await;
    sluice.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
