//! What the three hello examples share: their flags, the app, logging and
//! the exit. The group itself is in each example, where it can be read.

#![allow(dead_code)] // each example uses its part of this module

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

/// The command line: `--app ADDR --debug ADDR --grace SECS
/// --stop-delay-ms N`.
pub struct Flags {
    pub app: SocketAddr,
    pub debug: SocketAddr,
    pub grace: Duration,
    /// Zero: stop at the first signal. Otherwise `/readyz` answers 503 at
    /// once and both servers keep serving this long before the stop begins
    /// (`Group::stop_delay`), so that a load balancer takes the instance
    /// out of rotation before its ports close.
    pub stop_delay: Duration,
}

const USAGE: &str = "\
usage: PROGRAM [--app ADDR] [--debug ADDR] [--grace SECS] [--stop-delay-ms N]

  --app ADDR          where the app listens (default 127.0.0.1:8080)
  --debug ADDR        where the debug server listens (default 127.0.0.1:8001)
  --grace SECS        how long members may take to stop (default 10)
  --stop-delay-ms N   on the first signal, answer /readyz with 503 and keep
                      serving for N ms before stopping, so that a load
                      balancer stops sending traffic first; N must exceed
                      its detection time (default 0: stop at once)
  --help              this message

The app answers GET / and GET /slow?ms=N (N from 0 to 60000). The debug
server has /debug/pprof/, /healthz, /readyz and /debug/group. SIGINT or
SIGTERM stops both gracefully (after the stop delay, if any); a second
signal stops them now.";

impl Flags {
    /// Parses the command line; on `--help` prints the usage and exits 0, on
    /// a bad flag prints the problem and the usage and exits 2.
    pub fn parse() -> Flags {
        match Flags::from_args(std::env::args().skip(1)) {
            Ok(Some(flags)) => flags,
            Ok(None) => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Err(problem) => {
                eprintln!("error: {problem}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Option<Flags>, String> {
        let mut flags = Flags {
            app: "127.0.0.1:8080".parse().unwrap(),
            debug: "127.0.0.1:8001".parse().unwrap(),
            grace: Duration::from_secs(10),
            stop_delay: Duration::ZERO,
        };
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            if name == "--help" || name == "-h" {
                return Ok(None);
            }
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match name.as_str() {
                "--app" => flags.app = address(&name, &value()?)?,
                "--debug" => flags.debug = address(&name, &value()?)?,
                "--grace" => {
                    let text = value()?;
                    let secs: u64 = text
                        .parse()
                        .map_err(|_| format!("--grace takes whole seconds, not {text:?}"))?;
                    flags.grace = Duration::from_secs(secs);
                }
                "--stop-delay-ms" => {
                    let text = value()?;
                    let ms: u64 = text.parse().map_err(|_| {
                        format!("--stop-delay-ms takes whole milliseconds, not {text:?}")
                    })?;
                    flags.stop_delay = Duration::from_millis(ms);
                }
                _ => return Err(format!("unknown flag {arg:?}")),
            }
        }
        Ok(Some(flags))
    }
}

fn address(flag: &str, text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{flag} takes an address like 127.0.0.1:8080, not {text:?}"))
}

/// Installs a log formatter on stderr that honours `RUST_LOG` (default
/// `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Prints the report and turns it into the exit code.
pub fn finish(report: allstop::Report) -> ExitCode {
    eprintln!("{report}");
    report.exit_code()
}

/// A runtime's sleep, for `/slow`.
pub type Sleep = fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The app: `GET /` says hello; `GET /slow?ms=N` answers after N ms.
pub fn app(
    sleep: Sleep,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    hyper::service::service_fn(move |request: Request<Incoming>| async move {
        Ok(match request.uri().path() {
            "/" => text(StatusCode::OK, "hello, QCon!\n".into()),
            "/slow" => match slow_ms(request.uri().query()) {
                Ok(ms) => {
                    sleep(Duration::from_millis(ms)).await;
                    text(StatusCode::OK, format!("slept {ms} ms\n"))
                }
                Err(problem) => text(StatusCode::BAD_REQUEST, problem),
            },
            path => text(StatusCode::NOT_FOUND, format!("no route {path}\n")),
        })
    })
}

pub fn slow_ms(query: Option<&str>) -> Result<u64, String> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .ok_or("/slow needs ?ms=N, N from 0 to 60000\n")?;
    match value.parse::<u64>() {
        Ok(ms) if ms <= 60_000 => Ok(ms),
        _ => Err(format!("ms must be from 0 to 60000, not {value:?}\n")),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
