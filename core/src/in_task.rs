//! The members of a group that runs in its own task ([`Group::new`]): kept
//! in one `FuturesUnordered` per member type, each member's future inline
//! in its node.
//!
//! A group's members are of different types, and a set of futures holds
//! one type: boxing each member would cost it an allocation of its own
//! beside the set's node. Members added by one `add` call site (a loop
//! adding workers, say) are of one type; they share a set, and each costs
//! one node. A group of members all of different types has a set each.
//!
//! The sets are polled in the order their types were first added; within
//! a set, as `FuturesUnordered` does. A member's `Drop`, run when it ends,
//! when it is cancelled or when the run is dropped, is caught: it cannot
//! unwind through the run or leave its siblings alive.
//!
//! [`Group::new`]: crate::Group::new

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::error::BoxError;
use crate::member::{Body, Ended, Slot, Start};
use crate::report::Outcome;
use crate::run::Members;
use crate::stop::Stop;

/// The members of one type.
struct Set<S: Slot>(FuturesUnordered<S>);

impl<S: Slot> Drop for Set<S> {
    /// Each member left is dropped under its own guard, before the set
    /// frees its node: one member's panicking `Drop` cannot unwind through
    /// the run or leave the others alive.
    fn drop(&mut self) {
        for member in Pin::new(&mut self.0).iter_pin_mut() {
            let _ = member.drop_now();
        }
    }
}

/// A set behind its type.
trait AnySet: Send {
    fn poll_exit(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>>;
    /// Polls each member left once more, then drops it: see
    /// [`Members::cancel`].
    fn cancel(&mut self, cx: &mut Context<'_>, late: &mut VecDeque<Ended>);
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<S: Slot> AnySet for Set<S> {
    fn poll_exit(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>> {
        self.0.poll_next_unpin(cx)
    }

    fn cancel(&mut self, cx: &mut Context<'_>, late: &mut VecDeque<Ended>) {
        // The last poll, for the members the cancellation woke (a nested
        // group, which then cancels its own members).
        while let Poll::Ready(Some(exit)) = self.0.poll_next_unpin(cx) {
            late.push_back(exit);
        }
        // Each member's own last poll: `FuturesUnordered` yields before it
        // has polled every woken member when some wake themselves. Then one
        // at a time, each drop caught: one member's panicking `Drop` cannot
        // leave the others alive.
        for mut member in Pin::new(&mut self.0).iter_pin_mut() {
            match member.as_mut().poll(cx) {
                Poll::Ready(exit) => late.push_back(exit),
                Poll::Pending => {
                    let index = member.index();
                    if let Err(message) = member.drop_now() {
                        late.push_back(Ended {
                            index,
                            outcome: Outcome::Panicked(message),
                        });
                    }
                }
            }
        }
        self.0.clear();
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// The members of an in-task group, by type, as they are added and as the
/// run executes them.
#[derive(Default)]
pub(crate) struct InTask {
    sets: Vec<Box<dyn AnySet>>,
    /// The set the last member went into: the next is most often of its
    /// type too.
    last: usize,
    /// Exits found while cancelling, handed out by `poll_exit`.
    late: VecDeque<Ended>,
}

impl InTask {
    /// Adds member `index`: `start`, called with `stop` when it starts.
    pub(crate) fn add<F, Fut, E>(&mut self, index: usize, start: F, stop: Stop)
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.push_slot(Start::new(index, start, stop));
    }

    /// Adds member `index`, whose future is `body`.
    pub(crate) fn push<B: Future<Output = Outcome> + Send + 'static>(
        &mut self,
        index: usize,
        body: B,
    ) {
        self.push_slot(Body::new(index, body));
    }

    fn push_slot<S: Slot>(&mut self, slot: S) {
        let found = (self.last..self.sets.len())
            .chain(0..self.last)
            .find(|&i| self.sets[i].as_any().is::<Set<S>>());
        let i = found.unwrap_or_else(|| {
            self.sets.push(Box::new(Set::<S>(FuturesUnordered::new())));
            self.sets.len() - 1
        });
        self.last = i;
        let set = self.sets[i].as_any().downcast_mut::<Set<S>>();
        set.expect("the set of this type").0.push(slot);
    }
}

impl Members for InTask {
    const BEGIN_THE_STOP: bool = false;

    fn poll_exit(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>> {
        if let Some(exit) = self.late.pop_front() {
            return Poll::Ready(Some(exit));
        }
        let mut gone = true;
        for set in &mut self.sets {
            match set.poll_exit(cx) {
                Poll::Ready(Some(exit)) => return Poll::Ready(Some(exit)),
                Poll::Ready(None) => {}
                Poll::Pending => gone = false,
            }
        }
        if gone {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }

    fn cancel(&mut self, cx: &mut Context<'_>) {
        for set in &mut self.sets {
            set.cancel(cx, &mut self.late);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A future that is ready at once, and panics when dropped.
    struct EndsThenPanics;

    impl Future for EndsThenPanics {
        type Output = Result<(), Infallible>;

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Ready(Ok(()))
        }
    }

    impl Drop for EndsThenPanics {
        fn drop(&mut self) {
            panic!("dropped");
        }
    }

    fn exits(members: &mut InTask) -> Vec<Ended> {
        futures::executor::block_on_stream(futures::stream::poll_fn(|cx| members.poll_exit(cx)))
            .collect()
    }

    // A member added as its closure is the future the closure returns and
    // one word: the index shares the enum's tag, and no `Option` wraps the
    // future. (The node then fits glibc's fast bins for a small member,
    // which the group benchmark shows.)
    #[test]
    fn a_started_member_is_its_future_and_one_word() {
        struct Words {
            _words: [u64; 6],
        }
        impl Future for Words {
            type Output = Result<(), Infallible>;
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
                Poll::Ready(Ok(()))
            }
        }
        fn start(_: Stop) -> Words {
            Words { _words: [0; 6] }
        }
        let size = std::mem::size_of::<Start<fn(Stop) -> Words, Words>>();
        assert_eq!(size, std::mem::size_of::<Words>() + 8);
        assert_eq!(
            std::mem::size_of::<Option<Start<fn(Stop) -> Words, Words>>>(),
            size
        );
        let mut members = InTask::default();
        members.add(7, start as fn(Stop) -> Words, Stop::never());
        let exits = exits(&mut members);
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].index, 7);
        assert!(matches!(exits[0].outcome, Outcome::Ok));
    }

    // Its closure's panic, and its future's `Drop` panicking once it has
    // ended, are its outcome; neither unwinds through the set, and its
    // siblings end too.
    #[test]
    fn a_started_member_panicking_in_its_closure_or_its_drop_is_reported() {
        let mut members = InTask::default();
        members.add(
            0,
            |_stop: Stop| -> std::future::Ready<Result<(), Infallible>> { panic!("starting") },
            Stop::never(),
        );
        members.add(1, |_stop: Stop| EndsThenPanics, Stop::never());
        members.add(2, |_stop: Stop| EndsThenPanics, Stop::never());
        let mut exits = exits(&mut members);
        exits.sort_by_key(|exit| exit.index);
        assert_eq!(exits.len(), 3);
        assert!(matches!(&exits[0].outcome, Outcome::Panicked(message) if message == "starting"));
        for exit in &exits[1..] {
            assert!(matches!(&exit.outcome, Outcome::Panicked(message) if message == "dropped"));
        }
    }

    fn ok() -> impl Future<Output = Outcome> + Send + 'static {
        std::future::ready(Outcome::Ok)
    }

    // Members of one type share a set (one node each, no box); a member of
    // another type, added between them, gets a set of its own; every exit
    // comes back.
    #[test]
    fn members_of_one_type_share_a_set() {
        let mut members = InTask::default();
        members.push(0, ok());
        members.push(1, async { Outcome::Ok });
        members.push(2, ok());
        members.push(3, ok());
        assert_eq!(members.sets.len(), 2);
        let mut ended: Vec<usize> =
            futures::executor::block_on_stream(futures::stream::poll_fn(|cx| {
                members.poll_exit(cx)
            }))
            .map(|exit| exit.index)
            .collect();
        ended.sort();
        assert_eq!(ended, [0, 1, 2, 3]);
    }

    // The start order `Group::new` documents: in the order added, members
    // of one type together, with the first of them.
    #[test]
    fn members_start_in_the_order_added_those_of_one_type_together() {
        use std::sync::{Arc, Mutex};

        let started = Arc::new(Mutex::new(Vec::new()));
        let one_type = |index: usize| {
            let started = started.clone();
            async move {
                started.lock().unwrap().push(index);
                Outcome::Ok
            }
        };
        let mut members = InTask::default();
        members.push(0, one_type(0));
        let other = started.clone();
        members.push(1, async move {
            other.lock().unwrap().push(1);
            Outcome::Ok
        });
        members.push(2, one_type(2));
        let exits = futures::executor::block_on_stream(futures::stream::poll_fn(|cx| {
            members.poll_exit(cx)
        }))
        .count();
        assert_eq!(exits, 3);
        assert_eq!(*started.lock().unwrap(), [0, 2, 1]);
    }
}
