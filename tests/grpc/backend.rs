//! An HTTP/2 test backend (cleartext, or TLS with ALPN h2) served by
//! hyper, with a real gRPC service `test.Echo` made with tonic's server
//! side (what tonic-build would generate, written out: no protoc here):
//!
//! - `Say` (unary): echoes, fails with INVALID_ARGUMENT and trailing
//!   metadata on "fail", and waits 5 s on "sleep" (counting the calls the
//!   client cancelled);
//! - `Count` (server streaming), `Sum` (client streaming), `Chat` (both
//!   ways: each message is answered as it comes).
//!
//! Plain paths: `/healthz`, `/hold` (answered when the test releases it),
//! and anything else is echoed with the request's version, authority and
//! TE, and a response trailer.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tonic::codegen::tokio_stream::{self, wrappers::ReceiverStream, Stream};
use tonic::{Status, Streaming};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub n: u32,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Replies = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;
type Answer = Response<tonic::body::Body>;

/// What the backend saw, and the test's handles on it.
pub struct State {
    pub connections: AtomicUsize,
    pub checks: AtomicUsize,
    /// Requests waiting in `/hold`.
    pub held: AtomicUsize,
    pub release: Semaphore,
    /// `Say("sleep")` calls dropped before they finished.
    pub cancelled: AtomicUsize,
    /// Every request: its path, version and fields.
    pub seen: Mutex<Vec<(String, http::Version, http::HeaderMap)>>,
    /// Sends GOAWAY on every connection open now.
    pub goaway: Notify,
}

impl Default for State {
    fn default() -> State {
        State {
            connections: Default::default(),
            checks: Default::default(),
            held: Default::default(),
            release: Semaphore::new(0),
            cancelled: Default::default(),
            seen: Default::default(),
            goaway: Notify::new(),
        }
    }
}

impl State {
    pub fn seen_on(&self, path: &str) -> Vec<(http::Version, http::HeaderMap)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, v, h)| (*v, h.clone()))
            .collect()
    }
}

pub struct H2Backend {
    pub addr: SocketAddr,
    pub state: Arc<State>,
}

/// Starts a backend: TLS when `tls` is given; `max_streams` is the
/// SETTINGS_MAX_CONCURRENT_STREAMS it announces.
pub async fn start(tls: Option<Arc<rustls::ServerConfig>>, max_streams: Option<u32>) -> H2Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State::default());
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            st.connections.fetch_add(1, Ordering::SeqCst);
            let (st, tls) = (st.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve(tcp, st, max_streams).await,
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        if let Ok(s) = acceptor.accept(tcp).await {
                            serve(s, st, max_streams).await
                        }
                    }
                }
            });
        }
    });
    H2Backend { addr, state }
}

async fn serve<T>(io: T, st: Arc<State>, max_streams: Option<u32>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(m) = max_streams {
        b.max_concurrent_streams(m);
    }
    let svc_state = st.clone();
    let conn = b.serve_connection(
        TokioIo::new(io),
        service_fn(move |req| handle(svc_state.clone(), req)),
    );
    tokio::pin!(conn);
    let goaway = st.goaway.notified();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = goaway => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let path = req.uri().path().to_string();
    st.seen
        .lock()
        .unwrap()
        .push((path.clone(), req.version(), req.headers().clone()));
    let resp = match path.as_str() {
        "/test.Echo/Say" => grpc().unary(Say(st), req).await,
        "/test.Echo/Count" => grpc().server_streaming(Count, req).await,
        "/test.Echo/Sum" => grpc().client_streaming(Sum, req).await,
        "/test.Echo/Chat" => grpc().streaming(Chat, req).await,
        "/healthz" => {
            st.checks.fetch_add(1, Ordering::SeqCst);
            text("ok")
        }
        "/hold" => {
            st.held.fetch_add(1, Ordering::SeqCst);
            if let Ok(p) = st.release.acquire().await {
                p.forget();
            }
            text("held")
        }
        _ => echo(req).await,
    };
    Ok(resp)
}

fn grpc() -> tonic::server::Grpc<ProstCodec<Msg, Msg>> {
    tonic::server::Grpc::new(ProstCodec::default())
}

fn text(s: &'static str) -> Answer {
    Response::new(tonic::body::Body::new(Full::new(Bytes::from_static(
        s.as_bytes(),
    ))))
}

/// Echoes the body, says what arrived, and ends with a trailer.
async fn echo(req: Request<Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-trailer", http::HeaderValue::from_static("done"));
    // Frames of unknown total length, as a streaming answer has: no
    // Content-Length, so the trailer can follow.
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        vec![Ok(Frame::data(body)), Ok(Frame::trailers(trailers))];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let te = parts.headers.get("te").cloned();
    let mut b = Response::builder()
        .header("x-version", format!("{:?}", parts.version))
        .header(
            "x-authority",
            parts.uri.authority().map_or("", |a| a.as_str()),
        )
        .header("x-scheme", parts.uri.scheme_str().unwrap_or(""));
    if let Some(te) = te {
        b = b.header("x-te", te);
    }
    b.body(tonic::body::Body::new(body)).unwrap()
}

struct Say(Arc<State>);

/// Counts a call dropped before it ended.
struct Cancelled(Arc<State>, bool);

impl Drop for Cancelled {
    fn drop(&mut self) {
        if self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl tonic::server::UnaryService<Msg> for Say {
    type Response = Msg;
    type Future = BoxFut<Result<tonic::Response<Msg>, Status>>;

    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        let st = self.0.clone();
        Box::pin(async move {
            let m = req.into_inner();
            match m.text.as_str() {
                "fail" => {
                    let mut s = Status::invalid_argument("refused by the test");
                    s.metadata_mut().insert("x-why", "a test".parse().unwrap());
                    Err(s)
                }
                "sleep" => {
                    let mut guard = Cancelled(st, true);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    guard.1 = false;
                    Ok(tonic::Response::new(m))
                }
                _ => {
                    let mut r = tonic::Response::new(Msg {
                        text: format!("echo:{}", m.text),
                        n: m.n,
                    });
                    r.metadata_mut().insert("x-served", "h2".parse().unwrap());
                    Ok(r)
                }
            }
        })
    }
}

struct Count;

impl tonic::server::ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = Replies;
    type Future = BoxFut<Result<tonic::Response<Replies>, Status>>;

    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        let n = req.into_inner().n;
        Box::pin(async move {
            let replies = (0..n).map(|i| {
                Ok(Msg {
                    text: format!("#{i}"),
                    n: i,
                })
            });
            let s: Replies = Box::pin(tokio_stream::iter(replies));
            Ok(tonic::Response::new(s))
        })
    }
}

struct Sum;

impl tonic::server::ClientStreamingService<Msg> for Sum {
    type Response = Msg;
    type Future = BoxFut<Result<tonic::Response<Msg>, Status>>;

    fn call(&mut self, req: tonic::Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let mut input = req.into_inner();
            let (mut n, mut text) = (0, String::new());
            while let Some(m) = input.message().await? {
                n += m.n;
                text.push_str(&m.text);
            }
            Ok(tonic::Response::new(Msg { text, n }))
        })
    }
}

struct Chat;

impl tonic::server::StreamingService<Msg> for Chat {
    type Response = Msg;
    type ResponseStream = Replies;
    type Future = BoxFut<Result<tonic::Response<Replies>, Status>>;

    fn call(&mut self, req: tonic::Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let mut input = req.into_inner();
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                while let Ok(Some(m)) = input.message().await {
                    let reply = Msg {
                        text: format!("re:{}", m.text),
                        n: m.n,
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
            });
            let s: Replies = Box::pin(ReceiverStream::new(rx));
            Ok(tonic::Response::new(s))
        })
    }
}
