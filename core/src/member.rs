//! One member, as the group runs it: started lazily, its panic caught, its
//! end reported — in one allocation.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;

use crate::report::{ErrorChain, Outcome};
use crate::stop::{Cause, Finish, Shared, Stop};
use crate::BoxError;

/// A member that has ended on its own.
pub(crate) struct Done {
    pub(crate) index: usize,
    pub(crate) outcome: Outcome,
}

/// A member as the group runs it: type-erased, one allocation, polled in
/// place (in-task) or spawned as it is.
pub(crate) type MemberFuture = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Wraps the member closure `start`, called with `stop` on the first poll.
///
/// The closure runs inside the panic guard, so a member that panics while
/// starting is reported like any other panic. The member ends in its own
/// task and begins the stop from there: the cause is the member that truly
/// finished first, and the others hear of it without a hop through the
/// collector.
///
/// Built from `futures` combinators rather than an `async` block: they keep
/// the closure and the future it returns in one slot, which halves the
/// allocation (an `async` block keeps its captures beside the futures it
/// awaits).
pub(crate) fn wrap<F, Fut, E>(index: usize, stop: Stop, start: F) -> MemberFuture
where
    F: FnOnce(Stop) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    let shared: Arc<Shared> = Stop::shared(&stop).clone();
    let run = futures::future::lazy(move |_| start(stop)).flatten();
    Box::pin(AssertUnwindSafe(run).catch_unwind().map(move |result| {
        let outcome = match result {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(error)) => Outcome::Err(error.into()),
            Err(payload) => Outcome::Panicked(panic_message(payload)),
        };
        begin_stop(&shared, index, &outcome);
        Done { index, outcome }
    }))
}

/// Begins the group's stop, naming the member at `index`, unless it has
/// begun.
fn begin_stop(shared: &Shared, index: usize, outcome: &Outcome) {
    shared.stop(|| Cause::Finished {
        member: shared.member_name(index),
        how: match outcome {
            Outcome::Ok | Outcome::Cancelled => Finish::Ok,
            Outcome::Err(error) => Finish::Failed(ErrorChain(&**error).to_string()),
            Outcome::Panicked(message) => Finish::Panicked(message.clone()),
        },
    });
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
