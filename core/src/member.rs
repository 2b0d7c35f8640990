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
use crate::unwind::{Caught, Guarded};

/// A member that has ended: its position and how it ended.
pub(crate) struct Ended {
    pub(crate) index: usize,
    pub(crate) outcome: Outcome,
}

/// A spawned member's future: the closure `start`, called with `stop` on
/// the first poll, and its outcome, every panic caught. (An in-task member
/// is kept as this in one enum with its index: see [`InTask::add`].)
///
/// The closure runs inside the panic guard, so a member that panics while
/// starting is reported like any other panic. The member does not begin the
/// group's stop when it ends: what runs it does (see [`begin_stop`]).
///
/// Built from `futures` combinators rather than an `async` block: they keep
/// the closure and the future it returns in one slot, which halves its
/// size.
pub(crate) fn body<F, Fut, E>(
    stop: Stop,
    start: F,
) -> impl Future<Output = Outcome> + Send + 'static
where
    F: FnOnce(Stop) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    // The error's conversion is the member's code too: inside the guard.
    let run = futures::future::lazy(move |_| start(stop))
        .flatten()
        .map(|result| result.map_err(Into::<BoxError>::into));
    Caught::new(run).map(|result| match result {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(error)) => Outcome::Err(error),
        Err(message) => Outcome::Panicked(message),
    })
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
    /// Adds member `index`: `start`, called with `stop` when it starts.
    pub(crate) fn add<F, Fut, E>(&mut self, index: usize, start: F, stop: Stop)
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        match self {
            Added::InTask(members) => members.add(index, start, stop),
            Added::Spawned(_) => self.push(index, body(stop, start)),
        }
    }

    /// Adds member `index`, whose future is `body`.
    pub(crate) fn push<B: Future<Output = Outcome> + Send + 'static>(
        &mut self,
        index: usize,
        body: B,
    ) {
        match self {
            Added::InTask(members) => members.push(index, body),
            Added::Spawned(members) => members.push(Member {
                index,
                body: Guarded::new(Box::pin(body)),
            }),
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

type Body = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A member to be spawned: type-erased, so that the runtime's task holds
/// it as it is. Dropping it never unwinds.
pub(crate) struct Member {
    index: usize,
    body: Guarded<Body>,
}

impl Member {
    /// Drops the member now, as the group cancels it. A panic in its `Drop`
    /// is its outcome: `Some(exit)` then.
    pub(crate) fn cancel(&mut self) -> Option<Ended> {
        self.body.drop_now().err().map(|message| Ended {
            index: self.index,
            outcome: Outcome::Panicked(message),
        })
    }
}

impl Future for Member {
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let index = self.index;
        match self.body.get_mut() {
            Some(body) => body
                .as_mut()
                .poll(cx)
                .map(|outcome| Ended { index, outcome }),
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
