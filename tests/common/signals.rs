//! The signal test, written once for both runtimes. Each runtime runs it in
//! a test binary of its own: signals go to the whole process.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use allstop::{Cause, Event, Group, Outcome, Report, Run, Stop};

use crate::common::Counter;

/// Polls `inner` and counts its first poll: a signal member installs its
/// handlers on its first poll, so after that count a signal is safe to send.
struct FirstPoll<F> {
    inner: Pin<Box<F>>,
    polled: Option<Counter>,
}

impl<F: Future> Future for FirstPoll<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let result = self.inner.as_mut().poll(cx);
        if let Some(polled) = self.polled.take() {
            polled.add();
        }
        result
    }
}

fn kill(signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(std::process::id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGTERM stops the group with the signal as its cause; a second signal
/// (SIGINT) cuts the grace period short.
pub fn signal_stops_the_group_and_a_second_cuts_the_grace<M, Fut>(
    block_on: fn(Run) -> Report,
    mut group: Group,
    signals: M,
) where
    M: FnOnce(Stop) -> Fut + Send + 'static,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let installed = Counter::new();
    let stopping = Counter::new();
    group.grace(Duration::from_secs(3600));
    let seen = stopping.clone();
    group.observe(move |event: &Event<'_>| {
        if let Event::StopBegan { .. } = event {
            seen.add();
        }
    });
    let polled = installed.clone();
    group.add_watcher("signals", move |stop: Stop| FirstPoll {
        inner: Box::pin(signals(stop)),
        polled: Some(polled),
    });
    group.add("app", |stop: Stop| async move {
        stop.await;
        Ok::<(), std::io::Error>(())
    });
    group.add("hung", |_stop| async {
        futures::future::pending::<()>().await;
        Ok::<(), std::io::Error>(())
    });
    let running = std::thread::spawn(move || block_on(group.run()));

    installed.wait_for(1);
    kill("TERM");
    stopping.wait_for(1);
    kill("INT");
    let report = running.join().unwrap();

    assert_eq!(
        report.cause(),
        Some(&Cause::Requested("SIGTERM received".into()))
    );
    assert!(report.member("app").unwrap().outcome().is_ok());
    assert!(report.member("signals").unwrap().outcome().is_ok());
    assert!(matches!(
        report.member("hung").unwrap().outcome(),
        Outcome::Cancelled(allstop::CancelReason::SecondRequest)
    ));
}
