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
            Added::Spawned(_) => {
                let body = Start::new(index, start, stop).map(|ended| ended.outcome);
                self.push(index, name, body);
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
            Added::Spawned(members) => members.push(Member(Guarded::new(Box::pin(Named {
                index,
                name: name.clone(),
                body,
            })))),
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
    /// A spawned member's future, with its index and its name in the same
    /// box: its runtime's task then holds a pointer to it and the
    /// collector, 24 bytes, which on tokio makes the task 128 bytes rather
    /// than 256.
    struct Named<B> {
        index: usize,
        name: Cow<'static, str>,
        #[pin]
        body: B,
    }
}

/// A spawned member's future, type-erased, and what its task needs to know
/// of it.
trait NamedFuture: Future<Output = Outcome> + Send {
    /// Its index in the run: its entry's and its waker slot's.
    fn index(&self) -> usize;
    /// Its name, for the cause if its end begins the stop.
    fn name(&self) -> &str;
}

impl<B: Future<Output = Outcome> + Send> Future for Named<B> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        self.project().body.poll(cx)
    }
}

impl<B: Future<Output = Outcome> + Send> NamedFuture for Named<B> {
    fn index(&self) -> usize {
        self.index
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A member to be spawned: type-erased, so that the runtime's task holds
/// it as it is. Dropping it never unwinds.
pub(crate) struct Member(Guarded<Pin<Box<dyn NamedFuture>>>);

impl Member {
    /// Its index in the run: its entry's, and its waker slot's when
    /// spawned. `None` once it is gone.
    pub(crate) fn index(&self) -> Option<usize> {
        self.0.get().map(|body| body.index())
    }

    /// Its name; `""` once it is gone.
    pub(crate) fn name(&self) -> &str {
        self.0.get().map_or("", |body| body.name())
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
            Some(body) => {
                let index = body.index();
                body.as_mut()
                    .poll(cx)
                    .map(|outcome| Ended { index, outcome })
            }
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
