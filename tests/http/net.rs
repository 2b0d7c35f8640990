//! The two runtimes the HTTP tests run on, behind one trait, and the test
//! application.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use allstop::http::{Accept, HttpRuntime, IntoHttpService, ServeError, Server};
use allstop::{Group, Stop};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Counter, Gate};

pub type Serving = Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send>>;

/// Server settings a test may change.
#[derive(Clone, Copy, Default)]
pub struct Config {
    pub idle_grace: Option<Duration>,
    pub drain_timeout: Option<Duration>,
    pub header_read_timeout: Option<Duration>,
    pub backlog: Option<u32>,
    /// The listener fails for good after this many connections.
    pub fail_accept_after: Option<usize>,
    pub stop_in_requests: Option<bool>,
}

impl Config {
    /// `server`, with the settings this config changes.
    pub fn apply<R: HttpRuntime>(self, mut server: Server<R>) -> Server<R> {
        if let Some(grace) = self.idle_grace {
            server = server.idle_grace(grace);
        }
        if let Some(timeout) = self.drain_timeout {
            server = server.drain_timeout(timeout);
        }
        if let Some(timeout) = self.header_read_timeout {
            server = server.header_read_timeout(timeout);
        }
        if let Some(backlog) = self.backlog {
            server = server.backlog(backlog);
        }
        if let Some(on) = self.stop_in_requests {
            server = server.stop_in_requests(on);
        }
        server
    }

    /// Serves `service` on `listener` with `server` configured by this.
    pub async fn serve<R, L, M>(
        self,
        server: Server<R>,
        listener: L,
        service: impl IntoHttpService<M>,
        stop: Stop,
    ) -> Result<(), ServeError>
    where
        R: HttpRuntime,
        L: Accept,
    {
        let server = self.apply(server);
        match self.fail_accept_after {
            None => server.serve(listener, service, stop).await,
            Some(after) => {
                let listener = Failing {
                    inner: listener,
                    left: after,
                };
                server.serve(listener, service, stop).await
            }
        }
    }
}

/// A listener that fails for good after a number of connections.
struct Failing<L> {
    inner: L,
    left: usize,
}

impl<L: Accept> Accept for Failing<L> {
    type Io = L::Io;

    async fn bind(addr: SocketAddr, backlog: u32) -> io::Result<Self> {
        Ok(Failing {
            inner: L::bind(addr, backlog).await?,
            left: 0,
        })
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<L::Io>> {
        if self.left == 0 {
            return Poll::Ready(Err(io::Error::other("the listener broke")));
        }
        let accepted = std::task::ready!(self.inner.poll_accept(cx));
        self.left -= 1;
        Poll::Ready(accepted)
    }

    fn try_accept(&mut self) -> Option<io::Result<L::Io>> {
        self.inner.try_accept()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One runtime, as the HTTP tests need it.
pub trait Net: 'static {
    /// How many threads run the members' tasks: [`Busy`] blocks them all.
    const WORKERS: usize;

    fn block_on<F: Future>(future: F) -> F::Output;
    /// An empty group, a task per member on this runtime, with its timer.
    fn group() -> Group;
    /// Spawns a detached task (a handler's).
    fn spawn(future: impl Future<Output = ()> + Send + 'static);
    /// A member serving `service` on an already bound listener.
    fn serve<M>(
        listener: std::net::TcpListener,
        service: impl IntoHttpService<M>,
        config: Config,
    ) -> impl FnOnce(Stop) -> Serving + Send + 'static;
    /// The adapter's ready-made member: bind `addr`, serve `app`.
    fn serve_on(addr: SocketAddr, app: App) -> impl FnOnce(Stop) -> Serving + Send + 'static;
    /// Binds `addr` with the adapter's listener.
    fn bind(addr: SocketAddr) -> Result<(), ServeError>;
}

/// Members that, once told, block every thread of the runtime's workers
/// until released: the runtime is busy, as under a burst of CPU work, and
/// polls nothing — not its listener, not its IO driver.
pub struct Busy {
    go: Stop,
    blocking: Counter,
    release: Counter,
    workers: usize,
}

impl Busy {
    pub fn add_to<N: Net>(group: &mut Group) -> Busy {
        let busy = Busy {
            go: Stop::never(),
            blocking: Counter::new(),
            release: Counter::new(),
            workers: N::WORKERS,
        };
        for index in 0..N::WORKERS {
            let go = busy.go.clone();
            let blocking = busy.blocking.clone();
            let release = busy.release.clone();
            group.add(format!("busy {index}"), move |stop: Stop| async move {
                go.await;
                blocking.add();
                // Blocks this worker thread, on purpose.
                release.wait_for(1);
                stop.await;
                Ok::<(), io::Error>(())
            });
        }
        busy
    }

    /// Blocks every worker; returns once they all are.
    pub fn begin(&self) {
        self.go.handle().stop("busy");
        self.blocking.wait_for(self.workers);
    }

    /// Lets the workers go.
    pub fn end(&self) {
        self.release.add();
    }
}

impl Drop for Busy {
    /// Lets the workers go, if the test has not (it failed before): a
    /// runtime left blocked would hang the other tests that share it.
    fn drop(&mut self) {
        self.release.add();
    }
}

/// The length of `/big`'s body: well over what the kernel's socket buffers
/// hold on loopback.
pub const BIG: usize = 32 << 20;

/// The application the tests serve.
#[derive(Clone, Default)]
pub struct App {
    /// Counts requests that reached a handler that waits.
    pub entered: Counter,
    /// Opens `/slow`.
    pub gate: Gate,
    /// Counts every request handled.
    pub handled: Counter,
    /// Counts WebSocket handlers that have ended.
    pub sockets_ended: Counter,
    /// Counts `/tunnel` handlers that heard their client's `bye` to the
    /// end of its stream.
    pub tunnels_heard: Counter,
    /// Spawns WebSocket handlers on the runtime under test.
    spawn: Option<Spawn>,
    /// The server's stop, for an app built from it.
    stop: Option<Stop>,
}

/// A runtime's `spawn`, for handlers' tasks.
type Spawn = fn(Pin<Box<dyn Future<Output = ()> + Send>>);

pub type Body = BoxBody<Bytes, Infallible>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
}

impl App {
    pub fn new() -> Self {
        App::default()
    }

    /// An app whose WebSocket handlers run on `N`.
    pub fn on<N: Net>() -> Self {
        App {
            spawn: Some(|future| N::spawn(future)),
            ..App::default()
        }
    }

    async fn handle(self, mut request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let in_request = request.extensions().get::<Stop>().cloned();
        let stop = in_request.clone().or_else(|| self.stop.clone());
        let stop = || {
            stop.clone()
                .expect("the app is built from the stop, or finds it in requests")
        };
        let body = match request.uri().path() {
            "/" => "hello",
            "/has-stop" => match (&in_request, &self.stop) {
                (Some(_), _) => "in the request",
                (None, Some(_)) => "from the server",
                (None, None) => "no stop",
            },
            "/slow" => {
                self.entered.add();
                self.gate.wait().await;
                "slow done"
            }
            "/until-stop" => {
                self.entered.add();
                stop().await;
                "stopped early"
            }
            // A large body in one frame: hyper queues it whole and drops
            // the body long before the client has read it.
            "/big" => {
                self.handled.add();
                let body = Full::new(Bytes::from(vec![b'x'; BIG])).boxed();
                return Ok(Response::new(body));
            }
            // The length and a checksum of the request's body: it arrived
            // whole and in order.
            "/upload" => {
                let body = request.into_body().collect().await.expect("the upload");
                let body = body.to_bytes();
                self.handled.add();
                let answer = format!("{} {:016x}", body.len(), fnv1a(&body));
                return Ok(Response::new(Full::new(Bytes::from(answer)).boxed()));
            }
            // A stream of events that ends cleanly at the stop.
            "/events" => {
                self.entered.add();
                let events = futures::stream::once(async { "data: hello\n\n" })
                    .chain(futures::stream::pending())
                    .take_until(stop())
                    .map(|event| Ok(Frame::data(Bytes::from(event))));
                self.handled.add();
                let mut response = Response::new(BodyExt::boxed(StreamBody::new(events)));
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/event-stream"),
                );
                return Ok(response);
            }
            // A WebSocket echo that closes with 1001 Going Away at the stop,
            // or (`/ws-deaf`) one that ignores the stop.
            path @ ("/ws" | "/ws-deaf") => {
                let heeds_stop = path == "/ws";
                let upgrade = hyper::upgrade::on(&mut request);
                let ended = self.sockets_ended.clone();
                let stop = stop();
                let spawn = self.spawn.expect("an app made with App::on");
                spawn(Box::pin(async move {
                    let upgraded = upgrade.await.expect("the upgrade");
                    let io = hyper_util::rt::TokioIo::new(upgraded);
                    let socket =
                        tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None)
                            .await;
                    echo(socket, heeds_stop.then_some(stop)).await;
                    ended.add();
                }));
                self.handled.add();
                let key = request
                    .headers()
                    .get("sec-websocket-key")
                    .expect("a WebSocket key")
                    .as_bytes();
                let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
                let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
                let headers = response.headers_mut();
                headers.insert("upgrade", "websocket".parse().unwrap());
                headers.insert("connection", "upgrade".parse().unwrap());
                headers.insert("sec-websocket-accept", accept.parse().unwrap());
                return Ok(response);
            }
            // An upgraded connection that says `hello` and ends its
            // writing half while its read waits, in one task (as a
            // tunnel's copy in both directions does), then hears its client
            // out: `bye`, to the end of the stream.
            "/tunnel" => {
                let upgrade = hyper::upgrade::on(&mut request);
                let heard = self.tunnels_heard.clone();
                let spawn = self.spawn.expect("an app made with App::on");
                spawn(Box::pin(async move {
                    let upgraded = upgrade.await.expect("the upgrade");
                    if half_close_then_read(upgraded).await == b"bye" {
                        heard.add();
                    }
                }));
                self.handled.add();
                let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
                let headers = response.headers_mut();
                headers.insert("upgrade", "tunnel".parse().unwrap());
                headers.insert("connection", "upgrade".parse().unwrap());
                return Ok(response);
            }
            _ => return Ok(text(StatusCode::NOT_FOUND, "not found")),
        };
        self.handled.add();
        Ok(text(StatusCode::OK, body))
    }

    /// The app as the server serves it: built from the server's stop.
    pub fn service(self) -> impl FnOnce(Stop) -> App + Send + 'static {
        move |stop| App {
            stop: Some(stop),
            ..self
        }
    }
}

/// Polls a read of `io` first, so that it waits on the socket, then says
/// `hello` and shuts the writing half down in the same poll; returns what
/// the client sent, to the end of its stream.
async fn half_close_then_read<IO: hyper::rt::Read + hyper::rt::Write + Unpin>(
    mut io: IO,
) -> Vec<u8> {
    use std::mem::MaybeUninit;

    let mut heard = Vec::new();
    let mut said = false;
    std::future::poll_fn(|cx| {
        loop {
            let mut memory = [MaybeUninit::uninit(); 64];
            let mut buf = hyper::rt::ReadBuf::uninit(&mut memory);
            match Pin::new(&mut io).poll_read(cx, buf.unfilled()) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => heard.extend_from_slice(buf.filled()),
                Poll::Ready(Err(error)) => panic!("the tunnel's read: {error}"),
                Poll::Pending => break,
            }
        }
        if !said {
            let written = Pin::new(&mut io).poll_write(cx, b"hello");
            assert!(matches!(written, Poll::Ready(Ok(5))), "{written:?}");
            let shut = Pin::new(&mut io).poll_shutdown(cx);
            assert!(matches!(shut, Poll::Ready(Ok(()))), "{shut:?}");
            said = true;
        }
        Poll::Pending
    })
    .await;
    heard
}

/// The 64-bit FNV-1a hash of `bytes`: any byte lost, added or moved
/// changes it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A hyper service: it finds the stop in the requests, if the server puts
/// it there, or it was built from it ([`App::service`]).
impl hyper::service::Service<Request<Incoming>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        Box::pin(self.clone().handle(request))
    }
}

/// Echoes messages until the client closes, or until `stop` (then closes
/// with 1001 Going Away and waits for the client's answer).
async fn echo<S>(mut socket: tokio_tungstenite::WebSocketStream<S>, stop: Option<Stop>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let stop = stop.unwrap_or_else(Stop::never);
    loop {
        let Some(message) = stop.until(socket.next()).await else {
            let close = CloseFrame {
                code: CloseCode::Away,
                reason: "server stopping".into(),
            };
            let _ = socket.close(Some(close)).await;
            // The client's close frame ends the stream.
            while let Some(Ok(_)) = socket.next().await {}
            return;
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                if socket.send(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            None | Some(Ok(Message::Close(_)) | Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
}

#[cfg(feature = "tokio")]
pub struct Tokio;

#[cfg(feature = "tokio")]
impl Net for Tokio {
    const WORKERS: usize = 2;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(Self::WORKERS)
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn group() -> Group {
        Group::on(allstop::tokio::Tokio::new())
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(future);
    }

    fn serve<M>(
        listener: std::net::TcpListener,
        service: impl IntoHttpService<M>,
        config: Config,
    ) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        move |stop: Stop| -> Serving {
            Box::pin(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let listener = allstop::tokio::http::TcpListener::from(listener);
                let server = Server::on(allstop::tokio::Tokio::new());
                config.serve(server, listener, service, stop).await
            })
        }
    }

    fn serve_on(addr: SocketAddr, app: App) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        Server::on(allstop::tokio::Tokio::new()).serve_on(addr, app.service())
    }

    fn bind(addr: SocketAddr) -> Result<(), ServeError> {
        Self::block_on(allstop::tokio::http::TcpListener::bind(addr)).map(drop)
    }
}

#[cfg(feature = "smol")]
pub struct Smol;

#[cfg(feature = "smol")]
impl Net for Smol {
    // smol's global executor runs on one thread unless SMOL_THREADS says
    // otherwise.
    const WORKERS: usize = 1;

    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }

    fn group() -> Group {
        Group::on(allstop::smol::Smol::new())
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(future).detach();
    }

    fn serve<M>(
        listener: std::net::TcpListener,
        service: impl IntoHttpService<M>,
        config: Config,
    ) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        move |stop: Stop| -> Serving {
            Box::pin(async move {
                let listener = async_io::Async::new(listener).unwrap();
                let listener = allstop::smol::http::TcpListener::from(listener);
                let server = Server::on(allstop::smol::Smol::new());
                config.serve(server, listener, service, stop).await
            })
        }
    }

    fn serve_on(addr: SocketAddr, app: App) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        Server::on(allstop::smol::Smol::new()).serve_on(addr, app.service())
    }

    fn bind(addr: SocketAddr) -> Result<(), ServeError> {
        Self::block_on(allstop::smol::http::TcpListener::bind(addr)).map(drop)
    }
}
