//! The conformance suite: every test is written once, in `suite.rs`, and
//! runs in every mode below (in-task and spawned, on `futures`' executor,
//! tokio current-thread and multi-thread, and smol), bounded by a timeout.

#[path = "../common/mod.rs"]
mod common;
mod props;

use std::future::Future;
use std::marker::PhantomData;

use allstop::{Group, Stop, Timer};

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
    fn group() -> Group {
        let mut group = Group::new();
        group.timer(E::timer());
        group
    }
}

impl<E: Exec> Mode for Spawned<E> {
    fn block_on<F: Future>(future: F) -> F::Output {
        E::block_on(future)
    }
    fn group() -> Group {
        Group::on(E::runtime())
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

/// Defines one test of the suite, written once and generic over its mode
/// `M`, and instantiates it in every mode: a module named after the test
/// with one `#[test]` per mode (`suite::<test>::<mode>`), each bounded by
/// [`common::bounded`]. As tokio's `rt_test!` does.
macro_rules! conformance {
    ($(#[$attr:meta])* fn $name:ident<$M:ident>() $body:block) => {
        $(#[$attr])*
        pub fn $name<$M: crate::suite::Mode>() $body

        mod $name {
            conformance!(@mode $name in_task: crate::InTask<crate::Futures>);
            conformance!(@mode $name spawned_on_a_thread_pool: crate::Spawned<crate::Futures>);
            #[cfg(feature = "tokio")]
            conformance!(@mode $name tokio_current_thread: crate::Spawned<crate::Tokio<false>>);
            #[cfg(feature = "tokio")]
            conformance!(@mode $name tokio_multi_thread: crate::Spawned<crate::Tokio<true>>);
            #[cfg(feature = "tokio")]
            conformance!(@mode $name tokio_in_task: crate::InTask<crate::Tokio<false>>);
            #[cfg(feature = "smol")]
            conformance!(@mode $name smol_spawned: crate::Spawned<crate::Smol>);
            #[cfg(feature = "smol")]
            conformance!(@mode $name smol_in_task: crate::InTask<crate::Smol>);
        }
    };
    (@mode $name:ident $mode:ident: $ty:ty) => {
        #[test]
        fn $mode() {
            crate::common::bounded(|| super::$name::<$ty>());
        }
    };
}

// After the macro: a `macro_rules!` is visible only below its definition.
mod hostile;
mod suite;
mod supervision;

/// Guarantee 4: every member's result is sent, and its task ends, while the
/// collector is not polled at all.
#[test]
fn collection_never_blocks_a_member() {
    crate::common::bounded(|| {
        let pool = crate::common::Pool::new();
        let mut group = allstop::Group::on(pool.clone());
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
        let mut run = group.run();
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

/// A runtime that has shut down: it drops whatever it is given.
struct ShutDown;

impl Timer for ShutDown {
    type Sleep = std::future::Pending<()>;

    fn sleep(&self, _duration: std::time::Duration) -> Self::Sleep {
        std::future::pending()
    }
}

impl allstop::Runtime for ShutDown {
    type Task = std::future::Ready<()>;

    fn spawn<F>(&self, future: F) -> Self::Task
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(future);
        std::future::ready(())
    }
}

/// Members that their runtime drops without a result are reported
/// cancelled, and the run still returns.
#[test]
fn members_dropped_by_their_runtime_are_cancelled() {
    common::bounded(|| {
        let drops = common::Counter::new();
        let mut group = Group::on(ShutDown);
        for _ in 0..3 {
            let guard = drops.guard();
            group.add("m", move |stop: Stop| async move {
                let _guard = guard;
                stop.await;
                Ok::<(), std::io::Error>(())
            });
        }
        let report = futures::executor::block_on(group.run());
        assert_eq!(drops.get(), 3);
        assert!(report.members().iter().all(|m| matches!(
            m.outcome(),
            allstop::Outcome::Cancelled(allstop::CancelReason::Runtime)
        )));
        assert_eq!(report.cause(), None);
        assert!(report
            .to_string()
            .starts_with("group ended: its members were dropped"));
    });
}

/// A deadline without a timer is a mistake made while building the group:
/// it panics there, naming the two ways to give the group a timer, rather
/// than running a group whose deadline never comes.
#[test]
fn a_deadline_without_a_timer_says_how_to_give_one() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Duration;

    type Set = fn(&mut Group);
    let set: [(&str, Set); 3] = [
        ("grace", |group| {
            group.grace(Duration::from_secs(1));
        }),
        ("stop_delay", |group| {
            group.stop_delay(Duration::from_secs(1));
        }),
        ("add_restartable", |group| {
            group.add_restartable("w", allstop::Restart::on_failure(), |_stop: Stop| async {
                Ok::<(), std::io::Error>(())
            });
        }),
    ];
    for (what, set) in set {
        let mut group = Group::new();
        let panic = catch_unwind(AssertUnwindSafe(|| set(&mut group))).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains(&format!("`Group::{what}` needs a timer")),
            "{message}"
        );
        assert!(message.contains("Group::on(runtime)") && message.contains("Group::timer"));
        // With a timer, the same call is fine.
        let mut group = Group::new();
        group.timer(common::thread_sleep);
        set(&mut group);
    }
}
