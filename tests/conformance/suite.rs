//! The conformance suite: every guarantee of the crate docs (`src/lib.rs`),
//! each test written once, generic over the run mode, and run in every mode
//! by `conformance!` (see `main.rs`).

use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use allstop::{CancelReason, Cause, Event, Exit, Group, MemberState, Outcome, Status, Stop};
use futures::task::noop_waker;

use crate::common::{thread_sleep, yield_times, Counter, ManualTimer};

/// One way of running a group: in the caller's task on some executor, or a
/// task per member on some runtime.
pub trait Mode: 'static {
    /// Drives `future` to completion from a plain thread, on this mode's
    /// executor.
    fn block_on<F: Future>(future: F) -> F::Output;
    /// An empty group that runs in this mode, with the mode's real timer.
    fn group() -> Group;
}

type E = std::io::Error;

fn error(message: &str) -> E {
    E::other(message.to_owned())
}

/// An error type of our own, to check that errors come back unchanged.
#[derive(Debug, PartialEq)]
struct Boom {
    code: u32,
}

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom {}", self.code)
    }
}

impl std::error::Error for Boom {}

/// A member that waits for the stop, then returns `Ok`.
fn obeys(
    drops: &Counter,
) -> impl FnOnce(Stop) -> std::pin::Pin<Box<dyn Future<Output = Result<(), E>> + Send>> + Send + 'static
{
    let guard = drops.guard();
    move |stop| {
        Box::pin(async move {
            let _guard = guard;
            stop.await;
            Ok(())
        })
    }
}

/// A member that never finishes and ignores the stop.
fn ignores(
    drops: &Counter,
) -> impl FnOnce(Stop) -> std::pin::Pin<Box<dyn Future<Output = Result<(), E>> + Send>> + Send + 'static
{
    let guard = drops.guard();
    move |_stop| {
        Box::pin(async move {
            let _guard = guard;
            futures::future::pending::<()>().await;
            Ok(())
        })
    }
}

fn cause_member(report: &allstop::Report) -> (&str, &Exit) {
    match report.cause() {
        Some(Cause::Finished { member, exit: how }) => (member, how),
        other => panic!("expected a member cause, got {other:?}"),
    }
}

// Guarantee 1: a member finishing `Ok` stops the others.
conformance! {
    fn first_ok_exit_stops_all<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add("a", obeys(&drops));
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        group.add("b", obeys(&drops));
        let report = M::block_on(group.run());
        assert!(report.is_success(), "{report}");
        assert_eq!(cause_member(&report), ("quits", &Exit::Ok));
        assert_eq!(drops.get(), 2);
    }
}

// Guarantee 1: an error stops the others; the error comes back unchanged.
conformance! {
    fn first_err_exit_stops_all_and_comes_back_unchanged<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add("a", obeys(&drops));
        group.add("fails", |_stop| async { Err::<(), _>(Boom { code: 7 }) });
        let report = M::block_on(group.run());
        assert_eq!(
            cause_member(&report),
            ("fails", &Exit::Failed("boom 7".into()))
        );
        match report.member("fails").unwrap().outcome() {
            Outcome::Err(error) => assert_eq!(error.downcast_ref::<Boom>(), Some(&Boom { code: 7 })),
            other => panic!("expected the error, got {other:?}"),
        }
        assert!(report.member("a").unwrap().outcome().is_ok());
        assert_eq!(drops.get(), 1);
    }
}

// The peers' case: a group of one member hands its error back as it was.
conformance! {
    fn single_member_error_comes_back_unchanged<M>() {
        let mut group = M::group();
        group.add("only", |_stop| async { Err::<(), _>(Boom { code: 42 }) });
        let report = M::block_on(group.run());
        let member = report.into_members().remove(0);
        let Outcome::Err(error) = member.into_outcome() else {
            panic!("expected an error");
        };
        assert_eq!(*error.downcast::<Boom>().unwrap(), Boom { code: 42 });
    }
}

// Guarantee 1: a panic is an outcome that stops the others, never an unwind.
conformance! {
    fn first_panic_stops_all<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add("a", obeys(&drops));
        group.add("panics", |_stop| async {
            if true {
                panic!("member blew up: {}", 3);
            }
            Ok::<(), E>(())
        });
        let report = M::block_on(group.run());
        assert_eq!(
            cause_member(&report),
            ("panics", &Exit::Panicked("member blew up: 3".into()))
        );
        assert!(matches!(
            report.member("panics").unwrap().outcome(),
            Outcome::Panicked(message) if message == "member blew up: 3"
        ));
        assert!(report.member("a").unwrap().outcome().is_ok());
        assert_eq!(drops.get(), 1);
    }
}

// A member whose closure panics before returning its future.
conformance! {
    fn panic_while_starting_is_an_outcome<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add("a", obeys(&drops));
        group.add(
            "bad start",
            |_stop: Stop| -> std::future::Ready<Result<(), E>> { panic!("cannot start") },
        );
        let report = M::block_on(group.run());
        assert!(matches!(
            report.member("bad start").unwrap().outcome(),
            Outcome::Panicked(message) if message == "cannot start"
        ));
        assert_eq!(drops.get(), 1);
    }
}

// Guarantee 1: the stop is broadcast once; a clone made or polled afterwards is ready
// at once, every time; later stops do not change the cause.
conformance! {
    fn stop_is_broadcast_once_and_ready_for_late_pollers<M>() {
        let kept: Arc<Mutex<Option<Stop>>> = Arc::default();
        let keep = kept.clone();
        let mut group = M::group();
        group.add("keeps its stop", move |stop: Stop| async move {
            stop.clone().await;
            *keep.lock().unwrap() = Some(stop);
            Ok::<(), E>(())
        });
        group.add("first", |_stop| async { Ok::<(), E>(()) });
        group.add("second", |_stop| async { Err::<(), _>(error("late")) });
        let report = M::block_on(group.run());
        let (member, _) = cause_member(&report);
        assert!(member == "first" || member == "second");

        let stop = kept.lock().unwrap().take().unwrap();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            let mut late = stop.clone();
            assert_eq!(std::pin::Pin::new(&mut late).poll(&mut cx), Poll::Ready(()));
            assert_eq!(std::pin::Pin::new(&mut late).poll(&mut cx), Poll::Ready(()));
        }
        // Neither a member-triggered stop nor a later request changes the cause.
        let before = stop.cause().cloned();
        stop.handle().stop("too late");
        assert_eq!(stop.cause().cloned(), before);
        assert_eq!(report.cause(), before.as_ref());
    }
}

// Guarantee 2: run returns only after every member, however slow to stop, has been
// dropped.
conformance! {
    fn run_returns_after_every_member_is_dropped<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        for turns in 0..10 {
            let guard = drops.guard();
            group.add(format!("slow {turns}"), move |stop: Stop| async move {
                let _guard = guard;
                stop.await;
                yield_times(turns * 3).await;
                if turns % 3 == 0 {
                    thread_sleep(Duration::from_millis(turns as u64)).await;
                }
                Ok::<(), E>(())
            });
        }
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        let report = M::block_on(group.run());
        assert_eq!(
            drops.get(),
            10,
            "a member was still alive when run returned"
        );
        assert!(report.is_success());
    }
}

// Guarantee 3: one entry per member, in the order added, with its outcome and time.
conformance! {
    fn report_lists_members_in_order<M>() {
        let mut group = M::group();
        group.add("z-ok", |stop: Stop| async move {
            stop.await;
            Ok::<(), E>(())
        });
        group.add("a-err", |stop: Stop| async move {
            stop.await;
            Err::<(), _>(error("drain failed"))
        });
        group.add("m-trigger", |_stop| async move {
            thread_sleep(Duration::from_millis(20)).await;
            Ok::<(), E>(())
        });
        group.add("b-panic", |stop: Stop| async move {
            stop.await;
            if true {
                panic!("while draining");
            }
            Ok::<(), E>(())
        });
        let started = Instant::now();
        let report = M::block_on(group.run());
        let took = started.elapsed();
        let names: Vec<_> = report.members().iter().map(|m| m.name()).collect();
        assert_eq!(names, ["z-ok", "a-err", "m-trigger", "b-panic"]);
        let outcomes: Vec<_> = report
            .members()
            .iter()
            .map(|m| m.outcome().to_string())
            .collect();
        assert_eq!(
            outcomes,
            [
                "ok",
                "failed: drain failed",
                "ok",
                "panicked: while draining"
            ]
        );
        assert_eq!(cause_member(&report), ("m-trigger", &Exit::Ok));
        for member in report.members() {
            assert!(member.ran_for() >= Duration::from_millis(20), "{member:?}");
            assert!(member.ran_for() <= took, "{member:?}");
        }
        assert!(report.drain() <= took);
        let text = report.to_string();
        assert!(
            text.starts_with("group stopped: member \"m-trigger\" finished"),
            "{text}"
        );
        assert!(
            text.contains("a-err") && text.contains("failed: drain failed"),
            "{text}"
        );
    }
}

// Guarantee 5: a member that ignores the stop is cancelled when the deadline passes,
// and not before.
conformance! {
    fn deadline_cancels_a_member_that_ignores_the_stop<M>() {
        let drops = Counter::new();
        let timer = ManualTimer::new();
        let mut group = M::group();
        group.timer(timer.clone()).grace(Duration::from_secs(5));
        group.add("hung", ignores(&drops));
        group.add("good", obeys(&drops));
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        let done = Arc::new(AtomicBool::new(false));
        let run = {
            let done = done.clone();
            std::thread::spawn(move || {
                let report = M::block_on(group.run());
                done.store(true, Ordering::SeqCst);
                report
            })
        };
        assert_eq!(timer.wait_requested(), Duration::from_secs(5));
        // The deadline was armed at the stop; the obedient member ends on its
        // own, the hung one holds the run open until the deadline.
        drops.wait_for(1);
        assert!(
            !done.load(Ordering::SeqCst),
            "run returned before the deadline"
        );
        timer.fire();
        let report = run.join().unwrap();
        assert!(matches!(
            report.member("hung").unwrap().outcome(),
            Outcome::Cancelled(CancelReason::Deadline)
        ));
        assert!(report.member("good").unwrap().outcome().is_ok());
        assert_eq!(drops.get(), 2, "the cancelled member was not dropped");
        assert_eq!(report.exit_code(), ExitCode::from(1));
    }
}

// Guarantee 5 with the mode's real timer: run returns once the deadline has passed,
// and soon after it (the bound is loose on purpose: it only catches a run
// that ignores its deadline).
conformance! {
    fn deadline_on_the_real_timer<M>() {
        let drops = Counter::new();
        let grace = Duration::from_millis(100);
        let mut group = M::group();
        group.grace(grace);
        group.add("hung", ignores(&drops));
        let handle = group.stop_handle();
        let started = Instant::now();
        handle.stop("test");
        let report = M::block_on(group.run());
        let took = started.elapsed();
        assert!(matches!(report.members()[0].outcome(), Outcome::Cancelled(CancelReason::Deadline)));
        assert!(
            took >= grace,
            "returned after {took:?}, before the deadline"
        );
        assert!(
            took < grace + Duration::from_secs(5),
            "returned after {took:?}"
        );
        assert_eq!(drops.get(), 1);
    }
}

// Guarantee 6: an external stop, with its cause.
conformance! {
    fn external_stop_with_cause<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add("a", obeys(&drops));
        group.add("b", obeys(&drops));
        let handle = group.stop_handle();
        let stopper = std::thread::spawn(move || handle.stop("operator said so"));
        let report = M::block_on(group.run());
        stopper.join().unwrap();
        assert_eq!(
            report.cause(),
            Some(&Cause::Requested("operator said so".into()))
        );
        assert_eq!(
            report.cause().unwrap().to_string(),
            "stop requested: operator said so"
        );
        assert!(report.is_success());
        assert_eq!(drops.get(), 2);
    }
}

// A second external request during the drain cuts the grace short.
conformance! {
    fn second_request_cuts_the_grace_short<M>() {
        let drops = Counter::new();
        let timer = ManualTimer::new();
        let mut group = M::group();
        group.timer(timer.clone()).grace(Duration::from_secs(3600));
        group.add("hung", ignores(&drops));
        group.add("good", obeys(&drops));
        let handle = group.stop_handle();
        let run = std::thread::spawn(move || M::block_on(group.run()));
        handle.stop("first Ctrl-C");
        timer.wait_requested();
        drops.wait_for(1);
        handle.stop("second Ctrl-C");
        let report = run.join().unwrap();
        assert_eq!(
            report.cause(),
            Some(&Cause::Requested("first Ctrl-C".into()))
        );
        assert!(matches!(
            report.member("hung").unwrap().outcome(),
            Outcome::Cancelled(CancelReason::SecondRequest)
        ));
        // Item 8: the report says why, and it was no deadline.
        assert_eq!(
            report.member("hung").unwrap().outcome().to_string(),
            "cancelled: a second stop request cut the drain short"
        );
        assert!(report.member("good").unwrap().outcome().is_ok());
        assert_eq!(drops.get(), 2);
    }
}

// Without a grace deadline too.
conformance! {
    fn second_request_cuts_an_unbounded_wait_short<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add("hung", ignores(&drops));
        let handle = group.stop_handle();
        handle.stop("one");
        let seen = Arc::new(Counter::new());
        let observed = seen.clone();
        group.observe(move |event: &Event<'_>| {
            if let Event::StopBegan { .. } = event {
                observed.add();
            }
        });
        let run = std::thread::spawn(move || M::block_on(group.run()));
        seen.wait_for(1);
        handle.stop("two");
        let report = run.join().unwrap();
        assert!(matches!(report.members()[0].outcome(), Outcome::Cancelled(CancelReason::SecondRequest)));
        assert_eq!(drops.get(), 1);
    }
}

// Guarantee 7: a nested group stops when its parent stops.
conformance! {
    fn nested_group_stops_with_its_parent<M>() {
        let drops = Counter::new();
        let mut child = M::group();
        child.add("c1", obeys(&drops));
        child.add("c2", obeys(&drops));
        let child_status = Status::new();
        child.observe(child_status.clone());
        let mut parent = M::group();
        parent.add("child", child.into_member());
        parent.add("quits", |_stop| async { Ok::<(), E>(()) });
        let report = M::block_on(parent.run());
        assert!(report.is_success(), "{report}");
        assert_eq!(cause_member(&report), ("quits", &Exit::Ok));
        assert_eq!(drops.get(), 2);
        assert_eq!(
            child_status.cause(),
            Some(Cause::Parent(Box::new(Cause::Finished {
                member: "quits".into(),
                exit: Exit::Ok
            })))
        );
    }
}

// Guarantee 7: a nested group's failure stops the parent.
conformance! {
    fn nested_group_failure_stops_the_parent<M>() {
        let drops = Counter::new();
        let mut child = M::group();
        child.add("c1", obeys(&drops));
        child.add("db", |_stop| async {
            Err::<(), _>(error("connection lost"))
        });
        let mut parent = M::group();
        parent.add("sibling", obeys(&drops));
        parent.add("child", child.into_member());
        let report = M::block_on(parent.run());
        assert_eq!(
            cause_member(&report),
            (
                "child",
                &Exit::Failed("nested group failed: member \"db\" failed: connection lost".into())
            )
        );
        let Outcome::Err(error) = report.member("child").unwrap().outcome() else {
            panic!("{report}");
        };
        let failed = error.downcast_ref::<allstop::GroupFailed>().unwrap();
        assert!(failed.report().member("c1").unwrap().outcome().is_ok());
        assert!(report.member("sibling").unwrap().outcome().is_ok());
        assert_eq!(drops.get(), 2);
    }
}

// Guarantee 7: the parent's second request cuts the nested group's drain short: its
// members are dropped even though the nested deadline never passes.
conformance! {
    fn nested_group_is_forced_with_its_parent<M>() {
        let drops = Counter::new();
        let timer = ManualTimer::new();
        let mut child = M::group();
        child.timer(timer.clone()).grace(Duration::from_secs(3600));
        child.add("hung", ignores(&drops));
        let mut parent = M::group();
        parent.add("child", child.into_member());
        let handle = parent.stop_handle();
        let run = std::thread::spawn(move || M::block_on(parent.run()));
        handle.stop("first");
        timer.wait_requested();
        handle.stop("second");
        // The nested grace timer is never fired: only the force ends the run.
        let report = run.join().unwrap();
        // The nested group gets a last poll as its parent cancels it: it
        // cancels its own member, saying why (item 8). Nested spawned, its
        // members are tasks that it cannot wait for in that one poll: the
        // parent then cancels the whole nested group.
        match report.member("child").unwrap().outcome() {
            Outcome::Cancelled(CancelReason::SecondRequest) => {}
            Outcome::Err(error) => {
                let failed = error.downcast_ref::<allstop::GroupFailed>().unwrap();
                let outcome = failed.report().members()[0].outcome();
                assert!(matches!(outcome, Outcome::Cancelled(CancelReason::Parent)));
                assert_eq!(outcome.to_string(), "cancelled: its parent group cancelled it");
            }
            other => panic!("unexpected {other:?}"),
        }
        // A cancelled run cannot wait for its spawned members; their runtime
        // drops them right after (see `Group::into_member`).
        drops.wait_for(1);
    }
}

// Guarantee 9: an empty group returns at once with an empty report.
conformance! {
    fn empty_group_returns_at_once<M>() {
        let report = M::block_on(M::group().run());
        assert!(report.members().is_empty());
        assert_eq!(report.cause(), None);
        assert!(report.is_success());
        assert_eq!(report.exit_code(), ExitCode::SUCCESS);
        assert_eq!(report.to_string(), "group had no members");
    }
}

// Guarantee 3: the report's exit code.
conformance! {
    fn exit_code_follows_the_outcomes<M>() {
        let code = |member: fn(&mut Group)| {
            let mut group = M::group();
            member(&mut group);
            ExitCode::from(&M::block_on(group.run()))
        };
        assert_eq!(
            code(|g| {
                g.add("ok", |_s| async { Ok::<(), E>(()) });
            }),
            ExitCode::SUCCESS
        );
        assert_eq!(
            code(|g| {
                g.add("err", |_s| async { Err::<(), _>(error("x")) });
            }),
            ExitCode::from(1)
        );
        assert_eq!(
            code(|g| {
                g.add("panic", |_s| async { panic!("x") as Result<(), E> });
            }),
            ExitCode::from(1)
        );
    }
}

// The peers' case: the cause is the erroring trigger, not the blocked
// sibling's reaction to it (here the sibling fails too as it stops).
conformance! {
    fn cause_is_the_trigger_not_the_reaction<M>() {
        let mut group = M::group();
        group.add("blocked", |stop: Stop| async move {
            stop.await;
            Err::<(), _>(error("interrupted"))
        });
        group.add("trigger", |_stop| async move {
            yield_times(5).await;
            Err::<(), _>(error("trigger failed"))
        });
        let report = M::block_on(group.run());
        assert_eq!(
            cause_member(&report),
            ("trigger", &Exit::Failed("trigger failed".into()))
        );
        assert_eq!(
            report.member("blocked").unwrap().outcome().to_string(),
            "failed: interrupted"
        );
    }
}

// The peers' case: a clean first exit stays the cause; a later error is in
// the report.
conformance! {
    fn clean_first_exit_stays_the_cause<M>() {
        let mut group = M::group();
        group.add("clean", |_stop| async { Ok::<(), E>(()) });
        group.add("errs later", |stop: Stop| async move {
            stop.await;
            Err::<(), _>(error("late error"))
        });
        let report = M::block_on(group.run());
        assert_eq!(cause_member(&report), ("clean", &Exit::Ok));
        assert_eq!(
            report.member("errs later").unwrap().outcome().to_string(),
            "failed: late error"
        );
        assert!(!report.is_success());
    }
}

// The peers' case: 100 members that each take a different time to stop are
// all awaited.
conformance! {
    fn hundred_members_each_awaited<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        for i in 0..100 {
            let guard = drops.guard();
            group.add(format!("m{i}"), move |stop: Stop| async move {
                let _guard = guard;
                stop.await;
                yield_times(i % 17).await;
                if i % 10 == 0 {
                    thread_sleep(Duration::from_millis(i as u64 / 10)).await;
                }
                Ok::<(), E>(())
            });
        }
        group.stop_handle().stop("go");
        let report = M::block_on(group.run());
        assert_eq!(report.members().len(), 100);
        assert!(report.is_success());
        assert_eq!(drops.get(), 100);
    }
}

// The peers' case: a member that returns an error slowly after the stop is
// awaited, and nothing of it survives the run.
conformance! {
    fn slow_error_after_stop_leaks_nothing<M>() {
        let drops = Counter::new();
        let guard = drops.guard();
        let mut group = M::group();
        group.add("slow error", move |stop: Stop| async move {
            let _guard = guard;
            stop.await;
            thread_sleep(Duration::from_millis(30)).await;
            Err::<(), _>(error("cleanup failed"))
        });
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        let report = M::block_on(group.run());
        assert_eq!(drops.get(), 1);
        assert_eq!(
            report.member("slow error").unwrap().outcome().to_string(),
            "failed: cleanup failed"
        );
    }
}

// The peers' case: a panic is reported once, and later normal exits do not
// hide it.
conformance! {
    fn panic_is_not_hidden_by_later_exits<M>() {
        let panics = Arc::new(Mutex::new(0));
        let seen = panics.clone();
        let mut group = M::group();
        group.observe(move |event: &Event<'_>| {
            if let Event::MemberExited {
                outcome: Outcome::Panicked(_),
                ..
            } = event
            {
                *seen.lock().unwrap() += 1;
            }
        });
        group.add("panics", |_stop| async { panic!("once") as Result<(), E> });
        for i in 0..5 {
            group.add(format!("ok {i}"), move |stop: Stop| async move {
                stop.await;
                yield_times(i).await;
                Ok::<(), E>(())
            });
        }
        let report = M::block_on(group.run());
        assert_eq!(*panics.lock().unwrap(), 1);
        let panicked = report
            .members()
            .iter()
            .filter(|m| matches!(m.outcome(), Outcome::Panicked(_)))
            .count();
        assert_eq!(panicked, 1);
        assert_eq!(
            cause_member(&report),
            ("panics", &Exit::Panicked("once".into()))
        );
        assert_eq!(report.exit_code(), ExitCode::from(1));
    }
}

// The peers' case: a hung member is named as cancelled and the rest still
// stop on their own.
conformance! {
    fn hung_member_is_named_and_the_rest_stop<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.grace(Duration::from_millis(50));
        group.add("a", obeys(&drops));
        group.add("stuck", ignores(&drops));
        group.add("b", obeys(&drops));
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        let report = M::block_on(group.run());
        let states: Vec<_> = report
            .members()
            .iter()
            .map(|m| (m.name(), m.outcome().to_string()))
            .collect();
        assert_eq!(
            states,
            [
                ("a", "ok".to_string()),
                (
                    "stuck",
                    "cancelled: did not stop before the deadline".to_string()
                ),
                ("b", "ok".to_string()),
                ("quits", "ok".to_string()),
            ]
        );
        assert!(report.to_string().contains("stuck"));
        assert_eq!(drops.get(), 3);
    }
}

// Watchers: dismissed, `Ok`, once every other member has ended.
conformance! {
    fn watcher_is_dismissed_when_the_workers_end<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add_watcher("watcher", ignores(&drops));
        group.add("worker", obeys(&drops));
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        let report = M::block_on(group.run());
        assert!(report.is_success(), "{report}");
        assert_eq!(cause_member(&report), ("quits", &Exit::Ok));
        assert_eq!(drops.get(), 2);
    }
}

// Watchers: one that finishes stops the group like any member.
conformance! {
    fn watcher_exit_stops_the_group<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add("worker", obeys(&drops));
        group.add_watcher("signals", |stop: Stop| async move {
            stop.handle().stop("SIGTERM");
            // A watcher keeps listening during the drain.
            futures::future::pending::<()>().await;
            Ok::<(), E>(())
        });
        let report = M::block_on(group.run());
        assert_eq!(report.cause(), Some(&Cause::Requested("SIGTERM".into())));
        assert!(report.is_success());
        assert_eq!(drops.get(), 1);
    }
}

// The observer sees the lifecycle in order; the status follows it.
conformance! {
    fn observer_sees_the_lifecycle_in_order<M>() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let timer = ManualTimer::new();
        let status = Status::new();
        let mut group = M::group();
        group.timer(timer.clone()).grace(Duration::from_secs(1));
        group.observe(move |event: &Event<'_>| {
            let line = match event {
                Event::MemberStarted { name, .. } => format!("started {name}"),
                Event::StopBegan { cause } => format!("stop: {cause}"),
                Event::MemberExited { name, outcome, .. } => format!("exited {name}: {outcome}"),
                Event::MemberCancelled { name, .. } => format!("cancelled {name}"),
                Event::GroupDone { report } => format!("done, {} members", report.members().len()),
                _ => "unknown".into(),
            };
            sink.lock().unwrap().push(line);
        });
        group.observe(status.clone());
        let drops = Counter::new();
        group.add("hung", ignores(&drops));
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        let watch = status.clone();
        let run = std::thread::spawn(move || M::block_on(group.run()));
        timer.wait_requested();
        let members = watch.members();
        assert_eq!(members[0].state, MemberState::Stopping);
        // Spawned, the trigger's result may reach the collector just after the
        // stop it began.
        assert!(
            [MemberState::Stopping, MemberState::Exited(Exit::Ok)].contains(&members[1].state),
            "{members:?}"
        );
        assert!(watch.is_stopping());
        timer.fire();
        run.join().unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log[..2], ["started hung", "started quits"]);
        let mut middle = log[2..4].to_vec();
        middle.sort();
        assert_eq!(
            middle,
            ["exited quits: ok", "stop: member \"quits\" finished"]
        );
        assert_eq!(log[4..], ["cancelled hung", "done, 2 members"]);
        let members = status.members();
        assert_eq!(members[1].state, MemberState::Exited(Exit::Ok));
        assert_eq!(status.members()[0].state, MemberState::Cancelled);
    }
}

// A stop requested before the run starts: members start with the stop
// already broadcast, and end.
conformance! {
    fn stop_before_run<M>() {
        let drops = Counter::new();
        let mut group = M::group();
        group.add("a", obeys(&drops));
        group.stop_handle().stop("early");
        let report = M::block_on(group.run());
        assert_eq!(report.cause(), Some(&Cause::Requested("early".into())));
        assert!(report.is_success());
        assert_eq!(drops.get(), 1);
    }
}

// Dropping a run before it completes cancels every member, and never
// unwinds, even when one of them panics in its `Drop`.
conformance! {
    fn dropping_the_run_drops_every_member<M>() {
        let drops = Counter::new();
        let started = Counter::new();
        let mut group = M::group();
        for i in 0..4 {
            let guard = drops.guard();
            let started = started.clone();
            group.add(format!("m{i}"), move |_stop| async move {
                let _guard = guard;
                let _bomb = if i == 1 { Some(PanicOnDrop) } else { None };
                started.add();
                futures::future::pending::<()>().await;
                Ok::<(), E>(())
            });
        }
        M::block_on(async {
            let mut run = group.run();
            // Drive the run until every member has started, then drop it.
            std::future::poll_fn(|cx| {
                assert!(std::pin::Pin::new(&mut run).poll(cx).is_pending());
                if started.get() == 4 {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(run)));
            assert!(dropped.is_ok(), "dropping the run unwound");
        });
        // Spawned members are dropped by their runtime soon after: wait for it.
        drops.wait_for(4);
    }
}

// A member whose future panics in `poll` and then again in its `Drop` (as
// it is dropped after that panic) is reported panicked; the run neither
// unwinds nor loses the others.
conformance! {
    fn a_member_that_panics_in_poll_and_in_drop_is_reported<M>() {
        struct PanicTwice;
        impl std::future::Future for PanicTwice {
            type Output = Result<(), E>;
            fn poll(self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
                panic!("panic in poll");
            }
        }
        impl Drop for PanicTwice {
            fn drop(&mut self) {
                panic!("panic in Drop");
            }
        }
        let drops = Counter::new();
        let mut group = M::group();
        let guard = drops.guard();
        group.add("obeys", move |stop: Stop| async move {
            let _guard = guard;
            stop.await;
            Ok::<(), E>(())
        });
        group.add("twice", |_stop| PanicTwice);
        let report = M::block_on(group.run());
        let twice = report.member("twice").unwrap();
        assert!(matches!(twice.outcome(), Outcome::Panicked(_)), "{report}");
        assert!(report.member("obeys").unwrap().outcome().is_ok(), "{report}");
        assert_eq!(drops.get(), 1);
    }
}

// A member whose future ends, with `Ok` or with an error, and then panics
// in its `Drop` (dropped as it ends) is reported panicked, in every mode;
// the error, dropped in its place, may panic in its own `Drop` too.
conformance! {
    fn a_member_that_ends_then_panics_in_drop_is_reported<M>() {
        #[derive(Debug)]
        struct PanicsInDrop;
        impl Drop for PanicsInDrop {
            fn drop(&mut self) {
                panic!("error dropped");
            }
        }
        #[derive(Debug)]
        struct Failed(#[allow(dead_code)] PanicsInDrop);
        impl std::fmt::Display for Failed {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("failed")
            }
        }
        impl std::error::Error for Failed {}
        struct EndsThenPanics(Option<Result<(), Failed>>);
        impl std::future::Future for EndsThenPanics {
            type Output = Result<(), Failed>;
            fn poll(mut self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
                Poll::Ready(self.0.take().expect("polled once"))
            }
        }
        impl Drop for EndsThenPanics {
            fn drop(&mut self) {
                panic!("panic in Drop");
            }
        }
        let mut group = M::group();
        group.add("ok", |_stop| EndsThenPanics(Some(Ok(()))));
        group.add("err", |_stop| EndsThenPanics(Some(Err(Failed(PanicsInDrop)))));
        let report = M::block_on(group.run());
        for name in ["ok", "err"] {
            let outcome = report.member(name).unwrap().outcome();
            assert!(matches!(outcome, Outcome::Panicked(m) if m == "panic in Drop"), "{report}");
        }
    }
}

// Guarantee 8: a member on another runtime: its error and its panic come back as if
// it ran here, and cancelling it cancels its task.
conformance! {
    fn member_on_another_runtime<M>() {
        let pool = crate::common::Pool::new();
        let drops = Counter::new();
        let mut group = M::group();
        group.add_on("elsewhere", pool.clone(), |stop: Stop| async move {
            stop.await;
            Err::<(), _>(Boom { code: 9 })
        });
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        let report = M::block_on(group.run());
        let Outcome::Err(error) = report.member("elsewhere").unwrap().outcome() else {
            panic!("{report}");
        };
        assert_eq!(error.downcast_ref::<Boom>(), Some(&Boom { code: 9 }));

        let mut group = M::group();
        group.add_on("panics elsewhere", pool.clone(), |_stop| async {
            panic!("far away") as Result<(), E>
        });
        let report = M::block_on(group.run());
        assert_eq!(
            cause_member(&report),
            ("panics elsewhere", &Exit::Panicked("far away".into()))
        );

        // Cancelled once it runs: its task is gone when `run` returns.
        let started = Counter::new();
        let running = started.clone();
        let mut group = M::group();
        let hung = ignores(&drops);
        group.add_on("hung elsewhere", pool, move |stop| {
            running.add();
            hung(stop)
        });
        let handle = group.stop_handle();
        let run = std::thread::spawn(move || M::block_on(group.run()));
        started.wait_for(1);
        handle.stop("one");
        handle.stop("two");
        let report = run.join().unwrap();
        assert!(matches!(
            report.members()[0].outcome(),
            Outcome::Cancelled(CancelReason::SecondRequest)
        ));
        assert_eq!(drops.get(), 1, "the member's task outlived the run");
    }
}

// The stop delay: a request is announced at once (readiness fails) while
// members keep running, and the stop begins when the delay has passed.
conformance! {
    fn stop_delay_announces_then_stops<M>() {
        let drops = Counter::new();
        let timer = ManualTimer::new();
        let status = Status::new();
        let mut group = M::group();
        group.timer(timer.clone()).stop_delay(Duration::from_secs(7));
        group.observe(status.clone());
        group.add("app", obeys(&drops));
        let handle = group.stop_handle();
        let run = std::thread::spawn(move || M::block_on(group.run()));
        handle.stop("deploy");
        assert_eq!(timer.wait_requested(), Duration::from_secs(7));
        assert!(!status.is_ready());
        assert!(!status.is_stopping());
        assert!(!handle.is_stopped());
        assert_eq!(drops.get(), 0, "a member stopped during the delay");
        timer.fire();
        let report = run.join().unwrap();
        assert_eq!(report.cause(), Some(&Cause::Requested("deploy".into())));
        assert!(report.is_success());
        assert_eq!(drops.get(), 1);
    }
}

// A second request skips the stop delay.
conformance! {
    fn second_request_skips_the_stop_delay<M>() {
        let drops = Counter::new();
        let timer = ManualTimer::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let mut group = M::group();
        group.timer(timer.clone()).stop_delay(Duration::from_secs(3600));
        group.observe(move |event: &Event<'_>| match event {
            Event::StopRequested { .. } => sink.lock().unwrap().push("requested"),
            Event::StopBegan { .. } => sink.lock().unwrap().push("began"),
            _ => {}
        });
        group.add("app", obeys(&drops));
        let handle = group.stop_handle();
        let run = std::thread::spawn(move || M::block_on(group.run()));
        handle.stop("first");
        timer.wait_requested();
        assert!(!handle.is_stopped(), "the stop began during the delay");
        handle.stop("second");
        // The delay's timer is never fired: the run returns all the same,
        // the stop having begun without it.
        let report = run.join().unwrap();
        assert_eq!(report.cause(), Some(&Cause::Requested("first".into())));
        assert_eq!(*log.lock().unwrap(), ["requested", "began"]);
        // The member saw its stop and ended in its last poll.
        assert!(report.is_success(), "{report}");
        assert_eq!(drops.get(), 1);
    }
}

// ---------------------------------------------------------------------------
// Issue 10: each item the group got wrong, one test each.

/// A value whose `Drop` blocks the thread briefly before it counts: a member
/// that is slow to go, so that a run returning early is caught.
struct SlowDrop {
    _guard: crate::common::DropGuard,
}

impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A value whose `Drop` panics.
pub struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("panic in Drop");
    }
}

/// An error whose `Display` panics.
#[derive(Debug)]
pub struct BadDisplay;

impl fmt::Display for BadDisplay {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("panic in Display")
    }
}

impl std::error::Error for BadDisplay {}

// Guarantee 2, item 1: a member on another runtime (`add_on`) is gone when
// `run` returns, also when the group cancels it.
conformance! {
    fn add_on_member_is_gone_when_run_returns<M>() {
        let pool = crate::common::Pool::new();
        let drops = Counter::new();
        let started = Counter::new();
        let mut group = M::group();
        let guard = SlowDrop {
            _guard: drops.guard(),
        };
        let running = started.clone();
        group.add_on("elsewhere", pool, move |_stop| async move {
            let _guard = guard;
            running.add();
            futures::future::pending::<()>().await;
            Ok::<(), E>(())
        });
        let handle = group.stop_handle();
        let run = std::thread::spawn(move || M::block_on(group.run()));
        started.wait_for(1);
        handle.stop("one");
        handle.stop("two");
        let report = run.join().unwrap();
        assert_eq!(drops.get(), 1, "run returned while the add_on member was alive");
        assert!(matches!(report.members()[0].outcome(), Outcome::Cancelled { .. }), "{report}");
    }
}

// Guarantee 2, items 2 and 3: a member that panics in `Drop` as it is
// cancelled neither leaks its siblings, nor unwinds through `run`, nor
// aborts the process.
conformance! {
    fn panic_in_drop_while_cancelled_leaks_nothing<M>() {
        let drops = Counter::new();
        let timer = ManualTimer::new();
        let mut group = M::group();
        group.timer(timer.clone()).grace(Duration::from_secs(5));
        group.add("a", ignores(&drops));
        group.add("b", ignores(&drops));
        group.add("panics in drop", |_stop| async {
            let _bomb = PanicOnDrop;
            futures::future::pending::<()>().await;
            Ok::<(), E>(())
        });
        group.add("c", ignores(&drops));
        group.add("quits", |_stop| async { Ok::<(), E>(()) });
        let run = std::thread::spawn(move || M::block_on(group.run()));
        timer.wait_requested();
        timer.fire();
        let report = run.join().expect("run unwound");
        assert_eq!(drops.get(), 3, "a sibling of the panicking member leaked");
        assert_eq!(report.members().len(), 5);
        assert!(
            matches!(report.member("panics in drop").unwrap().outcome(), Outcome::Panicked(m) if m == "panic in Drop"),
            "{report}"
        );
    }
}

// Guarantees 1 and 3, item 4: an error whose `Display` panics neither
// unwinds through `run` nor hangs it; the error comes back unchanged.
conformance! {
    fn panicking_display_breaks_nothing<M>() {
        let drops = Counter::new();
        let status = Status::new();
        let mut group = M::group();
        group.observe(status.clone());
        group.add("a", obeys(&drops));
        group.add("bad", |_stop| async { Err::<(), _>(BadDisplay) });
        group.add("b", obeys(&drops));
        let report = M::block_on(group.run());
        assert_eq!(drops.get(), 2);
        let (member, how) = cause_member(&report);
        assert_eq!(member, "bad");
        assert!(matches!(how, Exit::Failed(m) if m.contains("Display")), "{how:?}");
        let Outcome::Err(error) = report.member("bad").unwrap().outcome() else {
            panic!("expected the error");
        };
        assert!(error.downcast_ref::<BadDisplay>().is_some());
        let text = report.to_string();
        assert!(text.contains("bad"), "{text}");
        assert!(matches!(&status.members()[1].state, MemberState::Exited(_)));
    }
}

// Item 5: a nested group's failure names one member, and its `source()` is
// that member's error.
conformance! {
    fn group_failed_blames_one_member<M>() {
        let mut child = M::group();
        child.add("a", |_stop| async { panic!("boom") as Result<(), E> });
        child.add("b", |stop: Stop| async move {
            stop.await;
            Err::<(), _>(error("disk full"))
        });
        let mut parent = M::group();
        parent.add("child", child.into_member());
        let report = M::block_on(parent.run());
        let Outcome::Err(failed) = report.member("child").unwrap().outcome() else {
            panic!("{report}");
        };
        assert_eq!(failed.to_string(), "nested group failed: member \"a\" panicked: boom");
        assert!(failed.source().is_none(), "a panic has no error, yet source() is {:?}", failed.source());

        // And the other way round: the failing member is the one named.
        let mut child = M::group();
        child.add("a", |stop: Stop| async move {
            stop.await;
            panic!("later") as Result<(), E>
        });
        child.add("b", |_stop| async { Err::<(), _>(error("disk full")) });
        let mut parent = M::group();
        parent.add("child", child.into_member());
        let report = M::block_on(parent.run());
        let Outcome::Err(failed) = report.member("child").unwrap().outcome() else {
            panic!("{report}");
        };
        assert_eq!(failed.to_string(), "nested group failed: member \"b\" failed: disk full");
        assert_eq!(failed.source().unwrap().to_string(), "disk full");
    }
}

// Item 6: the member that began the stop is the only exit that may reach
// the observers before `StopBegan`.
conformance! {
    fn only_the_trigger_exits_before_stop_began<M>() {
        for _ in 0..20 {
            let log = Arc::new(Mutex::new(Vec::new()));
            let sink = log.clone();
            let mut group = M::group();
            group.observe(move |event: &Event<'_>| match event {
                Event::StopBegan { .. } => sink.lock().unwrap().push("stop".to_owned()),
                Event::MemberExited { name, .. } => sink.lock().unwrap().push(name.to_string()),
                _ => {}
            });
            for i in 0..6 {
                group.add(format!("m{i}"), |stop: Stop| async move {
                    stop.await;
                    Ok::<(), E>(())
                });
            }
            group.add("quits", |_stop| async { Ok::<(), E>(()) });
            M::block_on(group.run());
            let log = log.lock().unwrap();
            let began = log.iter().position(|line| line == "stop").expect("no StopBegan");
            assert!(log[..began].iter().all(|line| line == "quits"), "{log:?}");
            assert_eq!(log.len(), 8, "{log:?}");
        }
    }
}

// Item 7: a group forced (stopped twice) before `run` starts no member, in
// every mode, and reports each one cancelled. It drops them unstarted, and
// a member whose closure panics when dropped unwinds nothing and leaves
// none behind.
conformance! {
    fn forced_before_run_starts_nothing<M>() {
        let (started, drops) = (Counter::new(), Counter::new());
        let mut group = M::group();
        for i in 0..4 {
            let (started, guard) = (started.clone(), drops.guard());
            let bomb = if i == 2 { Some(PanicOnDrop) } else { None };
            group.add(format!("m{i}"), move |stop: Stop| async move {
                let _kept = (guard, bomb);
                started.add();
                stop.await;
                Ok::<(), E>(())
            });
        }
        let handle = group.stop_handle();
        handle.stop("one");
        handle.stop("two");
        let report = M::block_on(group.run());
        assert_eq!(started.get(), 0, "a member was started");
        assert!(
            report
                .members()
                .iter()
                .all(|m| matches!(m.outcome(), Outcome::Cancelled(CancelReason::SecondRequest))),
            "{report}"
        );
        assert_eq!(report.cause(), Some(&Cause::Requested("one".into())));
        assert_eq!(drops.get(), 4, "a member outlived the run");
    }
}

// Item 9: with a zero grace, members that end at their first poll after the
// stop are done, not cancelled, on every runtime.
conformance! {
    fn zero_grace_keeps_members_that_are_done<M>() {
        for _ in 0..20 {
            let drops = Counter::new();
            let mut group = M::group();
            group.grace(Duration::ZERO);
            for i in 0..4 {
                group.add(format!("m{i}"), obeys(&drops));
            }
            group.stop_handle().stop("SIGTERM");
            let report = M::block_on(group.run());
            assert!(report.is_success(), "{report}");
            assert_eq!(drops.get(), 4);
        }
    }
}

// Item 10: an empty group's stop resolves once its run has returned.
conformance! {
    fn empty_group_stop_resolves<M>() {
        let group = M::group();
        let stop = group.stop_handle().stop_signal();
        let report = M::block_on(group.run());
        assert!(report.members().is_empty());
        assert!(stop.is_stopped());
        M::block_on(stop);
    }
}

// Item 10: `Tokio::new()` outside a tokio runtime says what to do.
conformance! {
    fn tokio_outside_its_runtime_says_what_to_do<M>() {
        #[cfg(feature = "tokio")]
        {
            let in_tokio = Arc::new(AtomicBool::new(false));
            let probe = in_tokio.clone();
            let mut group = M::group();
            group.add("probe", move |stop: Stop| async move {
                probe.store(tokio::runtime::Handle::try_current().is_ok(), Ordering::SeqCst);
                stop.await;
                Ok::<(), E>(())
            });
            group.add_on("on tokio", allstop::tokio::Tokio::new(), |_stop| async {
                Ok::<(), E>(())
            });
            let report = M::block_on(group.run());
            let outcome = report.member("on tokio").unwrap().outcome();
            if in_tokio.load(Ordering::SeqCst) {
                assert!(outcome.is_ok(), "{report}");
            } else {
                assert!(
                    matches!(outcome, Outcome::Panicked(m) if m.contains("Tokio::with_handle")),
                    "{report}"
                );
            }
        }
    }
}

// Item 8: a cancelled member's outcome says why: the deadline, a second
// request, or the parent cancelling it (here the parent's deadline).
conformance! {
    fn cancelled_says_why<M>() {
        let drops = Counter::new();
        let timer = ManualTimer::new();
        let mut child = Group::new();
        child.add("hung child", ignores(&drops));
        let mut parent = M::group();
        parent.timer(timer.clone()).grace(Duration::from_secs(5));
        // In-task, whatever the mode, so that it reports its members.
        parent.add("child", child.into_member());
        parent.add("hung", ignores(&drops));
        parent.add("quits", |_stop| async { Ok::<(), E>(()) });
        let run = std::thread::spawn(move || M::block_on(parent.run()));
        timer.wait_requested();
        timer.fire();
        let report = run.join().unwrap();
        assert_eq!(
            report.member("hung").unwrap().outcome().to_string(),
            "cancelled: did not stop before the deadline"
        );
        let Outcome::Err(error) = report.member("child").unwrap().outcome() else {
            panic!("{report}");
        };
        let failed = error.downcast_ref::<allstop::GroupFailed>().unwrap();
        assert_eq!(
            failed.report().members()[0].outcome().to_string(),
            "cancelled: its parent group cancelled it"
        );
        assert_eq!(drops.get(), 2);
    }
}

// Item 10: the signal members' futures are named, the same in both
// adapters, so that a member can be stored or wrapped.
conformance! {
    fn signal_futures_are_named<M>() {
        #[cfg(feature = "tokio")]
        let _: fn(Stop) -> allstop::tokio::Signals = |stop| allstop::tokio::signals()(stop);
        #[cfg(feature = "smol")]
        let _: fn(Stop) -> allstop::smol::Signals = |stop| allstop::smol::signals()(stop);
        M::block_on(async {});
    }
}

/// An error type whose conversion into a `BoxError` panics.
struct Unconvertible;

impl From<Unconvertible> for allstop::BoxError {
    fn from(_: Unconvertible) -> Self {
        panic!("the conversion panicked")
    }
}

// Guarantee 2: a member's error conversion is the member's code too; its
// panic is the member's outcome, never an unwind through `run`.
conformance! {
    fn a_panicking_error_conversion_is_the_members_outcome<M>() {
        let mut group = M::group();
        group.add("converts", |_stop| async { Err::<(), _>(Unconvertible) });
        group.add("waits", |stop: Stop| async move {
            stop.await;
            Ok::<(), E>(())
        });
        let report = M::block_on(group.run());
        assert!(
            matches!(report.member("converts").unwrap().outcome(), Outcome::Panicked(m) if m == "the conversion panicked"),
            "{report}"
        );
        assert!(report.member("waits").unwrap().outcome().is_ok(), "{report}");
    }
}

// Guarantee 5: with a zero grace, a member the stop has woken gets its last
// poll even behind members that keep waking themselves (a busy loop that
// ignores the stop): it is done, not cancelled; the busy ones are cancelled.
conformance! {
    fn zero_grace_polls_every_woken_member_behind_busy_ones<M>() {
        for _ in 0..20 {
            let drops = Counter::new();
            let mut group = M::group();
            group.grace(Duration::ZERO);
            for i in 0..8 {
                group.add(format!("busy {i}"), |_stop: Stop| async {
                    loop {
                        crate::common::yield_times(1).await;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), E>(())
                });
            }
            for i in 0..3 {
                group.add(format!("obeys {i}"), obeys(&drops));
            }
            group.stop_handle().stop("SIGTERM");
            let report = M::block_on(group.run());
            for i in 0..3 {
                let outcome = report.member(&format!("obeys {i}")).unwrap().outcome();
                assert!(outcome.is_ok(), "{report}");
            }
            assert_eq!(drops.get(), 3);
        }
    }
}
