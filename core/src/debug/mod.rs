//! The debug server's routes: CPU profiles and flamegraphs, health,
//! readiness and the group's status, as one hyper service, and
//! [`add_debug_server`], which serves it as a member of a group.
//!
//! | route | answer |
//! |---|---|
//! | `GET /debug/pprof/` | an index of these routes |
//! | `GET /debug/pprof/profile?seconds=N` | a CPU profile over N seconds (default 30) as a gzip-compressed pprof protobuf: `go tool pprof http://HOST/debug/pprof/profile` |
//! | `GET /debug/pprof/flamegraph?seconds=N` | the same profile as an SVG flamegraph |
//! | `GET /debug/pprof/heap` | a heap profile (the allocations sampled and still live) as a gzip-compressed pprof protobuf, from jemalloc's profiler: feature `heap`, Linux, and jemalloc as the allocator with profiling on; 501 with these instructions otherwise |
//! | `GET /healthz` | 200 while the process is up |
//! | `GET /readyz` | 200 while the group runs; 503 from the moment a stop is requested or begins |
//! | `GET /debug/group` | the members, their states, stages, uptimes and restarts, each stage's stop, the stop's cause, and whether a profile is running, as JSON |
//!
//! Every route answers `HEAD` as it answers `GET`, without a body (the
//! profile routes without profiling), as load balancers and uptime checkers
//! expect. `seconds` out of range (1 to the maximum, 300 by default) or not
//! a whole number gets 400; a second profile while one runs anywhere in the
//! process gets 409 (one `SIGPROF` timer per process); an unknown path
//! 404; a method other than GET or HEAD 405. A profile that took no sample
//! (an idle process, a profile cut short) is still a valid pprof or SVG,
//! and says so. A profile in progress ends early when the
//! group stops, and answers with what it has, so it never holds the
//! shutdown. Profiles are taken and encoded on a thread of their own, off
//! the async threads. On Linux (x86-64, AArch64) a profile costs a few MiB
//! while it runs and nearly nothing after: frames are named from the symbol
//! tables only (no line numbers, no inlined frames), and a frame they
//! cannot name (a stripped program) keeps its address and the mapping it
//! lies in, which `go tool pprof` names given the unstripped binary and its
//! debug information (`go tool pprof ./program profile.pb.gz`); elsewhere
//! pprof-rs takes it, at some 100 MiB kept.
//!
//! Heap profiles need two items in the application's main file, beside
//! `tikv-jemallocator` with its `profiling` feature:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! #[export_name = "_rjem_malloc_conf"]
//! pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";
//! ```
//!
//! **Serve it on loopback only** ([`add_debug_server`]'s default,
//! [`DEFAULT_ADDR`]): profiles and the group's state reveal the program's
//! internals, and a profile costs CPU.
//!
//! ```
//! use allstop::debug::DebugRoutes;
//!
//! let mut group = allstop::Group::new();
//! // Watches the group, for /readyz and /debug/group.
//! let debug = DebugRoutes::new().attach(&mut group);
//! // Then serve it like any service, e.g. with
//! // `Server::on(Tokio::new()).serve_on(allstop::debug::DEFAULT_ADDR, debug)`,
//! // or add it in one line with `add_debug_server(&mut group, Tokio::new())`.
//! # drop(debug);
//! ```

mod heap;
mod json;
mod profile;
// The one module with `unsafe` code: the signal handler and its timer.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[allow(unsafe_code)]
mod sampler;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod stacks;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod symbolize;

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::{mpsc, Arc};

use bytes::Bytes;
use futures::future::{select, Either};
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::service::Service;
use hyper::{Method, Request, Response, StatusCode};

use self::profile::{Format, ProfilerLock};
use crate::http::{FromStop, HttpRuntime, Hyper, IntoHttpService, Server};
use crate::{Group, Stage, Status, Stop};

/// Where [`add_debug_server`] listens:
/// `127.0.0.1:8001`, loopback only.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8001));

/// Adds the debug server to `group` on [`DEFAULT_ADDR`] (`127.0.0.1:8001`,
/// loopback only), served on `runtime`, as the member `"debug"` in the
/// last stage: see [`DebugRoutes::add_to`], which this is with the default
/// routes. Returns the routes, whose [`status`](DebugRoutes::status) shows the
/// group.
///
/// # Panics
///
/// As [`Group::add`]: if the group has 2^32 members already.
///
/// ```
/// use allstop::tokio::Tokio;
///
/// let mut group = allstop::Group::on(Tokio::new());
/// allstop::debug::add_debug_server(&mut group, Tokio::new());
/// assert_eq!(group.len(), 1);
/// ```
pub fn add_debug_server<R: HttpRuntime>(group: &mut Group, runtime: R) -> DebugRoutes {
    DebugRoutes::new().add_to(group, Server::on(runtime), DEFAULT_ADDR)
}

/// The debug routes and their settings. Cheap to clone.
///
/// Served by allstop's server as they are (`Server::serve_on(addr,
/// routes)`), they answer to the server's stop: the server builds their
/// service, a [`DebugService`], from it (see
/// [`IntoHttpService`]). Elsewhere,
/// [`with_stop`](DebugRoutes::with_stop) makes that service.
///
/// ```
/// let debug = allstop::debug::DebugRoutes::new().max_seconds(60).frequency(199);
/// ```
#[derive(Debug, Clone)]
pub struct DebugRoutes {
    inner: Arc<Inner>,
}

/// The debug routes as a hyper service, answering to a stop: `/readyz`
/// answers 503 from the moment it fires, `/debug/group` shows it, and a
/// running profile ends at it, so it never holds the shutdown. Made by
/// [`DebugRoutes::with_stop`], or by the server that serves the routes.
/// Cheap to clone.
///
/// ```
/// let service = allstop::debug::DebugRoutes::new().with_stop(allstop::Stop::never());
/// # drop(service);
/// ```
#[derive(Debug, Clone)]
pub struct DebugService {
    routes: DebugRoutes,
    stop: Stop,
}

#[derive(Debug, Clone)]
struct Inner {
    status: Status,
    max_seconds: u64,
    default_seconds: u64,
    frequency: i32,
}

impl Default for DebugRoutes {
    fn default() -> Self {
        DebugRoutes::new()
    }
}

impl DebugRoutes {
    /// The routes with the default settings: profiles of 30 s unless asked,
    /// at most 300 s, sampled at 99 Hz.
    pub fn new() -> Self {
        DebugRoutes {
            inner: Arc::new(Inner {
                status: Status::new(),
                max_seconds: 300,
                default_seconds: 30,
                frequency: 99,
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    /// The longest profile one may ask for, in seconds (default 300). The
    /// default length is 30 s or this, whichever is shorter.
    pub fn max_seconds(self, max: u64) -> Self {
        self.with(|inner| {
            inner.max_seconds = max.max(1);
            inner.default_seconds = inner.default_seconds.min(inner.max_seconds);
        })
    }

    /// The sampling frequency in Hz (default 99).
    pub fn frequency(self, hz: i32) -> Self {
        self.with(|inner| inner.frequency = hz.max(1))
    }

    /// The status the routes report, kept by the group this was
    /// [attached](DebugRoutes::attach) to.
    pub fn status(&self) -> &Status {
        &self.inner.status
    }

    /// These routes as a hyper service answering to `stop`, for a server
    /// other than allstop's, or an axum `Router` that nests them
    /// (`nest_service`): give it the stop its server stops with. allstop's
    /// server does this itself.
    ///
    /// ```
    /// let stop = allstop::Stop::never();
    /// let service = allstop::debug::DebugRoutes::new().with_stop(stop);
    /// # drop(service);
    /// ```
    pub fn with_stop(self, stop: Stop) -> DebugService {
        DebugService { routes: self, stop }
    }

    /// Makes `group` report to these routes (`/readyz`, `/debug/group`),
    /// through the group's observer hook.
    pub fn attach(self, group: &mut Group) -> Self {
        group.observe(self.inner.status.clone());
        self
    }

    /// Adds the debug server to `group`: these routes, [attached](DebugRoutes::attach)
    /// to it, served by `server` on `addr` as the member `"debug"` in
    /// [`Stage::LAST`], so that it stops after every other member has
    /// ended: `/readyz` answers 503 and `/debug/group` shows the drain for
    /// as long as the others drain. Think twice before an address other
    /// than loopback: profiles reveal internals.
    ///
    /// # Panics
    ///
    /// As [`Group::add`]: if the group has 2^32 members already.
    ///
    /// ```
    /// use allstop::debug::DebugRoutes;
    /// use allstop::http::Server;
    /// use allstop::tokio::Tokio;
    ///
    /// let mut group = allstop::Group::on(Tokio::new());
    /// let debug = DebugRoutes::new()
    ///     .max_seconds(60)
    ///     .add_to(&mut group, Server::on(Tokio::new()), "127.0.0.1:0".parse().unwrap());
    /// assert_eq!(group.len(), 1);
    /// assert!(debug.status().members().is_empty());
    /// ```
    pub fn add_to<R: HttpRuntime>(
        self,
        group: &mut Group,
        server: Server<R>,
        addr: SocketAddr,
    ) -> Self {
        let debug = self.attach(group);
        group.in_stage(Stage::LAST, |group| {
            group.add("debug", server.serve_on(addr, debug.clone()));
        });
        debug
    }

    async fn respond(
        self,
        method: Method,
        path: String,
        query: Option<String>,
        stop: Stop,
    ) -> Response<Full<Bytes>> {
        let Some(route) = Route::of(&path) else {
            let message = format!("no route {path}; see /debug/pprof/\n");
            return text(StatusCode::NOT_FOUND, message);
        };
        if method != Method::GET && method != Method::HEAD {
            let message = format!("{path} answers GET and HEAD only, not {method}\n");
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, message);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let head = method == Method::HEAD;
        match route {
            Route::Index => with_type(Full::new(Bytes::from(INDEX)), "text/html; charset=utf-8"),
            Route::Health => text(StatusCode::OK, "ok\n".into()),
            Route::Ready => self.ready(&stop),
            Route::Group => {
                let running = profile::is_running();
                let json = json::group(&self.inner.status, &stop, running);
                with_type(Full::new(Bytes::from(json)), "application/json")
            }
            Route::Profile(format) => self.profile_route(head, query, format, stop).await,
            Route::Heap => heap_route(head).await,
        }
    }

    fn ready(&self, stop: &Stop) -> Response<Full<Bytes>> {
        // The server's stop is the authority: the status hears of the stop
        // a moment later, from the group's run loop.
        if self.inner.status.is_ready() && !json::group_stopping(stop) {
            text(StatusCode::OK, "ready\n".into())
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into())
        }
    }

    async fn profile_route(
        &self,
        head: bool,
        query: Option<String>,
        format: Format,
        stop: Stop,
    ) -> Response<Full<Bytes>> {
        let inner = &self.inner;
        let seconds = match seconds(query.as_deref(), inner.default_seconds, inner.max_seconds) {
            Ok(seconds) => seconds,
            Err(message) => return text(StatusCode::BAD_REQUEST, message),
        };
        if head {
            // What a GET would answer, without taking a profile.
            return profile_response(format, Vec::new());
        }
        self.profile(seconds, format, stop).await
    }

    async fn profile(&self, seconds: u64, format: Format, stop: Stop) -> Response<Full<Bytes>> {
        let Some(lock) = ProfilerLock::acquire() else {
            return text(
                StatusCode::CONFLICT,
                "a CPU profile is already running in this process (one at a time); try again when it ends\n".into(),
            );
        };
        let (cancel, cancelled) = mpsc::channel();
        let (done, result) = futures::channel::oneshot::channel();
        let frequency = self.inner.frequency;
        let spawned = std::thread::Builder::new()
            .name("allstop-profile".into())
            .spawn(move || {
                let result = profile::run(seconds, frequency, format, cancelled);
                // Free the profiler before answering, so that a client that
                // asks again as soon as it has its answer is not told 409.
                drop(lock);
                let _ = done.send(result);
            });
        if let Err(error) = spawned {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start the profiling thread: {error}\n"),
            );
        }
        // If this request goes away, `cancel` is dropped and the profile
        // ends; if the group stops, it ends now with what it has.
        let result = match select(result, stop).await {
            Either::Left((result, _)) => result,
            Either::Right(((), result)) => {
                let _ = cancel.send(());
                result.await
            }
        };
        match result {
            Ok(Ok(bytes)) => profile_response(format, bytes),
            Ok(Err(message)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the profiling thread ended without a profile\n".into(),
            ),
        }
    }
}

enum Route {
    Index,
    Profile(Format),
    Heap,
    Health,
    Ready,
    Group,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        Some(match path {
            "/debug/pprof" | "/debug/pprof/" => Route::Index,
            "/debug/pprof/profile" => Route::Profile(Format::Pprof),
            "/debug/pprof/flamegraph" => Route::Profile(Format::Flamegraph),
            "/debug/pprof/heap" => Route::Heap,
            "/healthz" => Route::Health,
            "/readyz" => Route::Ready,
            "/debug/group" => Route::Group,
            _ => return None,
        })
    }
}

/// A heap profile, or why there is none; a HEAD takes no dump.
async fn heap_route(head: bool) -> Response<Full<Bytes>> {
    match heap::profile(head).await {
        Ok(bytes) => {
            let mut response = profile_response(Format::Pprof, bytes);
            response.headers_mut().insert(
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"heap.pb.gz\""),
            );
            response
        }
        Err(heap::HeapError::NotActive(why)) => text(
            StatusCode::NOT_IMPLEMENTED,
            format!("{why}.\n\n{}", heap::HOW_TO),
        ),
        Err(heap::HeapError::Failed(message)) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n"))
        }
    }
}

fn with_type(body: Full<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

impl<B> Service<Request<B>> for DebugService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let (routes, stop) = (self.routes.clone(), self.stop.clone());
        Box::pin(async move { Ok(routes.respond(method, path, query, stop).await) })
    }
}

/// Served by allstop's server, the routes are built into their service from
/// the server's stop.
impl IntoHttpService<FromStop<Hyper>> for DebugRoutes {
    type Service = DebugService;

    fn into_http_service(self, stop: &Stop) -> DebugService {
        self.with_stop(stop.clone())
    }
}

fn profile_response(format: Format, bytes: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    let headers = response.headers_mut();
    match format {
        Format::Pprof => {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"profile.pb.gz\""),
            );
        }
        Format::Flamegraph => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
        }
    }
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The `seconds` query parameter: absent means the default; anything but a
/// whole number from 1 to `max` is an error saying what is accepted.
fn seconds(query: Option<&str>, default: u64, max: u64) -> Result<u64, String> {
    let accepted = format!("whole seconds from 1 to {max}");
    let Some(value) = query.unwrap_or("").split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == "seconds").then_some(value)
    }) else {
        return Ok(default);
    };
    if value.is_empty() {
        return Err(format!("seconds needs a value: {accepted}\n"));
    }
    match value.parse::<i64>() {
        Ok(n) if n >= 1 && n as u64 <= max => Ok(n as u64),
        Ok(n) => Err(format!("seconds={n} is out of range: {accepted}\n")),
        Err(_) => Err(format!("seconds={value:?} is not a number: {accepted}\n")),
    }
}

const INDEX: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>/debug/pprof/</title></head>
<body>
<h1>/debug/pprof/</h1>
<ul>
<li><a href="profile?seconds=30">profile</a>: a CPU profile of the whole process over <code>seconds</code> (default 30), as a gzip-compressed pprof protobuf.
Read it with <code>go tool pprof http://HOST/debug/pprof/profile?seconds=30</code>, then <code>top</code>, <code>list NAME</code> or <code>web</code>;
or <code>go tool pprof -http=:0 FILE</code> for a browser view.</li>
<li><a href="flamegraph?seconds=10">flamegraph</a>: the same profile as an SVG flamegraph, for a browser. Wider boxes took more CPU; callers are below their callees.
Take it while the process is busy (under load), for long enough to catch the work, from a <code>--release</code> build: an idle process takes no samples, and its flamegraph only says so.</li>
<li><a href="heap">heap</a>: a heap profile (allocations sampled and still live), as a gzip-compressed pprof protobuf: <code>go tool pprof http://HOST/debug/pprof/heap</code>.
Needs allstop's <code>heap</code> feature and jemalloc as the allocator with profiling on (Linux); otherwise it answers 501 saying how.</li>
<li><a href="/healthz">/healthz</a>: 200 while the process is up.</li>
<li><a href="/readyz">/readyz</a>: 200 while the group runs, 503 once it is stopping.</li>
<li><a href="/debug/group">/debug/group</a>: the group's members, their states and uptimes, and the cause of the stop, as JSON.</li>
</ul>
<p>One profile runs at a time in a process; a second one gets 409. A running profile ends early when the group stops.
Every route answers GET and HEAD.</p>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::{seconds, DebugRoutes, DebugService};
    use crate::http::IntoHttpService;
    use crate::Stop;
    use hyper::service::Service;
    use hyper::{Request, StatusCode};

    fn readyz(service: &DebugService) -> StatusCode {
        let request = Request::get("/readyz").body(()).unwrap();
        let response = futures::executor::block_on(service.call(request)).unwrap();
        response.status()
    }

    /// The routes answer to their server's stop before the status has
    /// heard of it; a server builds them from its stop.
    #[test]
    fn readiness_follows_the_servers_stop() {
        let stop = Stop::never();
        let routes = DebugRoutes::new();
        let given = routes.clone().with_stop(stop.clone());
        let built = routes.clone().into_http_service(&stop);
        let other = routes.clone().with_stop(Stop::never());
        for service in [&given, &built, &other] {
            assert_eq!(readyz(service), StatusCode::OK);
        }
        stop.handle().stop("deploy");
        assert!(routes.status().is_ready());
        assert_eq!(readyz(&given), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(readyz(&built), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(readyz(&other), StatusCode::OK);
    }

    #[test]
    fn seconds_accepts_whole_numbers_in_range() {
        assert_eq!(seconds(None, 30, 300), Ok(30));
        assert_eq!(seconds(Some("debug=1"), 30, 300), Ok(30));
        assert_eq!(seconds(Some("seconds=5"), 30, 300), Ok(5));
        assert_eq!(seconds(Some("x=1&seconds=300"), 30, 300), Ok(300));
    }

    #[test]
    fn seconds_rejects_the_rest_saying_what_is_accepted() {
        for bad in [
            "seconds",
            "seconds=",
            "seconds=0",
            "seconds=-3",
            "seconds=301",
            "seconds=1.5",
            "seconds=ten",
        ] {
            let message = seconds(Some(bad), 30, 300).unwrap_err();
            assert!(
                message.contains("whole seconds from 1 to 300"),
                "{bad}: {message}"
            );
        }
    }
}
