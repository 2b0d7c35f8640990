//! Stopping in order and restarting what may restart, in every mode: the
//! guarantees "stop in order" and "restart what may restart" of the crate
//! docs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allstop::{CancelReason, Cause, Event, Exit, Outcome, Restart, Stage, Stop};

use crate::common::{yield_times, Counter, Gate, ManualTimer};

type E = std::io::Error;

/// A log of the order things happened in, shared by the members.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A member of a staged group: on its stop, checks that every member of
/// the earlier stages has ended (`earlier` counts them down), takes a few
/// turns (a later stage's stop would come in them if it came too soon),
/// then counts itself out of `mine`.
fn staged(
    name: &'static str,
    earlier: Option<Arc<AtomicUsize>>,
    mine: Arc<AtomicUsize>,
    log: Log,
) -> impl FnOnce(Stop) -> futures::future::BoxFuture<'static, Result<(), E>> + Send + 'static {
    move |stop: Stop| {
        Box::pin(async move {
            stop.await;
            if let Some(earlier) = earlier {
                assert_eq!(earlier.load(Ordering::SeqCst), 0, "{name} stopped early");
            }
            log.push(format!("{name} stopping"));
            yield_times(20).await;
            mine.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

// Stage order: a later stage never sees its stop while an earlier one
// runs; a nested group is one member of its parent's stage; the report
// times the stages in order.
conformance! {
    fn a_later_stage_never_sees_its_stop_while_an_earlier_one_runs<M>() {
        let log = Log::default();
        let first = Arc::new(AtomicUsize::new(2));
        let second = Arc::new(AtomicUsize::new(2));
        let last = Arc::new(AtomicUsize::new(1));
        let mut group = M::group();
        group.add("app", staged("app", None, first.clone(), log.clone()));
        group.add("api", staged("api", None, first.clone(), log.clone()));
        group.stage(Stage::new(1));
        group.add("worker", staged("worker", Some(first.clone()), second.clone(), log.clone()));
        let mut nested = M::group();
        nested.add("inner", staged("inner", Some(first.clone()), second.clone(), log.clone()));
        group.add("nested", nested.into_member());
        group.in_stage(Stage::LAST, |group| {
            group.add("debug", staged("debug", Some(second.clone()), last.clone(), log.clone()));
        });
        group.stop_handle().stop("deploy");
        let report = M::block_on(group.run());
        assert!(report.is_success(), "{report}");
        let lines = log.lines();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[4], "debug stopping");
        let stages: Vec<Stage> = report.stages().iter().map(|s| s.stage()).collect();
        assert_eq!(stages, [Stage::FIRST, Stage::new(1), Stage::LAST]);
        for pair in report.stages().windows(2) {
            assert!(pair[0].ended().unwrap() <= pair[1].began().unwrap(), "{report}");
        }
        assert_eq!(report.member("nested").unwrap().stage(), Stage::new(1));
        assert_eq!(report.member("debug").unwrap().stage(), Stage::LAST);
        assert!(report.to_string().contains("[stage last]"), "{report}");
    }
}

// A failure in a late stage during the stop is an outcome; the stop and
// its order go on, and the cause stays the first.
conformance! {
    fn a_failure_in_a_late_stage_during_the_stop_is_reported<M>() {
        let failed = Gate::new();
        let mut group = M::group();
        let handle = group.stop_handle();
        let wait = failed.wait();
        group.add("app", move |stop: Stop| async move {
            stop.await;
            // Drains until the late member has failed.
            wait.await;
            Ok::<(), E>(())
        });
        let group_stop = handle.stop_signal();
        group.stage(Stage::LAST);
        group.add("flusher", move |_stop: Stop| async move {
            group_stop.await;
            failed.open();
            Err::<(), _>(std::io::Error::other("flush failed"))
        });
        handle.stop("deploy");
        let report = M::block_on(group.run());
        assert_eq!(report.cause(), Some(&Cause::Requested("deploy".into())));
        assert!(report.member("app").unwrap().outcome().is_ok());
        assert_eq!(
            report.member("flusher").unwrap().outcome().to_string(),
            "failed: flush failed"
        );
        assert!(!report.is_success());
    }
}

// One grace deadline covers all the stages: at it, members are cancelled
// whatever their stage, a later stage that never got its stop included.
conformance! {
    fn one_deadline_covers_every_stage<M>() {
        let timer = ManualTimer::new();
        let mut group = M::group();
        group.timer(timer.clone()).grace(Duration::from_secs(3600));
        group.add("hung", |_stop: Stop| futures::future::pending::<Result<(), E>>());
        group.stage(Stage::new(1));
        let got_stop = Arc::new(AtomicBool::new(false));
        let seen = got_stop.clone();
        group.add("worker", move |stop: Stop| async move {
            stop.await;
            seen.store(true, Ordering::SeqCst);
            Ok::<(), E>(())
        });
        group.stop_handle().stop("deploy");
        let run = std::thread::spawn(move || M::block_on(group.run()));
        timer.wait_requested();
        timer.fire();
        let report = run.join().unwrap();
        assert_eq!(timer.requested().len(), 1, "one deadline");
        for name in ["hung", "worker"] {
            assert!(matches!(
                report.member(name).unwrap().outcome(),
                Outcome::Cancelled(CancelReason::Deadline)
            ), "{report}");
        }
        assert!(!got_stop.load(Ordering::SeqCst), "the worker's stage never began");
        assert_eq!(report.stages()[1].began(), None);
    }
}

// A second stop request cuts every stage short.
conformance! {
    fn a_second_request_cuts_every_stage_short<M>() {
        let began = Counter::new();
        let seen = began.clone();
        let mut group = M::group();
        group.observe(move |event: &Event<'_>| {
            if let Event::StageStopping { stage: Stage::FIRST } = event {
                seen.add();
            }
        });
        group.add("hung", |_stop: Stop| futures::future::pending::<Result<(), E>>());
        group.stage(Stage::LAST);
        group.add("debug", |stop: Stop| async move {
            stop.await;
            Ok::<(), E>(())
        });
        let handle = group.stop_handle();
        handle.stop("first");
        let run = std::thread::spawn(move || M::block_on(group.run()));
        began.wait_for(1);
        handle.stop("second");
        let report = run.join().unwrap();
        for name in ["hung", "debug"] {
            assert!(matches!(
                report.member(name).unwrap().outcome(),
                Outcome::Cancelled(CancelReason::SecondRequest)
            ), "{report}");
        }
    }
}

/// A member that fails every time, counting its attempts.
fn always_fails(
    attempts: &Arc<AtomicUsize>,
) -> impl FnMut(Stop) -> std::future::Ready<Result<(), E>> + Send + 'static {
    let attempts = attempts.clone();
    move |_stop| {
        let n = attempts.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err(std::io::Error::other(format!("attempt {n}"))))
    }
}

// Backoff: every delay, slept on the policy's timer, lies within the
// exponential bounds; past the intensity limit the member's failure stops
// the group, and the report says the limit was reached.
conformance! {
    fn backoff_stays_within_its_bounds_and_the_limit_escalates<M>() {
        let timer = ManualTimer::new();
        // Every sleep ends at once: the test reads the delays asked for.
        timer.fire();
        let policy = Restart::on_failure()
            .backoff(Duration::from_millis(10), Duration::from_millis(40))
            .jitter(0.5)
            .limit(4, Duration::from_secs(3600));
        let attempts = Arc::new(AtomicUsize::new(0));
        let events = Log::default();
        let sink = events.clone();
        let mut group = M::group();
        group.timer(timer.clone());
        group.observe(move |event: &Event<'_>| match event {
            Event::MemberRestarting { error, restart, .. } => sink.push(format!("restarting {restart}: {error}")),
            Event::MemberRestarted { restart, .. } => sink.push(format!("restarted {restart}")),
            Event::RestartLimitReached { restarts, .. } => sink.push(format!("limit after {restarts}")),
            _ => {}
        });
        group.add("other", |stop: Stop| async move {
            stop.await;
            Ok::<(), E>(())
        });
        group.add_restartable("flaky", policy.clone(), always_fails(&attempts));
        let report = M::block_on(group.run());
        assert_eq!(attempts.load(Ordering::SeqCst), 5);
        let delays = timer.requested();
        assert_eq!(delays.len(), 4);
        for (i, delay) in delays.iter().enumerate() {
            let (low, high) = policy.delay_bounds(i as u32 + 1);
            assert!(low <= *delay && *delay <= high, "restart {}: {delay:?}", i + 1);
            assert!(Duration::from_millis(10) <= *delay && *delay <= Duration::from_millis(40));
        }
        let flaky = report.member("flaky").unwrap();
        assert_eq!(flaky.restarts(), 4);
        assert!(flaky.restart_limit_reached());
        assert_eq!(flaky.outcome().to_string(), "failed: attempt 4");
        assert_eq!(flaky.failures().len(), 4);
        assert_eq!(flaky.failures()[0], "failed: attempt 0");
        assert_eq!(
            report.cause(),
            Some(&Cause::Finished { member: "flaky".into(), exit: Exit::Failed("attempt 4".into()) })
        );
        assert!(report.member("other").unwrap().outcome().is_ok());
        assert!(report.to_string().contains("restarted 4 times, restart limit reached"), "{report}");
        let events = events.lines();
        assert_eq!(events[0], "restarting 1: failed: attempt 0");
        assert_eq!(events[1], "restarted 1");
        assert_eq!(events.last().unwrap(), "limit after 4");
        assert_eq!(events.len(), 9, "{events:?}");
    }
}

// The failure past the limit is the stop's cause, even when an observer
// asks the group to stop as it hears the limit was reached: by then the
// stop has begun, and observers see it has.
conformance! {
    fn the_failure_past_the_limit_stays_the_cause_whatever_observers_do<M>() {
        let mut group = M::group();
        let timer = ManualTimer::new();
        timer.fire();
        group.timer(timer);
        let handle = group.stop_handle();
        let seen_stopped = Arc::new(AtomicBool::new(false));
        let seen = seen_stopped.clone();
        group.observe(move |event: &Event<'_>| {
            if let Event::RestartLimitReached { .. } = event {
                seen.store(handle.is_stopped(), Ordering::SeqCst);
                handle.stop("the observer gave up");
            }
        });
        group.add("other", |stop: Stop| async move {
            stop.await;
            Ok::<(), E>(())
        });
        let attempts = Arc::new(AtomicUsize::new(0));
        let policy = Restart::on_failure().limit(0, Duration::from_secs(3600));
        group.add_restartable("flaky", policy, always_fails(&attempts));
        let report = M::block_on(group.run());
        assert_eq!(
            report.cause(),
            Some(&Cause::Finished { member: "flaky".into(), exit: Exit::Failed("attempt 0".into()) }),
            "{report}"
        );
        assert!(seen_stopped.load(Ordering::SeqCst), "the limit was heard before the stop began");
    }
}

// No restart once the stop has begun: a member in its backoff when the
// stop comes is not started again and reports its last outcome; a member
// that fails during the stop is not restarted either.
conformance! {
    fn no_restart_once_the_stop_has_begun<M>() {
        let timer = ManualTimer::new(); // never fired: the backoff lasts
        let restarting = Counter::new();
        let seen = restarting.clone();
        let mut group = M::group();
        group.timer(timer.clone());
        group.observe(move |event: &Event<'_>| {
            if let Event::MemberRestarting { .. } = event {
                seen.add();
            }
        });
        let attempts = Arc::new(AtomicUsize::new(0));
        group.add_restartable("backing off", Restart::on_failure(), always_fails(&attempts));
        let draining = Arc::new(AtomicUsize::new(0));
        let counted = draining.clone();
        group.add_restartable("fails at the stop", Restart::always(), move |stop: Stop| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                stop.await;
                Err::<(), _>(std::io::Error::other("drain failed"))
            }
        });
        let handle = group.stop_handle();
        let run = std::thread::spawn(move || M::block_on(group.run()));
        restarting.wait_for(1);
        handle.stop("deploy");
        let report = run.join().unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(draining.load(Ordering::SeqCst), 1);
        let backing_off = report.member("backing off").unwrap();
        assert_eq!(backing_off.outcome().to_string(), "failed: attempt 0");
        assert_eq!(backing_off.restarts(), 0);
        assert_eq!(backing_off.failures(), ["failed: attempt 0"]);
        assert!(!backing_off.restart_limit_reached());
        let other = report.member("fails at the stop").unwrap();
        assert_eq!(other.outcome().to_string(), "failed: drain failed");
        assert_eq!(other.restarts(), 0);
        assert_eq!(report.cause(), Some(&Cause::Requested("deploy".into())));
    }
}

// A panicking member is restarted; a nested group can be restartable too.
conformance! {
    fn a_panicking_member_and_a_nested_group_are_restarted<M>() {
        let timer = ManualTimer::new();
        timer.fire();
        let policy = Restart::on_failure().backoff(Duration::from_millis(1), Duration::from_millis(2));
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = attempts.clone();
        let nested_attempts = Arc::new(AtomicUsize::new(0));
        let nested_counted = nested_attempts.clone();
        // The nested group ends the run only once the other has restarted.
        let restarted = Gate::new();
        let open = restarted.clone();
        let mut group = M::group();
        group.timer(timer.clone());
        group.add_restartable("panics once", policy.clone(), move |stop: Stop| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let open = open.clone();
            async move {
                if n == 0 {
                    panic!("first attempt blew up");
                }
                open.open();
                stop.await;
                Ok::<(), E>(())
            }
        });
        group.add_restartable("nested", policy, move |stop: Stop| {
            let n = nested_counted.fetch_add(1, Ordering::SeqCst);
            let mut inner = M::group();
            let restarted = restarted.wait();
            inner.add("inner", move |_stop: Stop| async move {
                if n == 0 {
                    Err(std::io::Error::other("inner failed"))
                } else {
                    restarted.await;
                    Ok::<(), E>(())
                }
            });
            inner.into_member()(stop)
        });
        let report = M::block_on(group.run());
        let panics = report.member("panics once").unwrap();
        assert!(panics.outcome().is_ok(), "{report}");
        assert_eq!(panics.restarts(), 1);
        assert_eq!(panics.failures(), ["panicked: first attempt blew up"]);
        let nested = report.member("nested").unwrap();
        assert_eq!(nested.restarts(), 1);
        assert!(nested.failures()[0].contains("inner failed"), "{report}");
        assert_eq!(
            report.cause(),
            Some(&Cause::Finished { member: "nested".into(), exit: Exit::Ok })
        );
    }
}

// Guarantee 9 with stages: once the run has returned, every `Stop` of the
// group has resolved, a later stage's included — when a later-stage member
// ended before its stage was released, and when the deadline cancelled an
// earlier stage so that the later one was never released.
conformance! {
    fn every_stop_of_every_stage_has_resolved_when_the_run_returns<M>() {
        let stops = Arc::new(Mutex::new(Vec::new()));
        let keep = |stops: &Arc<Mutex<Vec<Stop>>>| {
            let stops = stops.clone();
            move |stop: Stop| {
                stops.lock().unwrap().push(stop.clone());
                async move {
                    stop.await;
                    Ok::<(), E>(())
                }
            }
        };
        // A later-stage member that fails at once.
        let mut group = M::group();
        group.add("app", keep(&stops));
        group.stage(Stage::new(1));
        let early = stops.clone();
        group.add("fails", move |stop: Stop| {
            early.lock().unwrap().push(stop);
            async { Err::<(), E>(E::other("boom")) }
        });
        M::block_on(group.run());
        // A first stage that ignores the stop, cancelled at the deadline:
        // the last stage is never released.
        let timer = ManualTimer::new();
        let mut group = M::group();
        group.timer(timer.clone()).grace(Duration::from_secs(5));
        group.add("hung", |_stop: Stop| futures::future::pending::<Result<(), E>>());
        group.in_stage(Stage::LAST, |group| {
            group.add("debug", keep(&stops));
        });
        group.stop_handle().stop("deploy");
        let run = std::thread::spawn(move || M::block_on(group.run()));
        timer.wait_requested();
        timer.fire();
        let report = run.join().unwrap();
        assert!(matches!(report.member("hung").unwrap().outcome(), Outcome::Cancelled(_)), "{report}");
        let stops = stops.lock().unwrap();
        assert_eq!(stops.len(), 3);
        for stop in stops.iter() {
            assert!(stop.is_stopped(), "a stop never resolved");
            M::block_on(stop.clone());
        }
    }
}

// A nested group in a later stage that its parent cancels (the deadline
// passed while an earlier stage still ran) hears of it: it stops, its
// members' stop resolves and each gets its last poll, instead of being
// dropped while it waits for a stage that never comes.
conformance! {
    fn a_nested_group_in_a_later_stage_hears_its_parent_cancel_it<M>() {
        let timer = ManualTimer::new();
        let inner_stop = Arc::new(Mutex::new(None::<Stop>));
        let started = Counter::new();
        let mut nested = M::group();
        {
            let inner_stop = inner_stop.clone();
            let started = started.clone();
            nested.add("inner", move |stop: Stop| {
                *inner_stop.lock().unwrap() = Some(stop.clone());
                started.add();
                async move {
                    stop.await;
                    Ok::<(), E>(())
                }
            });
        }
        let mut group = M::group();
        group.timer(timer.clone()).grace(Duration::from_secs(5));
        group.add("hung", |_stop: Stop| futures::future::pending::<Result<(), E>>());
        group.stage(Stage::new(1));
        group.add("nested", nested.into_member());
        group.stop_handle().stop("deploy");
        let run = std::thread::spawn(move || M::block_on(group.run()));
        timer.wait_requested();
        started.wait_for(1);
        timer.fire();
        let report = run.join().unwrap();
        assert!(matches!(report.member("hung").unwrap().outcome(), Outcome::Cancelled(_)), "{report}");
        let stop = inner_stop.lock().unwrap().clone().expect("the inner member started");
        assert!(stop.is_stopped(), "the nested group never heard its parent cancel it: {report}");
    }
}

/// An error whose conversion into a `BoxError` panics.
struct Unconvertible;

impl From<Unconvertible> for allstop::BoxError {
    fn from(_: Unconvertible) -> Self {
        panic!("the conversion panicked")
    }
}

// A restartable member's error conversion is its code too: its panic is a
// failure like any other (restarted within the limit, then the outcome),
// never an unwind through `run`.
conformance! {
    fn a_restartable_members_panicking_error_conversion_is_its_outcome<M>() {
        let mut group = M::group();
        let policy = Restart::on_failure().limit(0, Duration::from_secs(10));
        group.add_restartable("converts", policy, |_stop: Stop| async { Err::<(), _>(Unconvertible) });
        let report = M::block_on(group.run());
        assert!(
            matches!(report.member("converts").unwrap().outcome(), Outcome::Panicked(m) if m == "the conversion panicked"),
            "{report}"
        );
    }
}
