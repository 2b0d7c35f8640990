//! Keeping a member's panics out of the group: whatever a member's future,
//! its `Drop`, its error's `Display` or its panic payload does, a panic
//! there becomes a value, never an unwind through the group, an abort or a
//! hang.

use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `f`, turning a panic into its message.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(message)
}

/// Drops `value`; a panic in its `Drop` becomes its message.
pub(crate) fn drop_caught<T>(value: T) -> Result<(), String> {
    catch(move || drop(value))
}

/// The message of a panic payload. The payload is dropped here, and a
/// payload whose own `Drop` panics is forgotten rather than dropped again.
pub(crate) fn message(payload: Box<dyn Any + Send>) -> String {
    let text = if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
    text
}

/// A value dropped with its panics caught: in the run's task, on a
/// runtime's thread (where an unwinding drop may abort the process, as
/// smol's executor does), wherever it goes.
pub(crate) struct Guarded<T>(Option<T>);

impl<T> Guarded<T> {
    pub(crate) fn new(value: T) -> Self {
        Guarded(Some(value))
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }

    pub(crate) fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_mut()
    }

    /// Drops the value now; a panic in its `Drop` becomes its message.
    pub(crate) fn drop_now(&mut self) -> Result<(), String> {
        self.0.take().map_or(Ok(()), drop_caught)
    }
}

impl<T> Drop for Guarded<T> {
    fn drop(&mut self) {
        let _ = self.drop_now();
    }
}

pin_project_lite::pin_project! {
    /// `future`, its panics caught: a panic in its `poll` is its output,
    /// `Err(message)`, and the future is then dropped in place inside the
    /// guard too, so a `Drop` that panics in turn (as a future whose poll
    /// panicked may) unwinds nothing. `FutureExt::catch_unwind` would drop
    /// it outside.
    pub(crate) struct Caught<F> {
        #[pin]
        future: Option<F>,
    }
}

impl<F> Caught<F> {
    pub(crate) fn new(future: F) -> Self {
        Caught {
            future: Some(future),
        }
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut future = self.project().future;
        let Some(running) = future.as_mut().as_pin_mut() else {
            panic!("`Caught` polled after it completed");
        };
        match catch(|| running.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(message) => {
                // The assignment leaves `None` even if the `Drop` panics.
                let _ = catch(|| future.set(None));
                Poll::Ready(Err(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("bomb");
        }
    }

    #[test]
    fn a_panicking_drop_is_a_message() {
        assert_eq!(drop_caught(Bomb), Err("bomb".to_owned()));
        let mut guarded = Guarded::new(Bomb);
        assert_eq!(guarded.drop_now(), Err("bomb".to_owned()));
        drop(Guarded::new(Bomb));
    }

    /// A future whose `poll` panics, and whose `Drop` panics after that.
    struct PanicTwice;

    impl Future for PanicTwice {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            panic!("poll");
        }
    }

    impl Drop for PanicTwice {
        fn drop(&mut self) {
            panic!("drop");
        }
    }

    #[test]
    fn a_future_that_panics_in_poll_then_in_drop_is_its_first_message() {
        let caught = futures::executor::block_on(Caught::new(PanicTwice));
        assert_eq!(caught, Err("poll".to_owned()));
    }

    #[test]
    fn a_payload_that_panics_when_dropped_is_a_message() {
        let payload = panic::catch_unwind(|| panic::panic_any(Bomb)).unwrap_err();
        assert_eq!(message(payload), "panic with a non-string payload");
    }
}
