//! The conformance suite, instantiated once per run mode (DESIGN.md R3).
//!
//! Every test in `suite.rs` runs in every mode below, bounded by a timeout.

#[path = "../common/mod.rs"]
mod common;
mod props;
mod suite;

use std::future::Future;
use std::marker::PhantomData;

use allstop::{Group, Nested, Run, Stop, Timer};

use crate::common::{thread_sleep, Pool};
use crate::suite::Mode;

/// An executor and its runtime: what a mode runs on.
pub trait Exec: 'static {
    /// The runtime spawned members run on.
    type Runtime: allstop::Runtime;
    /// Drives `future` to completion from a plain thread.
    fn block_on<F: Future>(future: F) -> F::Output;
    fn runtime() -> Self::Runtime;
    /// The executor's real timer.
    fn timer() -> impl Timer;
}

/// Every member in the run's own task, on executor `E`.
pub struct InTask<E>(PhantomData<E>);

/// A task per member on `E`'s runtime.
pub struct Spawned<E>(PhantomData<E>);

impl<E: Exec> Mode for InTask<E> {
    fn block_on<F: Future>(future: F) -> F::Output {
        E::block_on(future)
    }
    fn run(group: Group) -> Run {
        group.run()
    }
    fn nest(group: Group) -> impl FnOnce(Stop) -> Nested + Send + 'static {
        group.into_member()
    }
    fn timer() -> impl Timer {
        E::timer()
    }
}

impl<E: Exec> Mode for Spawned<E> {
    fn block_on<F: Future>(future: F) -> F::Output {
        E::block_on(future)
    }
    fn run(group: Group) -> Run {
        group.run_spawned(E::runtime())
    }
    fn nest(group: Group) -> impl FnOnce(Stop) -> Nested + Send + 'static {
        group.into_member_spawned(E::runtime())
    }
    fn timer() -> impl Timer {
        E::timer()
    }
}

/// `futures::executor::block_on` and a `futures` thread pool: no runtime
/// crate at all.
pub struct Futures;

impl Exec for Futures {
    type Runtime = Pool;
    fn block_on<F: Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }
    fn runtime() -> Pool {
        static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
        POOL.get_or_init(Pool::new).clone()
    }
    fn timer() -> impl Timer {
        thread_sleep
    }
}

/// A tokio runtime, current-thread or multi-thread (2 workers).
#[cfg(feature = "tokio")]
pub struct Tokio<const MULTI_THREAD: bool>;

#[cfg(feature = "tokio")]
impl<const MULTI_THREAD: bool> Exec for Tokio<MULTI_THREAD> {
    type Runtime = allstop::tokio::Tokio;
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut builder = if MULTI_THREAD {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        builder.enable_all().build().unwrap().block_on(future)
    }
    fn runtime() -> allstop::tokio::Tokio {
        allstop::tokio::Tokio::new()
    }
    fn timer() -> impl Timer {
        allstop::tokio::Tokio::new()
    }
}

/// `smol::block_on` and smol's global executor.
#[cfg(feature = "smol")]
pub struct Smol;

#[cfg(feature = "smol")]
impl Exec for Smol {
    type Runtime = allstop::smol::Smol;
    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }
    fn runtime() -> allstop::smol::Smol {
        allstop::smol::Smol::new()
    }
    fn timer() -> impl Timer {
        allstop::smol::Smol::new()
    }
}

/// Lists every test of the suite, for `instantiate!`.
macro_rules! for_each_test {
    ($callback:ident!($($args:tt)*)) => {
        $callback!($($args)*;
            first_ok_exit_stops_all,
            first_err_exit_stops_all_and_comes_back_unchanged,
            single_member_error_comes_back_unchanged,
            first_panic_stops_all,
            panic_while_starting_is_an_outcome,
            stop_is_broadcast_once_and_ready_for_late_pollers,
            run_returns_after_every_member_is_dropped,
            report_lists_members_in_order,
            deadline_cancels_a_member_that_ignores_the_stop,
            deadline_on_the_real_timer,
            external_stop_with_cause,
            second_request_cuts_the_grace_short,
            second_request_cuts_an_unbounded_wait_short,
            nested_group_stops_with_its_parent,
            nested_group_failure_stops_the_parent,
            nested_group_is_forced_with_its_parent,
            empty_group_returns_at_once,
            exit_code_follows_the_outcomes,
            cause_is_the_trigger_not_the_reaction,
            clean_first_exit_stays_the_cause,
            hundred_members_each_awaited,
            slow_error_after_stop_leaks_nothing,
            panic_is_not_hidden_by_later_exits,
            hung_member_is_named_and_the_rest_stop,
            watcher_is_dismissed_when_the_workers_end,
            watcher_exit_stops_the_group,
            observer_sees_the_lifecycle_in_order,
            stop_before_run,
            dropping_the_run_drops_every_member,
            member_on_another_runtime,
            stop_delay_announces_then_stops,
            second_request_skips_the_stop_delay,
        );
    };
}

/// Generates one `#[test]` per suite test for `$mode`.
macro_rules! instantiate {
    ($mode:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                crate::common::bounded(|| crate::suite::$test::<$mode>());
            }
        )*
    };
}

mod in_task {
    for_each_test!(instantiate!(crate::InTask<crate::Futures>));
}

#[cfg(feature = "tokio")]
mod tokio_current_thread {
    for_each_test!(instantiate!(crate::Spawned<crate::Tokio<false>>));
}

#[cfg(feature = "tokio")]
mod tokio_multi_thread {
    for_each_test!(instantiate!(crate::Spawned<crate::Tokio<true>>));
}

#[cfg(feature = "tokio")]
mod tokio_in_task {
    for_each_test!(instantiate!(crate::InTask<crate::Tokio<false>>));
}

#[cfg(feature = "smol")]
mod smol_spawned {
    for_each_test!(instantiate!(crate::Spawned<crate::Smol>));
}

#[cfg(feature = "smol")]
mod smol_in_task {
    for_each_test!(instantiate!(crate::InTask<crate::Smol>));
}

mod spawned_on_a_thread_pool {
    for_each_test!(instantiate!(crate::Spawned<crate::Futures>));

    /// S5: every member's result is sent, and its task ends, while the
    /// collector is not polled at all.
    #[test]
    fn collection_never_blocks_a_member() {
        crate::common::bounded(|| {
            let pool = crate::common::Pool::new();
            let mut group = allstop::Group::new();
            // Holds the run open until the test has seen the others end.
            let (release, gate) = futures::channel::oneshot::channel::<()>();
            group.add("gate", |_stop| async move {
                let _ = gate.await;
                Ok::<(), std::io::Error>(())
            });
            for i in 0..50 {
                group.add(format!("m{i}"), |_stop| async {
                    Ok::<(), std::io::Error>(())
                });
            }
            let mut run = group.run_spawned(pool.clone());
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            // One poll spawns the members; then the collector sleeps while
            // all 50 finish, send and end.
            let first = std::future::Future::poll(std::pin::Pin::new(&mut run), &mut cx);
            assert!(first.is_pending());
            pool.finished.wait_for(50);
            release.send(()).unwrap();
            let report = futures::executor::block_on(run);
            assert_eq!(report.members().len(), 51);
            assert!(report.is_success());
        });
    }
}

/// A runtime that has shut down: it drops whatever it is given.
struct ShutDown;

impl allstop::Runtime for ShutDown {
    type Task = std::future::Ready<()>;

    fn spawn<F>(&self, future: F) -> Self::Task
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(future);
        std::future::ready(())
    }

    fn cancel(&self, _task: &mut Self::Task) {}
}

/// Members that their runtime drops without a result are reported
/// cancelled, and the run still returns.
#[test]
fn members_dropped_by_their_runtime_are_cancelled() {
    common::bounded(|| {
        let drops = common::Counter::new();
        let mut group = Group::new();
        for _ in 0..3 {
            let guard = drops.guard();
            group.add("m", move |stop: Stop| async move {
                let _guard = guard;
                stop.await;
                Ok::<(), std::io::Error>(())
            });
        }
        let report = futures::executor::block_on(group.run_spawned(ShutDown));
        assert_eq!(drops.get(), 3);
        assert!(report
            .members()
            .iter()
            .all(|m| matches!(m.outcome(), allstop::Outcome::Cancelled)));
        assert_eq!(report.cause(), None);
        assert!(report
            .to_string()
            .starts_with("group ended: its members were dropped"));
    });
}
