//! What the server serves: hyper services and tower services (an axum
//! `Router`, tonic `Routes`), named by one set of bounds.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;

use bytes::Bytes;
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::service::TowerToHyperService;

use crate::error::BoxError;
use crate::Stop;

/// A hyper service allstop's server runs (what [`IntoHttpService`] turns a
/// service into): any
/// `hyper::service::Service<Request<Incoming>>` that is
/// `Clone + Send + 'static`, with a `Send` future, errors that convert
/// into [`BoxError`], and a response body of `Bytes` chunks — what
/// `hyper::service::service_fn` over an `async` handler returning
/// `Response<Full<Bytes>>` gives. It need not be `Sync` (tower's
/// `BoxCloneService` is not): each connection gets a clone. Implemented
/// automatically; it only names those bounds once.
pub trait HttpService: Clone + Send + 'static {
    /// The response body.
    type Body: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
    /// The service's error.
    type Error: Into<BoxError>;
    /// The service's future.
    type Future: Future<Output = Result<Response<Self::Body>, Self::Error>> + Send + 'static;

    /// Handles one request (`Service::call`).
    fn call_http(&self, request: Request<Incoming>) -> Self::Future;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Body = B;
    type Error = S::Error;
    type Future = S::Future;

    fn call_http(&self, request: Request<Incoming>) -> S::Future {
        self.call(request)
    }
}

/// Runs the server's connection tasks and hyper's HTTP/2 streams on an
/// async runtime: each one spawned detached, to run to its end on its own.
/// The adapters' runtimes supply one (`allstop::tokio::Tokio` is its own,
/// `allstop::smol::http::SmolExecutor`); implement it for another runtime's
/// spawner.
///
/// It is generic over the task, rather than hyper's `Executor` of one boxed
/// future type, so that the server hands hyper the service's own future and
/// body types, unboxed.
///
/// ```
/// use allstop::http::Executor;
/// use futures::executor::ThreadPool;
/// use std::future::Future;
///
/// #[derive(Clone)]
/// struct Pool(ThreadPool);
///
/// impl Executor for Pool {
///     fn execute<F>(&self, task: F)
///     where
///         F: Future<Output = ()> + Send + 'static,
///     {
///         self.0.spawn_ok(task);
///     }
/// }
///
/// let pool = Pool(ThreadPool::new().unwrap());
/// let (done, finished) = futures::channel::oneshot::channel();
/// pool.execute(async move { done.send(2).unwrap() });
/// assert_eq!(futures::executor::block_on(finished), Ok(2));
/// ```
pub trait Executor: Clone + Send + Sync + 'static {
    /// Spawns `task`, detached: it runs to its end whether or not anyone
    /// waits for it.
    fn execute<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static;
}

/// An [`Executor`] as hyper's: for every task hyper spawns (an HTTP/2
/// stream of any service's future and body).
#[derive(Clone)]
pub(crate) struct HyperExecutor<E>(pub(crate) E);

impl<E, F> hyper::rt::Executor<F> for HyperExecutor<E>
where
    E: Executor,
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, task: F) {
        self.0.execute(task);
    }
}

/// Anything the server can serve: a hyper service (`service_fn` over an
/// `async` handler), a tower service such as an axum `Router` or tonic
/// `Routes`, served as it is, or a function that builds either from the
/// server's [`Stop`] — how handlers see the stop with no allocation per
/// request.
/// Implemented automatically.
///
/// `M` is [`Hyper`], [`Tower`] or [`FromStop`], chosen by the compiler: it
/// only keeps the blanket implementations apart, and never needs to be
/// written.
///
/// A tower service is cloned for each request and driven to readiness
/// before its call, as hyper-util's `TowerToHyperService` does; its request
/// body is hyper's `Incoming`, and its response body any body of `Bytes`
/// chunks (axum's `Body`, tonic's).
///
/// A function of the stop is called once, when the server starts, with the
/// stop its handlers see: it fires when the group stops or when the server
/// stops on its own (its listener failed). A closure whose body calls a
/// method on its argument names the argument's type (`|stop: Stop|`):
/// the compiler does not infer it from the server's signature.
///
/// ```
/// use allstop::http::Server;
/// use allstop::tokio::Tokio;
/// use allstop::Stop;
/// use axum::extract::State;
///
/// let app = axum::Router::new().route(
///     "/wait",
///     // Answers at the stop.
///     axum::routing::get(|State(stop): State<Stop>| async move {
///         stop.await;
///         "stopping"
///     }),
/// );
/// let mut group = allstop::Group::on(Tokio::new());
/// group.add(
///     "app",
///     Server::on(Tokio::new()).serve_on("127.0.0.1:0".parse().unwrap(), |stop: Stop| app.with_state(stop)),
/// );
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not something the server can serve",
    label = "not a hyper or tower service, nor a function of the server's `Stop` returning one",
    note = "serve a hyper service (`service_fn`), a tower service (an axum `Router`) or `|stop: Stop| service`; a closure returning a future is a member, for `Group::add`"
)]
pub trait IntoHttpService<M>: Send + 'static {
    /// The hyper service it becomes.
    type Service: HttpService;

    /// Converts it; `stop` is the one its handlers see.
    fn into_http_service(self, stop: &Stop) -> Self::Service;
}

/// Marks a hyper service in [`IntoHttpService`].
#[derive(Debug)]
pub enum Hyper {}

/// Marks a tower service in [`IntoHttpService`].
#[derive(Debug)]
pub enum Tower {}

/// Marks, in [`IntoHttpService`], a function of the server's stop that
/// returns what `M` marks.
#[derive(Debug)]
pub struct FromStop<M>(Infallible, PhantomData<M>);

impl<S: HttpService> IntoHttpService<Hyper> for S {
    type Service = S;

    fn into_http_service(self, _: &Stop) -> S {
        self
    }
}

impl<S, B> IntoHttpService<Tower> for S
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Service = TowerToHyperService<S>;

    fn into_http_service(self, _: &Stop) -> TowerToHyperService<S> {
        TowerToHyperService::new(self)
    }
}

impl<F, S, M> IntoHttpService<FromStop<M>> for F
where
    F: FnOnce(Stop) -> S + Send + 'static,
    S: IntoHttpService<M>,
{
    type Service = S::Service;

    fn into_http_service(self, stop: &Stop) -> S::Service {
        self(stop.clone()).into_http_service(stop)
    }
}
