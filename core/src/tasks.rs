//! Counting the tasks a member spawns, so that it can wait for the last one
//! before it returns.

use std::fmt;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::waiter::{Event, Waiter};

/// Counts the tasks a member spawns for its own work (a connection each, a
/// job each), so that the member returns only after the last one has ended:
/// the group's "nothing leaks" guarantee, carried into the member's own
/// tasks. What tokio-util's `TaskTracker` does, on any runtime.
///
/// Give each task a [`TaskToken`] (or wrap its future with
/// [`track`](TaskTracker::track)); [`wait`](TaskTracker::wait) resolves
/// once no token is alive. Call `wait` once no more tasks will be added —
/// after an accept loop has ended, say — since it resolves whenever the
/// count is zero.
///
/// ```
/// use allstop::{Stop, TaskTracker};
///
/// // A member that spawns a task per job and waits for them at the stop.
/// async fn worker(stop: Stop) -> Result<(), std::io::Error> {
///     let tasks = TaskTracker::new();
///     let pool = futures::executor::ThreadPool::new()?;
///     for job in 0..3 {
///         let stop = stop.clone();
///         pool.spawn_ok(tasks.track(async move {
///             // Work until done or stopped.
///             stop.until(async move { job * 2 }).await;
///         }));
///     }
///     stop.await;
///     tasks.wait().await;
///     Ok(())
/// }
///
/// let mut group = allstop::Group::new();
/// group.add("worker", worker);
/// group.stop_handle().stop("test");
/// assert!(futures::executor::block_on(group.run()).is_success());
/// ```
#[derive(Clone, Default)]
pub struct TaskTracker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Live tokens.
    open: AtomicUsize,
    /// Notified when `open` falls to zero.
    empty: Event,
}

impl TaskTracker {
    /// A tracker with no task.
    ///
    /// ```
    /// assert_eq!(allstop::TaskTracker::new().len(), 0);
    /// ```
    pub fn new() -> Self {
        TaskTracker::default()
    }

    /// A token for one task: the task counts until the token is dropped.
    ///
    /// ```
    /// let tasks = allstop::TaskTracker::new();
    /// let token = tasks.token();
    /// assert_eq!(tasks.len(), 1);
    /// drop(token);
    /// assert!(tasks.is_empty());
    /// ```
    pub fn token(&self) -> TaskToken {
        // Relaxed: the count only needs to be exact; `wait` re-checks it
        // after registering, and the decrement carries the ordering.
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        TaskToken {
            inner: self.inner.clone(),
        }
    }

    /// `future`, counted until it completes or is dropped: spawn this in
    /// its place.
    ///
    /// ```
    /// let tasks = allstop::TaskTracker::new();
    /// let job = tasks.track(async { 1 + 1 });
    /// assert_eq!(tasks.len(), 1);
    /// assert_eq!(futures::executor::block_on(job), 2);
    /// assert!(tasks.is_empty());
    /// ```
    pub fn track<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        let token = self.token();
        async move {
            let output = future.await;
            drop(token);
            output
        }
    }

    /// How many tasks are counted now.
    pub fn len(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Whether no task is counted now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once no task is counted (at once if none is).
    ///
    /// ```
    /// let tasks = allstop::TaskTracker::new();
    /// let token = tasks.token();
    /// std::thread::spawn(move || drop(token));
    /// futures::executor::block_on(tasks.wait());
    /// assert!(tasks.is_empty());
    /// ```
    ///
    /// # Cancellation safety
    ///
    /// Safe to drop and call again.
    pub async fn wait(&self) {
        let mut waiter = Waiter::new();
        poll_fn(|cx| self.poll_empty(cx, &mut waiter)).await
    }

    /// Ready once no task is counted: [`wait`](TaskTracker::wait) as a poll.
    pub(crate) fn poll_empty(
        &self,
        cx: &mut std::task::Context<'_>,
        waiter: &mut Waiter,
    ) -> std::task::Poll<()> {
        waiter.poll(cx, &self.inner.empty, || self.is_empty())
    }
}

impl fmt::Debug for TaskTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskTracker")
            .field("len", &self.len())
            .finish()
    }
}

/// One task counted by a [`TaskTracker`], until it is dropped.
pub struct TaskToken {
    inner: Arc<Inner>,
}

impl fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskToken").finish_non_exhaustive()
    }
}

impl Drop for TaskToken {
    fn drop(&mut self) {
        // Release pairs with the Acquire in `len`: whoever sees zero sees
        // every task's work done.
        if self.inner.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.empty.notify_all();
        }
    }
}
