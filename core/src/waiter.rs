//! Waiting on an `event_listener::Event` until a condition holds, without a
//! lost wake-up: the condition is checked, a listener registered, and the
//! condition checked again before sleeping. Every wait in the crate (the
//! stop, the force, connections closing, a connection falling idle) is one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use event_listener::{Event, EventListener};

#[derive(Debug, Default)]
pub(crate) struct Waiter {
    listener: Option<EventListener>,
}

impl Waiter {
    pub(crate) fn new() -> Self {
        Waiter::default()
    }

    /// Ready once `ready()` holds; otherwise registered to be woken by
    /// `event`, which whoever makes `ready()` true must notify.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        event: &Event,
        ready: impl Fn() -> bool,
    ) -> Poll<()> {
        loop {
            if ready() {
                self.listener = None;
                return Poll::Ready(());
            }
            match &mut self.listener {
                None => self.listener = Some(event.listen()),
                Some(listener) => {
                    if Pin::new(listener).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Woken: drop the spent listener and check again.
                    self.listener = None;
                }
            }
        }
    }
}
