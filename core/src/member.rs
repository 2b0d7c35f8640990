//! One member, as the group runs it: started lazily, its panics caught (in
//! `poll` and in `Drop`), its end reported.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;

use crate::cause::{Cause, Exit};
use crate::error::BoxError;
use crate::in_task::InTask;
use crate::report::Outcome;
use crate::state::StopState;
use crate::stop::Stop;
use crate::unwind::{self, Caught, Guarded};

/// A member that has ended: its position and how it ended.
pub(crate) struct Ended {
    pub(crate) index: usize,
    pub(crate) outcome: Outcome,
}

pin_project_lite::pin_project! {
    /// A member added as its closure and its stop: the closure is called
    /// at the first poll, and the future it returns takes its place in the
    /// same memory. Every panic (the closure's, the future's `poll` and
    /// `Drop`, its error's conversion and `Drop`) is caught, and the
    /// future is dropped in place as it ends, under the guard; what holds
    /// a member that has not ended drops it with [`Start::drop_in_place`]
    /// (an in-task set, in its `Drop`) or under a guard of its own (a
    /// spawned member). No `Option` around the future, and the index in the
    /// tag's word: in an in-task set, a node as small as the future
    /// allows, which for a small member stays within glibc's fast bins
    /// (freed without coalescing).
    #[project = StartProj]
    pub(crate) enum Start<F, Fut> {
        Waiting {
            index: u32,
            start: Option<(F, Stop)>,
        },
        Running {
            index: u32,
            #[pin]
            future: Fut,
        },
        Gone {
            index: u32,
        },
    }
}

impl<F, Fut> Start<F, Fut> {
    pub(crate) fn new(index: usize, start: F, stop: Stop) -> Self {
        Start::Waiting {
            index: u32::try_from(index).expect("allstop: a group has at most 2^32 members"),
            start: Some((start, stop)),
        }
    }

    pub(crate) fn index_of(&self) -> usize {
        match self {
            Start::Waiting { index, .. } | Start::Running { index, .. } | Start::Gone { index } => {
                *index as usize
            }
        }
    }

    /// Drops the member's closure or future now, in place; a panic in its
    /// `Drop` becomes its message. The assignment leaves `Gone` (pending
    /// for ever) even when the old value's `Drop` panics.
    pub(crate) fn drop_in_place(mut self: Pin<&mut Self>) -> Result<(), String> {
        let index = self.index_of() as u32;
        unwind::catch(|| self.set(Start::Gone { index }))
    }
}

impl<F, Fut, E> Start<F, Fut>
where
    F: FnOnce(Stop) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    /// Starts the member if it has not started, and polls it.
    fn poll_member(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        if let StartProj::Waiting { index, start } = self.as_mut().project() {
            let index = *index;
            let (start, stop) = start.take().expect("a member starts once");
            self.set(Start::Running {
                index,
                future: start(stop),
            });
        }
        match self.project() {
            StartProj::Running { future, .. } => future.poll(cx).map(|result| match result {
                Ok(()) => Outcome::Ok,
                Err(error) => Outcome::Err(error.into()),
            }),
            // Ended or cancelled: never polled again by the group.
            StartProj::Waiting { .. } | StartProj::Gone { .. } => Poll::Pending,
        }
    }
}

impl<F, Fut, E> Future for Start<F, Fut>
where
    F: FnOnce(Stop) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let index = self.index_of();
        let mut outcome = match unwind::catch(|| self.as_mut().poll_member(cx)) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(outcome)) => outcome,
            Err(message) => Outcome::Panicked(message),
        };
        // Dropped now, under the guard: its `Drop` is the member's code too.
        // A panic there is its outcome, unless it has panicked already (a
        // future whose `poll` panicked may panic in its `Drop` as well): the
        // first panic is the one reported.
        if let Err(message) = self.drop_in_place() {
            if !matches!(outcome, Outcome::Panicked(_)) {
                let ended = std::mem::replace(&mut outcome, Outcome::Panicked(message));
                // An error's `Drop` is the member's code too.
                let _ = unwind::drop_caught(ended);
            }
        }
        Poll::Ready(Ended { index, outcome })
    }
}

/// A member's future as the group keeps it: inline in its in-task set's
/// node, or in its box when spawned.
pub(crate) trait Slot: Future<Output = Ended> + Send + 'static {
    /// The member's index in the run.
    fn index(&self) -> usize;

    /// Drops the member's future (or its closure, not yet called) now, in
    /// place; a panic in its `Drop` becomes its message. It is pending for
    /// ever after.
    fn drop_now(self: Pin<&mut Self>) -> Result<(), String>;
}

impl<F, Fut, E> Slot for Start<F, Fut>
where
    F: FnOnce(Stop) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn index(&self) -> usize {
        self.index_of()
    }

    fn drop_now(self: Pin<&mut Self>) -> Result<(), String> {
        self.drop_in_place()
    }
}

pin_project_lite::pin_project! {
    /// A member added as its future, which reports its own outcome and
    /// catches its own panics (a restartable member's): `None` once
    /// dropped.
    pub(crate) struct Body<B> {
        index: usize,
        #[pin]
        body: Option<B>,
    }

    impl<B> PinnedDrop for Body<B> {
        fn drop(this: Pin<&mut Self>) {
            let _ = Body::drop_body(this);
        }
    }
}

impl<B> Body<B> {
    pub(crate) fn new(index: usize, body: B) -> Self {
        Body {
            index,
            body: Some(body),
        }
    }

    /// Drops the member's future in place (it is pinned); a panic in its
    /// `Drop` becomes its message. The assignment leaves `None` even when
    /// the old value's `Drop` panics.
    fn drop_body(self: Pin<&mut Self>) -> Result<(), String> {
        let mut body = self.project().body;
        unwind::catch(|| body.set(None))
    }
}

impl<B: Future<Output = Outcome>> Future for Body<B> {
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let this = self.project();
        match this.body.as_pin_mut() {
            Some(body) => body.poll(cx).map(|outcome| Ended {
                index: *this.index,
                outcome,
            }),
            // Cancelled: never polled again by the group.
            None => Poll::Pending,
        }
    }
}

impl<B: Future<Output = Outcome> + Send + 'static> Slot for Body<B> {
    fn index(&self) -> usize {
        self.index
    }

    fn drop_now(self: Pin<&mut Self>) -> Result<(), String> {
        self.drop_body()
    }
}

/// The future of a member whose `run` reports its own outcome: a
/// restartable one, whose attempts catch their panics. A panic of `run`
/// itself (its timer's, say) is caught here.
pub(crate) fn supervised_body(
    run: impl Future<Output = Outcome> + Send + 'static,
) -> impl Future<Output = Outcome> + Send + 'static {
    Caught::new(run).map(|result| result.unwrap_or_else(Outcome::Panicked))
}

/// The members of a group as it is built: in the run's own task, by type
/// (see [`InTask`]), or boxed, to be spawned a task each.
pub(crate) enum Added {
    InTask(InTask),
    Spawned(Vec<Member>),
}

impl Added {
    /// Adds member `index`, called `name`: `start`, called with `stop` when
    /// it starts.
    // A `Cow`, not a `&str`: a spawned member keeps a clone of a static name,
    // not a copy, and an in-task member none.
    #[allow(clippy::ptr_arg)]
    pub(crate) fn add<F, Fut, E>(
        &mut self,
        index: usize,
        name: &Cow<'static, str>,
        start: F,
        stop: Stop,
    ) where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        match self {
            Added::InTask(members) => members.add(index, start, stop),
            // The same state machine as in the run's task, boxed.
            Added::Spawned(members) => {
                members.push(Member::new(name.clone(), Start::new(index, start, stop)))
            }
        }
    }

    /// Adds member `index`, called `name`, whose future is `body`.
    #[allow(clippy::ptr_arg)] // As in `add`.
    pub(crate) fn push<B: Future<Output = Outcome> + Send + 'static>(
        &mut self,
        index: usize,
        name: &Cow<'static, str>,
        body: B,
    ) {
        match self {
            Added::InTask(members) => members.push(index, body),
            Added::Spawned(members) => {
                members.push(Member::new(name.clone(), Body::new(index, body)))
            }
        }
    }

    /// None of them: for a group cancelled before it ran, whose members
    /// never start. They are dropped here, each drop caught.
    pub(crate) fn discard(&mut self) {
        *self = match self {
            Added::InTask(_) => Added::InTask(InTask::default()),
            Added::Spawned(_) => Added::Spawned(Vec::new()),
        };
    }
}

pin_project_lite::pin_project! {
    /// A spawned member's slot, with its name in the same box: its
    /// runtime's task then holds the box and the collector, 24 bytes, which
    /// on tokio makes the task 128 bytes rather than 256.
    struct Named<S> {
        name: Cow<'static, str>,
        #[pin]
        slot: S,
    }
}

/// A spawned member's slot, type-erased, and what its task needs to know
/// of it.
trait NamedSlot: Future<Output = Ended> + Send {
    /// Its index in the run: its entry's and its waker slot's.
    fn index(&self) -> usize;
    /// Its name, for the cause if its end begins the stop.
    fn name(&self) -> &str;
}

impl<S: Slot> Future for Named<S> {
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        self.project().slot.poll(cx)
    }
}

impl<S: Slot> NamedSlot for Named<S> {
    fn index(&self) -> usize {
        self.slot.index()
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A member to be spawned: type-erased, so that the runtime's task holds
/// it as it is. Dropping it never unwinds.
pub(crate) struct Member(Guarded<Pin<Box<dyn NamedSlot>>>);

impl Member {
    fn new(name: Cow<'static, str>, slot: impl Slot) -> Self {
        Member(Guarded::new(Box::pin(Named { name, slot })))
    }

    /// Its index in the run: its entry's, and its waker slot's when
    /// spawned. `None` once it is gone.
    pub(crate) fn index(&self) -> Option<usize> {
        self.0.get().map(|slot| slot.index())
    }

    /// Its name; `""` once it is gone.
    pub(crate) fn name(&self) -> &str {
        self.0.get().map_or("", |slot| slot.name())
    }

    /// Drops the member now, as the group cancels it. A panic in its `Drop`
    /// is its outcome: `Some(exit)` then.
    pub(crate) fn cancel(&mut self) -> Option<Ended> {
        let index = self.index()?;
        self.0.drop_now().err().map(|message| Ended {
            index,
            outcome: Outcome::Panicked(message),
        })
    }
}

impl Future for Member {
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        match self.0.get_mut() {
            Some(slot) => slot.as_mut().poll(cx),
            // Cancelled: never polled again by the group.
            None => Poll::Pending,
        }
    }
}

/// Begins the group's stop, naming the member that ended, unless it has
/// begun.
///
/// The member that truly finished first must be the cause, and the others
/// must hear of it without a hop through a collector. So a spawned member's
/// task calls this as its member ends (`Reporting`); an in-task member's
/// run does, as it records the exit (`RunLoop::record`): it polls the
/// member itself and sees its end before any other member runs.
pub(crate) fn begin_stop(state: &StopState, index: usize, name: Cow<'_, str>, outcome: &Outcome) {
    state.broadcast.stop(Some(index), || Cause::Finished {
        member: name.into_owned(),
        exit: Exit::of(outcome),
    });
}
