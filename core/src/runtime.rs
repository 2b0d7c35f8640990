//! The two things the core needs from an async runtime and cannot have on its
//! own: spawning tasks and sleeping. This module *is* the adapter contract.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Spawns a group's members as tasks of an async runtime, and sleeps for
/// its deadlines: the adapter contract for [`Group::on`](crate::Group::on).
///
/// `allstop-tokio` and `allstop-smol` implement it; implement it yourself
/// for another runtime. A runtime is also a [`Timer`]: the group sleeps on
/// it for its grace deadline, its stop delay and its restart backoffs. An
/// implementation must keep these promises, on which the group's guarantees
/// rest:
///
/// 1. **Spawn.** [`spawn`](Runtime::spawn) starts `future` running
///    concurrently with the caller and returns at once.
/// 2. **Join.** The returned [`Task`](Runtime::Task) is a future that
///    resolves once the spawned future has completed, or at once if it was
///    cancelled. It resolves to `()` whatever happened; it never panics.
///    (The group catches member panics inside the spawned future, so a panic
///    never reaches the runtime.)
/// 3. **Cancel on drop.** Dropping a `Task` asks the runtime to drop the
///    spawned future at its next opportunity, so dropping a running group
///    (say, under a timeout) leaks no task.
///
/// The group cancels its members itself: each spawned future watches the
/// group's cancellation, polls its member a last time and drops it, on its
/// own task. So the runtime never drops a member while the group runs, and
/// a panic in a member — in its `poll` or its `Drop` — is caught inside the
/// spawned future: it never reaches the runtime.
///
/// # Example
///
/// A runtime made of a `futures` thread pool:
///
/// ```
/// use allstop::{Runtime, Timer};
/// use futures::channel::oneshot;
/// use futures::future::{AbortHandle, Abortable};
/// use futures::executor::ThreadPool;
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::task::{Context, Poll};
///
/// struct Pool(ThreadPool);
///
/// struct PoolTask {
///     done: oneshot::Receiver<()>,
///     abort: AbortHandle,
/// }
///
/// impl Future for PoolTask {
///     type Output = ();
///     fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
///         // `Err(Canceled)` means the sender was dropped: the task is gone too.
///         Pin::new(&mut self.done).poll(cx).map(|_| ())
///     }
/// }
///
/// impl Drop for PoolTask {
///     fn drop(&mut self) {
///         self.abort.abort();
///     }
/// }
///
/// impl Timer for Pool {
///     type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;
///
///     // A thread that sleeps, for the example; use your runtime's timer.
///     fn sleep(&self, duration: std::time::Duration) -> Self::Sleep {
///         let (tx, rx) = oneshot::channel::<()>();
///         std::thread::spawn(move || {
///             std::thread::sleep(duration);
///             let _ = tx.send(());
///         });
///         Box::pin(async move {
///             let _ = rx.await;
///         })
///     }
/// }
///
/// impl Runtime for Pool {
///     type Task = PoolTask;
///
///     fn spawn<F>(&self, future: F) -> PoolTask
///     where
///         F: Future<Output = ()> + Send + 'static,
///     {
///         let (abort, registration) = AbortHandle::new_pair();
///         let (tx, done) = oneshot::channel();
///         self.0.spawn_ok(async move {
///             // The future is dropped at the end of this statement, before
///             // the task reports that it is done.
///             let _ = Abortable::new(future, registration).await;
///             let _ = tx.send(());
///         });
///         PoolTask { done, abort }
///     }
/// }
///
/// let mut group = allstop::Group::on(Pool(ThreadPool::new().unwrap()));
/// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
/// let report = futures::executor::block_on(group.run());
/// assert!(report.is_success());
/// ```
pub trait Runtime: Timer {
    /// A spawned task: resolves once the spawned future has completed.
    /// Dropping it cancels the future.
    type Task: Future<Output = ()> + Send + Unpin + 'static;

    /// Spawns `future` onto the runtime.
    fn spawn<F>(&self, future: F) -> Self::Task
    where
        F: Future<Output = ()> + Send + 'static;
}

/// A source of sleeps, for a group's deadlines: its grace deadline, its
/// stop delay and its restart backoffs.
///
/// The core has no clock of its own that can wake a task, so the timer comes
/// from the runtime ([`Group::on`](crate::Group::on) takes the runtime's;
/// every [`Runtime`] is a timer) or from you, with
/// [`Group::timer`](crate::Group::timer). Any
/// `Fn(Duration) -> impl Future<Output = ()>` is a timer:
///
/// ```
/// use std::time::Duration;
///
/// // A timer for runtime-free code: a thread that sleeps.
/// fn thread_sleep(duration: Duration) -> impl std::future::Future<Output = ()> + Send {
///     let (tx, rx) = futures::channel::oneshot::channel::<()>();
///     std::thread::spawn(move || {
///         std::thread::sleep(duration);
///         let _ = tx.send(());
///     });
///     async move {
///         let _ = rx.await;
///     }
/// }
///
/// let mut group = allstop::Group::new();
/// group.timer(thread_sleep).grace(Duration::from_millis(10));
/// group.add("ignores the stop", |_stop| futures::future::pending::<Result<(), std::io::Error>>());
/// group.stop_handle().stop("test");
/// let report = futures::executor::block_on(group.run());
/// assert!(matches!(report.members()[0].outcome(), allstop::Outcome::Cancelled(_)));
/// ```
pub trait Timer: Send + Sync + 'static {
    /// The future [`sleep`](Timer::sleep) returns.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// A future that resolves once `duration` has passed.
    fn sleep(&self, duration: Duration) -> Self::Sleep;
}

impl<F, S> Timer for F
where
    F: Fn(Duration) -> S + Send + Sync + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    type Sleep = S;

    fn sleep(&self, duration: Duration) -> S {
        self(duration)
    }
}

/// The object-safe face of [`Timer`], so that a [`Group`](crate::Group)
/// need not be generic over its timer.
pub(crate) trait DynTimer: Send + Sync {
    fn sleep_boxed(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl<T: Timer> DynTimer for T {
    fn sleep_boxed(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.sleep(duration))
    }
}

/// A runtime shared between the group's launcher and its timer.
pub(crate) struct SharedRuntime<R>(pub(crate) Arc<R>);

impl<R: Runtime> Timer for SharedRuntime<R> {
    type Sleep = R::Sleep;

    fn sleep(&self, duration: Duration) -> R::Sleep {
        self.0.sleep(duration)
    }
}
