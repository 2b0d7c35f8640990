//! The two runtimes the HTTP tests run on, behind one trait, and the test
//! application.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use allstop::http::ServeError;
use allstop::{Group, Run, Stop};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::common::{Counter, Gate};

pub type Serving = std::pin::Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send>>;

/// Server settings a test may change.
#[derive(Clone, Copy, Default)]
pub struct Config {
    pub idle_grace: Option<Duration>,
    pub drain_timeout: Option<Duration>,
    pub header_read_timeout: Option<Duration>,
}

/// A service the tests serve: the test app, or the debug routes.
pub trait Svc:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Svc for T where
    T: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

impl Config {
    /// `server`, with the settings this config changes.
    pub fn apply<E, T>(self, mut server: allstop::http::Server<E, T>) -> allstop::http::Server<E, T>
    where
        E: allstop::http::Executor,
        T: hyper::rt::Timer + Clone + Send + Sync + 'static,
    {
        if let Some(grace) = self.idle_grace {
            server = server.idle_grace(grace);
        }
        if let Some(timeout) = self.drain_timeout {
            server = server.drain_timeout(timeout);
        }
        if let Some(timeout) = self.header_read_timeout {
            server = server.header_read_timeout(timeout);
        }
        server
    }
}

/// One runtime, as the HTTP tests need it.
pub trait Net: 'static {
    fn block_on<F: Future>(future: F) -> F::Output;
    /// Runs the group, a task per member.
    fn run(group: Group) -> Run;
    /// A member serving `service` on an already bound listener.
    fn serve<S: Svc>(
        listener: std::net::TcpListener,
        service: S,
        config: Config,
    ) -> impl FnOnce(Stop) -> Serving + Send + 'static;
    /// The adapter's ready-made member: bind `addr`, serve `app`.
    fn serve_on(addr: SocketAddr, app: App) -> impl FnOnce(Stop) -> Serving + Send + 'static;
    /// Binds `addr` with the adapter's listener.
    fn bind(addr: SocketAddr) -> Result<(), ServeError>;
}

/// The application the tests serve.
#[derive(Clone, Default)]
pub struct App {
    /// Counts requests that reached a handler that waits.
    pub entered: Counter,
    /// Opens `/slow`.
    pub gate: Gate,
    /// Counts every request handled.
    pub handled: Counter,
}

impl App {
    pub fn new() -> Self {
        App::default()
    }

    async fn handle(self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let body = match request.uri().path() {
            "/" => "hello".to_owned(),
            "/slow" => {
                self.entered.add();
                self.gate.wait().await;
                "slow done".to_owned()
            }
            "/until-stop" => {
                self.entered.add();
                let stop = request
                    .extensions()
                    .get::<Stop>()
                    .cloned()
                    .expect("the stop is a request extension");
                stop.await;
                "stopped early".to_owned()
            }
            _ => {
                let mut response = Response::new(Full::new(Bytes::from("not found")));
                *response.status_mut() = hyper::StatusCode::NOT_FOUND;
                return Ok(response);
            }
        };
        self.handled.add();
        Ok(Response::new(Full::new(Bytes::from(body))))
    }

    pub fn service(
        self,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
    > + Clone
           + Send
           + Sync
           + 'static {
        hyper::service::service_fn(move |request| self.clone().handle(request))
    }
}

#[cfg(feature = "tokio")]
pub struct Tokio;

#[cfg(feature = "tokio")]
impl Net for Tokio {
    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn run(group: Group) -> Run {
        group.run_spawned(allstop::tokio::Tokio::new())
    }

    fn serve<S: Svc>(
        listener: std::net::TcpListener,
        service: S,
        config: Config,
    ) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        move |stop: Stop| -> Serving {
            Box::pin(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = config.apply(allstop::tokio::http::server());
                server
                    .serve(
                        allstop::tokio::http::TcpListener::from(listener),
                        service,
                        stop,
                    )
                    .await
            })
        }
    }

    fn serve_on(addr: SocketAddr, app: App) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        allstop::tokio::http::serve_on(addr, app.service())
    }

    fn bind(addr: SocketAddr) -> Result<(), ServeError> {
        Self::block_on(allstop::tokio::http::TcpListener::bind(addr)).map(drop)
    }
}

#[cfg(feature = "smol")]
pub struct Smol;

#[cfg(feature = "smol")]
impl Net for Smol {
    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }

    fn run(group: Group) -> Run {
        group.run_spawned(allstop::smol::Smol::new())
    }

    fn serve<S: Svc>(
        listener: std::net::TcpListener,
        service: S,
        config: Config,
    ) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        move |stop: Stop| -> Serving {
            Box::pin(async move {
                let listener = async_io::Async::new(listener).unwrap();
                let server = config.apply(allstop::smol::http::server());
                server
                    .serve(
                        allstop::smol::http::TcpListener::from(listener),
                        service,
                        stop,
                    )
                    .await
            })
        }
    }

    fn serve_on(addr: SocketAddr, app: App) -> impl FnOnce(Stop) -> Serving + Send + 'static {
        allstop::smol::http::serve_on(addr, app.service())
    }

    fn bind(addr: SocketAddr) -> Result<(), ServeError> {
        Self::block_on(allstop::smol::http::TcpListener::bind(addr)).map(drop)
    }
}
