//! The core on its own, without any async runtime: three members on
//! `futures::executor::block_on`, a grace deadline on a thread-based timer,
//! and the report printed at the end.
//!
//! ```text
//! cargo run --example basics
//! ```
//!
//! A "ticker" counts until the stop; a "job" finishes after a second, which
//! stops the group; a "stubborn" member ignores the stop and is cancelled at
//! the deadline. The exit code is 1 because of it.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use allstop::{Event, Group, Stop};
use futures::future::{select, Either};

/// A runtime-free sleep: a thread that sleeps, then wakes the future.
fn sleep(duration: Duration) -> impl Future<Output = ()> + Send {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(duration);
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

fn main() -> ExitCode {
    let mut group = Group::new();
    group.timer(sleep).grace(Duration::from_millis(500));
    group.observe(|event: &Event<'_>| match event {
        Event::StopBegan { cause } => eprintln!("stopping: {cause}"),
        Event::MemberCancelled { name, .. } => eprintln!("{name}: cancelled at the deadline"),
        _ => {}
    });

    group.add("ticker", |mut stop: Stop| async move {
        let mut ticks = 0;
        loop {
            match select(&mut stop, Box::pin(sleep(Duration::from_millis(200)))).await {
                Either::Left(_) => break,
                Either::Right(_) => ticks += 1,
            }
        }
        eprintln!("ticker: stopped after {ticks} ticks");
        Ok::<(), std::io::Error>(())
    });
    group.add("job", |_stop| async {
        sleep(Duration::from_secs(1)).await;
        eprintln!("job: done");
        Ok::<(), std::io::Error>(())
    });
    group.add("stubborn", |_stop| async {
        futures::future::pending::<()>().await;
        Ok::<(), std::io::Error>(())
    });

    let report = futures::executor::block_on(group.run());
    eprintln!("{report}");
    report.exit_code()
}
