//! Hostile members, in every mode: a member that panics in `poll`, in
//! `Drop`, in its error's `Display` or in its panic payload's `Drop`, one
//! with an awkward name, one that ignores the stop, one that blocks its
//! thread briefly, one that waits on its stop with a waker that panics —
//! each placed first, in the middle and last among obedient siblings.
//! Whatever it does, the group keeps its guarantees: `run` returns, nothing
//! outlives it, one entry per member in order, observers see a consistent
//! story.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allstop::{CancelReason, Event, Group, Outcome, Status, Stop};

use crate::common::{Counter, DropGuard, ManualTimer};
use crate::suite::{BadDisplay, Mode, PanicOnDrop};

type E = std::io::Error;

#[derive(Clone, Copy, Debug)]
enum Hostile {
    PanicInPoll,
    PanicInDrop,
    PanicInDisplay,
    PanicInPayloadDrop,
    AwkwardName,
    IgnoresTheStop,
    BlocksBriefly,
    PanickingWaker,
}

/// A waker that panics as it wakes: a member's own executor, say.
struct PanicsAsItWakes;

impl std::task::Wake for PanicsAsItWakes {
    fn wake(self: Arc<Self>) {
        panic!("panic in a waker");
    }
}

/// A panic payload whose own `Drop` panics.
struct BombPayload;

impl Drop for BombPayload {
    fn drop(&mut self) {
        panic!("panic in the payload's Drop");
    }
}

impl Hostile {
    fn name(self) -> &'static str {
        match self {
            // Empty, quoted, on two lines, and the same as a sibling's.
            Hostile::AwkwardName => "\"obeys\"\n",
            _ => "hostile",
        }
    }

    /// The outcome it must be reported with, as text.
    fn expected(self) -> &'static str {
        match self {
            Hostile::PanicInPoll => "panicked: hostile poll",
            Hostile::PanicInDrop => "panicked: panic in Drop",
            Hostile::PanicInDisplay => "failed: (the error's Display panicked: panic in Display)",
            Hostile::PanicInPayloadDrop => "panicked: panic with a non-string payload",
            Hostile::AwkwardName | Hostile::BlocksBriefly | Hostile::PanickingWaker => "ok",
            Hostile::IgnoresTheStop => "cancelled: did not stop before the deadline",
        }
    }

    fn add(self, group: &mut Group, guard: DropGuard) {
        group.add(self.name(), move |stop: Stop| async move {
            let _guard = guard;
            match self {
                Hostile::PanicInPoll => {
                    stop.await;
                    panic!("hostile poll");
                }
                Hostile::PanicInDrop => {
                    let _bomb = PanicOnDrop;
                    futures::future::pending::<()>().await;
                    Ok::<(), allstop::BoxError>(())
                }
                Hostile::PanicInDisplay => {
                    stop.await;
                    Err(BadDisplay.into())
                }
                Hostile::PanicInPayloadDrop => {
                    stop.await;
                    std::panic::panic_any(BombPayload);
                }
                Hostile::AwkwardName => {
                    stop.await;
                    Ok(())
                }
                Hostile::IgnoresTheStop => {
                    futures::future::pending::<()>().await;
                    Ok(())
                }
                Hostile::BlocksBriefly => {
                    stop.await;
                    std::thread::sleep(Duration::from_millis(30));
                    Ok(())
                }
                Hostile::PanickingWaker => {
                    // A clone of its stop, polled once with that waker and
                    // kept: the stop's broadcast wakes it.
                    let mut watched = stop.clone();
                    let waker = std::task::Waker::from(Arc::new(PanicsAsItWakes));
                    // Ready at once only where a sibling on another thread
                    // has stopped the group already: nothing to wake then.
                    let _ = std::pin::Pin::new(&mut watched)
                        .poll(&mut std::task::Context::from_waker(&waker));
                    stop.await;
                    drop(watched);
                    Ok(())
                }
            }
        });
    }
}

fn obeys(group: &mut Group, name: &str, drops: &Counter) {
    let guard = drops.guard();
    group.add(name.to_owned(), move |stop: Stop| async move {
        let _guard = guard;
        stop.await;
        Ok::<(), E>(())
    });
}

/// The hostile member among obedient siblings, at `position`.
fn check<M: Mode>(hostile: Hostile, position: usize) {
    let drops = Counter::new();
    let timer = ManualTimer::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let status = Status::new();
    let mut group = M::group();
    group.timer(timer.clone()).grace(Duration::from_secs(5));
    group.observe(status.clone());
    group.observe(move |event: &Event<'_>| {
        let line = match event {
            Event::StopBegan { .. } => "stop".to_owned(),
            Event::MemberExited { index, .. } | Event::MemberCancelled { index, .. } => {
                index.to_string()
            }
            Event::GroupDone { .. } => "done".to_owned(),
            _ => return,
        };
        sink.lock().unwrap().push(line);
    });
    let mut names = Vec::new();
    for slot in 0..3 {
        if slot == position {
            hostile.add(&mut group, drops.guard());
            names.push(hostile.name().to_owned());
        }
        if slot < 2 {
            obeys(&mut group, "obeys", &drops);
            names.push("obeys".to_owned());
        }
    }
    group.add("quits", |_stop| async { Ok::<(), E>(()) });
    names.push("quits".to_owned());
    // The deadline passes as soon as the stop begins: each member gets its
    // last poll, and whatever has not ended then is cancelled.
    timer.fire();
    let report = M::block_on(group.run());

    assert_eq!(drops.get(), 3, "a member outlived the run: {report}");
    let got: Vec<_> = report.members().iter().map(|m| m.name()).collect();
    assert_eq!(got, names);
    let text = report.to_string();
    let index = names
        .iter()
        .position(|n| n == hostile.name() && n != "obeys")
        .unwrap_or(position);
    let outcome = report.members()[index].outcome();
    assert_eq!(outcome.to_string(), hostile.expected(), "{text}");
    if let Hostile::IgnoresTheStop = hostile {
        assert!(matches!(
            outcome,
            Outcome::Cancelled(CancelReason::Deadline)
        ));
    }
    for (i, member) in report.members().iter().enumerate() {
        if i != index {
            assert!(member.outcome().is_ok(), "{text}");
        }
    }
    assert_eq!(status.members().len(), names.len());
    // Each member ends once; only the trigger may precede the stop;
    // `GroupDone` is last.
    let log = log.lock().unwrap();
    let quits = (names.len() - 1).to_string();
    let stop = log.iter().position(|l| l == "stop").expect("no StopBegan");
    assert!(log[..stop].iter().all(|l| *l == quits), "{log:?}");
    assert_eq!(log.len(), names.len() + 2, "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("done"));
}

fn matrix<M: Mode>(hostile: Hostile) {
    for position in 0..3 {
        check::<M>(hostile, position);
    }
}

conformance! {
    fn hostile_panic_in_poll<M>() {
        crate::hostile::matrix::<M>(crate::hostile::Hostile::PanicInPoll);
    }
}

conformance! {
    fn hostile_panic_in_drop<M>() {
        crate::hostile::matrix::<M>(crate::hostile::Hostile::PanicInDrop);
    }
}

conformance! {
    fn hostile_panic_in_display<M>() {
        crate::hostile::matrix::<M>(crate::hostile::Hostile::PanicInDisplay);
    }
}

conformance! {
    fn hostile_panic_in_payload_drop<M>() {
        crate::hostile::matrix::<M>(crate::hostile::Hostile::PanicInPayloadDrop);
    }
}

conformance! {
    fn hostile_awkward_name<M>() {
        crate::hostile::matrix::<M>(crate::hostile::Hostile::AwkwardName);
    }
}

conformance! {
    fn hostile_ignores_the_stop<M>() {
        crate::hostile::matrix::<M>(crate::hostile::Hostile::IgnoresTheStop);
    }
}

conformance! {
    fn hostile_panicking_waker<M>() {
        crate::hostile::matrix::<M>(crate::hostile::Hostile::PanickingWaker);
    }
}

conformance! {
    fn hostile_blocks_briefly<M>() {
        crate::hostile::matrix::<M>(crate::hostile::Hostile::BlocksBriefly);
    }
}
