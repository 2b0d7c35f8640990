//! Clients that connect and send nothing cannot take a server's file
//! descriptors for good: with the server's limit at 128, 200 silent
//! connections are cut at the header-read timeout and a real client is
//! served after them, and the server says why it paused. The server runs in
//! a child process (this test binary again) whose limit `ulimit -n` lowers,
//! so the limit touches nothing else.
#![cfg(all(unix, feature = "tokio", feature = "smol", feature = "tracing"))]

#[path = "http/client.rs"]
mod client;
#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

const CHILD: &str = "ALLSTOP_FD_LIMIT_CHILD";
const SILENT: usize = 200;

/// The child's side: serve `GET /` with a 500 ms header-read timeout until
/// killed, after printing the address.
#[test]
#[ignore = "run by the fd-limit tests, in a child process"]
fn child() {
    let Ok(runtime) = std::env::var(CHILD) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // The parent holds our stdin: when it ends, for any reason, so do we.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let hello = hyper::service::service_fn(|_request| async {
        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("hello"))))
    });
    let timeout = Duration::from_millis(500);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    match runtime.as_str() {
        "tokio" => tokio::runtime::Runtime::new().unwrap().block_on(async {
            let listener = allstop::tokio::http::TcpListener::bind(any).await.unwrap();
            println!("listening on {}", listener.local_addr().unwrap());
            let server = allstop::http::Server::on(allstop::tokio::Tokio::new())
                .header_read_timeout(timeout);
            let _ = server.serve(listener, hello, allstop::Stop::never()).await;
        }),
        _ => smol::block_on(async {
            let listener = allstop::smol::http::TcpListener::bind(any).await.unwrap();
            println!("listening on {}", listener.local_addr().unwrap());
            let server =
                allstop::http::Server::on(allstop::smol::Smol::new()).header_read_timeout(timeout);
            let _ = server.serve(listener, hello, allstop::Stop::never()).await;
        }),
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(runtime: &str) -> (Server, SocketAddr) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 128 && exec \"$0\" --exact child --ignored --nocapture --test-threads 1")
        .arg(exe)
        .env(CHILD, runtime)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the child's address").unwrap();
        // The test harness may have printed on the same line.
        if let Some((_, addr)) = line.split_once("listening on ") {
            break addr.trim().parse().unwrap();
        }
    };
    (Server(child), addr)
}

fn silent_clients_do_not_starve_the_server(runtime: &str) {
    let (server, addr) = start(runtime);
    // More than the server has descriptors: the last ones wait in the
    // backlog, the real client behind them.
    let silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let mut client = client::Client::connect(addr).unwrap();
    client
        .stream()
        .set_read_timeout(Some(common::HANG - Duration::from_secs(5)))
        .unwrap();
    let response = client.get("/").expect("the server never answered");
    assert_eq!(response.text(), "hello");
    drop(silent);
    // Its log says why it paused, as Go's "Accept error: ...; retrying".
    let mut server = server;
    let _ = server.0.kill();
    let mut log = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let expected = format!("accept on {addr}: Too many open files (os error 24); retrying in");
    assert!(log.contains(&expected), "{log}");
}

#[test]
fn silent_clients_do_not_starve_the_server_on_tokio() {
    common::bounded(|| silent_clients_do_not_starve_the_server("tokio"));
}

#[test]
fn silent_clients_do_not_starve_the_server_on_smol() {
    common::bounded(|| silent_clients_do_not_starve_the_server("smol"));
}
