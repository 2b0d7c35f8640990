//! Helpers shared by the test suites: hang protection, drop counting, a
//! timer the test fires by hand, a thread-based timer, and a runtime made of
//! a `futures` thread pool.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{AbortHandle, Abortable, FutureExt, Shared};

/// How long any one test may take before it is declared hung.
pub const HANG: Duration = Duration::from_secs(60);

/// Runs `test` on its own thread and fails if it does not finish within
/// [`HANG`], so that a hang fails the test instead of stalling CI.
pub fn bounded<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("bounded test".into())
        .spawn(move || {
            let _ = tx.send(test());
        })
        .unwrap();
    match rx.recv_timeout(HANG) {
        Ok(value) => {
            thread.join().unwrap();
            value
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("test hung for {HANG:?}"),
        // The test panicked: re-raise its panic here.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("sender dropped without a value"),
        },
    }
}

/// Counts events (drops, completions) and lets a thread wait for a count.
#[derive(Clone, Default)]
pub struct Counter(Arc<(Mutex<usize>, Condvar)>);

impl Counter {
    pub fn new() -> Self {
        Counter::default()
    }

    pub fn add(&self) {
        let (count, changed) = &*self.0;
        *count.lock().unwrap() += 1;
        changed.notify_all();
    }

    pub fn get(&self) -> usize {
        *self.0 .0.lock().unwrap()
    }

    /// Blocks until the count reaches `n`; panics after [`HANG`].
    pub fn wait_for(&self, n: usize) {
        let (count, changed) = &*self.0;
        let guard = count.lock().unwrap();
        let (guard, timeout) = changed
            .wait_timeout_while(guard, HANG, |count| *count < n)
            .unwrap();
        assert!(!timeout.timed_out(), "count stuck at {} of {n}", *guard);
    }

    /// A value that adds one to the count when dropped.
    pub fn guard(&self) -> DropGuard {
        DropGuard(self.clone())
    }
}

pub struct DropGuard(Counter);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.add();
    }
}

/// A timer whose sleeps end only when the test calls [`ManualTimer::fire`],
/// so deadline tests synchronize on events, not on the clock.
#[derive(Clone)]
pub struct ManualTimer {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    fire: Mutex<Option<oneshot::Sender<()>>>,
    fired: Shared<oneshot::Receiver<()>>,
    requested: Mutex<Vec<Duration>>,
    asked: Condvar,
}

impl Default for ManualTimer {
    fn default() -> Self {
        let (tx, rx) = oneshot::channel();
        ManualTimer {
            inner: Arc::new(ManualInner {
                fire: Mutex::new(Some(tx)),
                fired: rx.shared(),
                requested: Mutex::new(Vec::new()),
                asked: Condvar::new(),
            }),
        }
    }
}

impl ManualTimer {
    pub fn new() -> Self {
        ManualTimer::default()
    }

    /// Ends every sleep, past and future.
    pub fn fire(&self) {
        if let Some(tx) = self.inner.fire.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }

    /// The durations asked for so far.
    pub fn requested(&self) -> Vec<Duration> {
        self.inner.requested.lock().unwrap().clone()
    }

    /// Blocks until a sleep has been asked for; returns its duration.
    pub fn wait_requested(&self) -> Duration {
        let guard = self.inner.requested.lock().unwrap();
        let (guard, timeout) = self
            .inner
            .asked
            .wait_timeout_while(guard, HANG, |asked| asked.is_empty())
            .unwrap();
        assert!(!timeout.timed_out(), "no sleep was ever asked for");
        guard[0]
    }
}

impl allstop::Timer for ManualTimer {
    type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        self.inner.requested.lock().unwrap().push(duration);
        self.inner.asked.notify_all();
        let fired = self.inner.fired.clone();
        Box::pin(async move {
            let _ = fired.await;
        })
    }
}

/// A runtime-free sleep: a thread that sleeps, then wakes the future.
pub fn thread_sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static {
    let (tx, rx) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(duration);
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

/// Yields to the executor `n` times: a member that takes a few turns to
/// stop, without any clock.
pub async fn yield_times(n: usize) {
    for _ in 0..n {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
    }
}

/// A [`Runtime`](allstop::Runtime) made of a `futures` thread pool: the
/// spawned mode without any async runtime crate. Counts finished tasks.
#[derive(Clone)]
pub struct Pool {
    pool: futures::executor::ThreadPool,
    pub finished: Counter,
}

impl Pool {
    pub fn new() -> Self {
        Pool {
            pool: futures::executor::ThreadPool::builder()
                .pool_size(2)
                .create()
                .unwrap(),
            finished: Counter::new(),
        }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

pub struct PoolTask {
    done: oneshot::Receiver<()>,
    abort: AbortHandle,
}

impl Future for PoolTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // `Err(Canceled)`: the sender is gone, and so is the task.
        Pin::new(&mut self.done).poll(cx).map(|_| ())
    }
}

impl Drop for PoolTask {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

impl allstop::Timer for Pool {
    type Sleep = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        Box::pin(thread_sleep(duration))
    }
}

impl allstop::Runtime for Pool {
    type Task = PoolTask;

    fn spawn<F>(&self, future: F) -> PoolTask
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (abort, registration) = AbortHandle::new_pair();
        let (tx, done) = oneshot::channel();
        let finished = self.finished.clone();
        self.pool.spawn_ok(async move {
            // The future is dropped at the end of this statement, before
            // the task says it is done.
            let _ = Abortable::new(future, registration).await;
            finished.add();
            let _ = tx.send(());
        });
        PoolTask { done, abort }
    }
}

/// A gate futures wait at until the test opens it.
#[derive(Clone)]
pub struct Gate {
    open: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    opened: Shared<oneshot::Receiver<()>>,
}

impl Default for Gate {
    fn default() -> Self {
        let (tx, rx) = oneshot::channel();
        Gate {
            open: Arc::new(Mutex::new(Some(tx))),
            opened: rx.shared(),
        }
    }
}

impl Gate {
    pub fn new() -> Self {
        Gate::default()
    }

    pub fn open(&self) {
        if let Some(tx) = self.open.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }

    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let opened = self.opened.clone();
        async move {
            let _ = opened.await;
        }
    }
}

/// `command` on the PATH, installed from Debian's `package` with apt-get on
/// first use if it is missing (CI runs as root on a fresh Debian machine).
pub fn debian_tool(command: &str, package: &str) -> String {
    use std::process::Command;

    let found = |command: &str| {
        Command::new("sh")
            .arg("-c")
            // Root's tools may live in sbin, off a user's PATH.
            .arg(format!(
                "command -v {command} || command -v /usr/sbin/{command} || command -v /sbin/{command}"
            ))
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    if let Some(path) = found(command) {
        return path;
    }
    static INSTALL: Mutex<()> = Mutex::new(());
    let _turn = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = found(command) {
        return path;
    }
    eprintln!("{command} is not installed: installing {package} with apt-get");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "--no-install-recommends", package],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get");
        assert!(status.success(), "apt-get {args:?} failed");
    }
    found(command).unwrap_or_else(|| panic!("{package} did not install {command}"))
}
