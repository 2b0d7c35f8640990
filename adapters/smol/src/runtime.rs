//! Spawning and sleeping on smol.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use smol::Executor;

/// The smol runtime, for [`Group::on`](allstop_core::Group::on) (a smol
/// task per member, and smol's timer for the group's deadlines), or as the
/// [`Timer`](allstop_core::Timer) of a group that runs in-task.
///
/// `Smol::new()` spawns on smol's global executor (`smol::spawn`);
/// [`Smol::with_executor`] on an executor of yours.
///
/// ```
/// use allstop::smol::Smol;
/// use std::time::Duration;
///
/// let mut group = allstop::Group::on(Smol::new());
/// group.grace(Duration::from_secs(5));
/// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
/// let report = smol::block_on(group.run());
/// assert!(report.is_success());
/// ```
#[derive(Clone, Default)]
pub struct Smol {
    executor: Option<Arc<Executor<'static>>>,
}

impl fmt::Debug for Smol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smol")
            .field("global", &self.executor.is_none())
            .finish()
    }
}

impl Smol {
    /// Spawns on smol's global executor.
    pub fn new() -> Self {
        Smol { executor: None }
    }

    /// Spawns on `executor`, which something must run (for example
    /// `executor.run(future)` on a few threads).
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let executor = Arc::new(smol::Executor::new());
    /// let mut group = allstop::Group::on(allstop::smol::Smol::with_executor(executor.clone()));
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// let run = group.run();
    /// let report = smol::block_on(executor.run(run));
    /// assert!(report.is_success());
    /// ```
    pub fn with_executor(executor: Arc<Executor<'static>>) -> Self {
        Smol {
            executor: Some(executor),
        }
    }

    pub(crate) fn spawn_task<F>(&self, future: F) -> smol::Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.executor {
            Some(executor) => executor.spawn(future),
            None => smol::spawn(future),
        }
    }
}

/// A member running as a smol task; see [`Runtime`](allstop_core::Runtime).
pub struct SmolTask {
    state: State,
}

enum State {
    Running(smol::Task<()>),
    /// Finished: a `smol::Task` must not be polled again.
    Done,
}

impl fmt::Debug for SmolTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Running(_) => "running",
            State::Done => "done",
        };
        f.debug_struct("SmolTask").field("state", &state).finish()
    }
}

impl Future for SmolTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let ready = match &mut self.state {
            State::Running(task) => Pin::new(task).poll(cx).is_ready(),
            State::Done => true,
        };
        if ready {
            self.state = State::Done;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

// Dropping a `smol::Task` cancels it, so `SmolTask` needs no `Drop` of its
// own to keep the cancel-on-drop promise.

impl allstop_core::Runtime for Smol {
    type Task = SmolTask;

    fn spawn<F>(&self, future: F) -> SmolTask
    where
        F: Future<Output = ()> + Send + 'static,
    {
        SmolTask {
            state: State::Running(self.spawn_task(future)),
        }
    }
}

/// A sleep on async-io's timer; see [`Smol`] as a [`Timer`](allstop_core::Timer).
#[derive(Debug)]
pub struct SmolSleep(async_io::Timer);

impl Future for SmolSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_instant| ())
    }
}

impl allstop_core::Timer for Smol {
    type Sleep = SmolSleep;

    fn sleep(&self, duration: Duration) -> SmolSleep {
        SmolSleep(async_io::Timer::after(duration))
    }
}
