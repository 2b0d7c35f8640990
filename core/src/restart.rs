//! Restarting what may restart: the policy a restartable member is added
//! with, and the loop that runs it, as Erlang/OTP's supervisors do.
//!
//! # Invariants
//!
//! 1. A member is started again only while the group's stop has not begun:
//!    checked when an attempt ends, and the backoff is cut short by the
//!    stop, after which the last attempt's outcome is the member's.
//! 2. At most `limit` restarts within any `window`: the failure that would
//!    be one more ends the member, which stops the group as any exit does.
//! 3. Every backoff lies within `[min, max]`.
//! 4. The run loop hears of every restart before the member's exit: a
//!    notice is sent before the next attempt, or before the member ends.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::BoxError;
use crate::member;
use crate::report::Outcome;
use crate::runtime::DynTimer;
use crate::stop::Stop;
use crate::unwind::Caught;

/// How a [restartable member](crate::Group::add_restartable) is restarted:
/// on which exits, after what backoff, and how often before the group
/// gives up.
///
/// - **When.** [`on_failure`](Restart::on_failure): after an `Err` or a
///   panic (an `Ok` ends the member, and stops the group as usual);
///   [`always`](Restart::always): after any exit.
/// - **Backoff.** Exponential, from a minimum to a maximum (default 100 ms
///   to 10 s), each delay moved either way by a random fraction up to the
///   [jitter](Restart::jitter) (default 0.1), within the minimum and the
///   maximum; slept on the group's [timer](crate::Group::timer).
/// - **Intensity.** At most `restarts` restarts within `window` (default 3
///   within 10 s). The failure beyond that ends the member: it stops the
///   group as it would without restarts, and the report says the limit was
///   reached ([`MemberReport::restart_limit_reached`](crate::MemberReport::restart_limit_reached)).
///   The window is measured between failures, backoffs included: a backoff
///   as long as the window never lets more than one failure fall inside
///   it, so keep the maximum backoff well under the window (the defaults
///   do); a zero window never counts two failures together.
/// - **Never once the stop has begun.** A member that ends during the stop,
///   or whose backoff the stop interrupts, is not started again; its last
///   outcome is its outcome.
///
/// ```
/// use allstop::Restart;
/// use std::time::Duration;
///
/// let policy = Restart::on_failure()
///     .backoff(Duration::from_millis(50), Duration::from_secs(5))
///     .jitter(0.2)
///     .limit(5, Duration::from_secs(60));
/// // The third restart: 200 ms, give or take 20 %.
/// assert_eq!(policy.delay_bounds(3), (Duration::from_millis(160), Duration::from_millis(240)));
/// ```
#[derive(Clone)]
pub struct Restart {
    always: bool,
    min: Duration,
    max: Duration,
    jitter: f64,
    limit: u32,
    window: Duration,
}

impl fmt::Debug for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restart")
            .field("always", &self.always)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("jitter", &self.jitter)
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish()
    }
}

impl Restart {
    /// Restarts after an `Err` or a panic.
    ///
    /// ```
    /// let policy = allstop::Restart::on_failure();
    /// assert_eq!(policy.delay_bounds(1).1, std::time::Duration::from_millis(110));
    /// ```
    pub fn on_failure() -> Restart {
        Restart {
            always: false,
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: 0.1,
            limit: 3,
            window: Duration::from_secs(10),
        }
    }

    /// Restarts after any exit, `Ok` included.
    ///
    /// ```
    /// let policy = allstop::Restart::always();
    /// # drop(policy);
    /// ```
    pub fn always() -> Restart {
        Restart {
            always: true,
            ..Restart::on_failure()
        }
    }

    /// The first delay, `min`, doubles at each restart up to `max`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Restart {
        self.min = min;
        self.max = max.max(min);
        self
    }

    /// Each delay is moved, longer or shorter, by a random fraction of
    /// itself up to `fraction` (from 0, no jitter, to 1), so that members
    /// that failed together do not restart together — from the first
    /// restart on; never outside the minimum and the maximum.
    pub fn jitter(mut self, fraction: f64) -> Restart {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// At most `restarts` restarts within `window`; the failure beyond ends
    /// the member. `limit(0, …)` never restarts.
    pub fn limit(mut self, restarts: u32, window: Duration) -> Restart {
        self.limit = restarts;
        self.window = window;
        self
    }

    /// The bounds of the delay before restart number `restart` (from 1):
    /// the exponential backoff, less and more the jitter, within the
    /// minimum and the maximum.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = allstop::Restart::on_failure()
    ///     .backoff(Duration::from_millis(100), Duration::from_secs(1))
    ///     .jitter(0.0);
    /// assert_eq!(policy.delay_bounds(1), (Duration::from_millis(100), Duration::from_millis(100)));
    /// assert_eq!(policy.delay_bounds(3).1, Duration::from_millis(400));
    /// assert_eq!(policy.delay_bounds(30).1, Duration::from_secs(1));
    /// ```
    pub fn delay_bounds(&self, restart: u32) -> (Duration, Duration) {
        let doublings = restart.saturating_sub(1).min(31);
        let base = self.min.saturating_mul(1 << doublings).min(self.max);
        let low = base.mul_f64(1.0 - self.jitter).max(self.min);
        let high = base.mul_f64(1.0 + self.jitter).min(self.max);
        (low, high)
    }

    fn delay(&self, restart: u32, random: &mut XorShift) -> Duration {
        let (low, high) = self.delay_bounds(restart);
        low + (high - low).mul_f64(random.fraction())
    }

    fn restarts(&self, outcome: &Outcome) -> bool {
        self.always || !outcome.is_ok()
    }
}

/// What a restartable member tells the run loop, which tells the
/// observers and keeps it for the report.
pub(crate) enum Notice {
    /// Attempt `restart` comes after `delay`; the last one ended so.
    Restarting {
        index: usize,
        error: String,
        restart: u32,
        delay: Duration,
    },
    /// Attempt `restart` began.
    Restarted { index: usize, restart: u32 },
    /// The intensity limit was reached: the member ends.
    LimitReached { index: usize },
}

pub(crate) type Notices = async_channel::Sender<Notice>;

/// Runs `start` until it ends and `policy` does not restart it, or the
/// group stops; the last attempt's outcome is the member's.
pub(crate) async fn supervise<F, Fut, E>(
    mut start: F,
    stop: Stop,
    policy: Restart,
    timer: Arc<dyn DynTimer>,
    index: usize,
    name: Cow<'static, str>,
    notices: Notices,
) -> Outcome
where
    F: FnMut(Stop) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    // The group's own stop, whatever the member's stage.
    let group = Stop::new(stop.state().clone());
    let mut recent = VecDeque::new();
    let mut random = XorShift::seeded(index);
    let mut restart = 0;
    loop {
        let outcome = attempt(&mut start, stop.clone()).await;
        if group.is_stopped() || !policy.restarts(&outcome) {
            return outcome;
        }
        if !policy.admit(&mut recent, Instant::now()) {
            // The failure past the limit stops the group, and is its cause:
            // the stop begins before anyone hears the limit was reached (an
            // observer that stops the group on that news comes second).
            member::begin_stop(stop.state(), index, name, &outcome);
            let _ = notices.try_send(Notice::LimitReached { index });
            return outcome;
        }
        restart += 1;
        let delay = policy.delay(restart, &mut random);
        // `Display` of an outcome catches a panicking error `Display`.
        let error = outcome.to_string();
        let _ = notices.try_send(Notice::Restarting {
            index,
            error,
            restart,
            delay,
        });
        // The stop may have come as the sleep ended, on another thread: no
        // restart once it has begun.
        if group.until(timer.sleep_boxed(delay)).await.is_none() || group.is_stopped() {
            return outcome;
        }
        let _ = notices.try_send(Notice::Restarted { index, restart });
    }
}

impl Restart {
    /// Counts a restart at `now` if the intensity limit allows one.
    fn admit(&self, recent: &mut VecDeque<Instant>, now: Instant) -> bool {
        while recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.window)
        {
            recent.pop_front();
        }
        if recent.len() >= self.limit as usize {
            return false;
        }
        recent.push_back(now);
        true
    }
}

/// One attempt, its panics (in `start` too) caught.
async fn attempt<F, Fut, E>(start: &mut F, stop: Stop) -> Outcome
where
    F: FnMut(Stop) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    // The error's conversion is the member's code too: inside the guard.
    let run = async { start(stop).await.map_err(Into::<BoxError>::into) };
    match Caught::new(run).await {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(error)) => Outcome::Err(error),
        Err(message) => Outcome::Panicked(message),
    }
}

/// xorshift64: jitter without a dependency. Not for anything secret.
struct XorShift(u64);

impl XorShift {
    /// Seeded from the clock and the member's position, so that members
    /// restarting together draw apart.
    fn seeded(index: usize) -> XorShift {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        XorShift((nanos ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// A fraction in `[0, 1]`.
    fn fraction(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Restart {
        Restart::on_failure()
            .backoff(Duration::from_millis(10), Duration::from_millis(100))
            .jitter(0.5)
            .limit(2, Duration::from_secs(1))
    }

    #[test]
    fn the_first_restart_is_jittered_too() {
        let (low, high) = policy().delay_bounds(1);
        assert_eq!(low, Duration::from_millis(10));
        assert_eq!(high, Duration::from_millis(15));
    }

    #[test]
    fn delays_stay_within_the_bounds() {
        let policy = policy();
        let mut random = XorShift::seeded(7);
        for restart in 1..40 {
            let (low, high) = policy.delay_bounds(restart);
            assert!(low >= Duration::from_millis(10) && high <= Duration::from_millis(100));
            for _ in 0..100 {
                let delay = policy.delay(restart, &mut random);
                assert!(low <= delay && delay <= high, "{restart}: {delay:?}");
            }
        }
    }

    #[test]
    fn the_limit_counts_restarts_within_the_window() {
        let policy = policy();
        let mut recent = VecDeque::new();
        let start = Instant::now();
        assert!(policy.admit(&mut recent, start));
        assert!(policy.admit(&mut recent, start));
        assert!(!policy.admit(&mut recent, start + Duration::from_millis(999)));
        assert!(policy.admit(&mut recent, start + Duration::from_secs(1)));
    }
}
