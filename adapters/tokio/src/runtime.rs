//! Spawning and sleeping on tokio.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The tokio runtime, for [`Group::on`](allstop_core::Group::on) (a tokio
/// task per member, and tokio's timer for the group's deadlines), or as the
/// [`Timer`](allstop_core::Timer) of a group that runs in-task.
///
/// `Tokio::new()` spawns on the runtime the group runs on (the current one
/// when the run is first polled); [`Tokio::with_handle`] on a given one.
///
/// ```
/// use allstop::tokio::Tokio;
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut group = allstop::Group::on(Tokio::new());
/// group.grace(Duration::from_secs(5));
/// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
/// let report = group.run().await;
/// assert!(report.is_success());
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct Tokio {
    handle: Option<Handle>,
}

impl Tokio {
    /// Spawns (and sleeps) on the current runtime.
    ///
    /// # Panics
    ///
    /// Spawning or sleeping panics when there is no current runtime, as
    /// `tokio::spawn` does, with a message that says what to do: drive the
    /// group inside a tokio runtime, or use [`Tokio::with_handle`] (for a
    /// member added with `add_on` in a group that runs elsewhere, say). A
    /// member that spawns is reported `Panicked` with that message.
    pub fn new() -> Self {
        Tokio { handle: None }
    }

    /// Spawns and sleeps on the runtime of `handle`, from anywhere.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let runtime = tokio::runtime::Runtime::new().unwrap();
    /// let tokio = allstop::tokio::Tokio::with_handle(runtime.handle().clone());
    /// let mut group = allstop::Group::on(tokio);
    /// group.grace(Duration::from_millis(10));
    /// group.add("job", |_stop| async { Ok::<(), std::io::Error>(()) });
    /// group.add("ignores the stop", |_stop| futures::future::pending::<Result<(), std::io::Error>>());
    /// // Driven from a plain thread; the members and the deadline run on `runtime`.
    /// let report = futures::executor::block_on(group.run());
    /// assert!(matches!(report.members()[1].outcome(), allstop::Outcome::Cancelled(_)));
    /// ```
    pub fn with_handle(handle: Handle) -> Self {
        Tokio {
            handle: Some(handle),
        }
    }
}

/// A member running as a tokio task; see [`Runtime`](allstop_core::Runtime).
#[derive(Debug)]
pub struct TokioTask(JoinHandle<()>);

impl Future for TokioTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // `Err` is a cancellation or a panic; either way the future is gone.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Drop for TokioTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Tokio {
    /// The runtime to use: the given one, or the current one.
    fn handle(&self) -> Handle {
        match &self.handle {
            Some(handle) => handle.clone(),
            None => Handle::try_current().unwrap_or_else(|_| {
                panic!(
                    "allstop::tokio::Tokio::new() spawns and sleeps on the current tokio \
                     runtime, and there is none here: run the group inside a tokio runtime, \
                     or use Tokio::with_handle(handle) to reach one from elsewhere"
                )
            }),
        }
    }
}

impl allstop_core::Runtime for Tokio {
    type Task = TokioTask;

    fn spawn<F>(&self, future: F) -> TokioTask
    where
        F: Future<Output = ()> + Send + 'static,
    {
        TokioTask(self.handle().spawn(future))
    }
}

/// The HTTP server's executor, for its connections and HTTP/2 streams: on
/// the same runtime as the members, the given one or the current one.
impl allstop_core::http::Executor for Tokio {
    fn execute<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle().spawn(task);
    }
}

impl allstop_core::Timer for Tokio {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, duration: Duration) -> tokio::time::Sleep {
        // A tokio sleep registers with the timer of the runtime it is made
        // in: enter the given runtime, so that `with_handle` works from
        // anywhere (as smol's timer does).
        let _entered = self.handle().enter();
        tokio::time::sleep(duration)
    }
}
