//! A property test over random groups: member counts, exit kinds, exit
//! orders and delays, in both futures-based modes.

use std::time::Duration;

use allstop::{Cause, Finish, Group, Outcome, Stop};
use proptest::prelude::*;

use crate::common::{bounded, yield_times, Counter, ManualTimer};
use crate::suite::Mode;

/// What one random member does.
#[derive(Debug, Clone)]
enum Kind {
    /// Finishes on its own after `n` turns, with `Ok`.
    Ok(usize),
    /// Finishes on its own after `n` turns, with an error.
    Err(usize),
    /// Panics after `n` turns.
    Panic(usize),
    /// Waits for the stop, then takes `n` turns and returns `Ok`.
    Obey(usize),
    /// Waits for the stop, then takes `n` turns and fails.
    ObeyErr(usize),
    /// Never finishes.
    Ignore,
}

impl Kind {
    fn finishes_alone(&self) -> bool {
        matches!(self, Kind::Ok(_) | Kind::Err(_) | Kind::Panic(_))
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (0..8usize).prop_map(Kind::Ok),
        (0..8usize).prop_map(Kind::Err),
        (0..8usize).prop_map(Kind::Panic),
        (0..8usize).prop_map(Kind::Obey),
        (0..8usize).prop_map(Kind::ObeyErr),
        Just(Kind::Ignore),
    ]
}

fn check<M: Mode>(kinds: Vec<Kind>) {
    let drops = Counter::new();
    let timer = ManualTimer::new();
    let mut group = Group::new();
    group.grace(Duration::from_secs(3600), timer.clone());
    for (i, kind) in kinds.iter().cloned().enumerate() {
        let guard = drops.guard();
        group.add(format!("m{i}"), move |stop: Stop| async move {
            let _guard = guard;
            match kind {
                Kind::Ok(n) => {
                    yield_times(n).await;
                    Ok(())
                }
                Kind::Err(n) => {
                    yield_times(n).await;
                    Err(format!("m{i} failed"))
                }
                Kind::Panic(n) => {
                    yield_times(n).await;
                    panic!("m{i} panicked")
                }
                Kind::Obey(n) => {
                    stop.await;
                    yield_times(n).await;
                    Ok(())
                }
                Kind::ObeyErr(n) => {
                    stop.await;
                    yield_times(n).await;
                    Err(format!("m{i} failed"))
                }
                Kind::Ignore => futures::future::pending().await,
            }
        });
    }
    let anyone_finishes = kinds.iter().any(Kind::finishes_alone);
    if !anyone_finishes {
        group.stop_handle().stop("external");
    }
    let ignorers = kinds.iter().filter(|k| matches!(k, Kind::Ignore)).count();
    let count = kinds.len();
    // Fire the deadline once every member that can end has ended.
    let firing = {
        let timer = timer.clone();
        let drops = drops.clone();
        std::thread::spawn(move || {
            drops.wait_for(count - ignorers);
            timer.fire();
        })
    };
    let report = M::block_on(M::run(group));
    firing.join().unwrap();

    // Every member dropped, one entry each, in order.
    assert_eq!(drops.get(), count);
    assert_eq!(report.members().len(), count);
    for (i, (member, kind)) in report.members().iter().zip(&kinds).enumerate() {
        assert_eq!(member.name(), format!("m{i}"));
        let expected = match kind {
            Kind::Ok(_) | Kind::Obey(_) => "ok".to_owned(),
            Kind::Err(_) | Kind::ObeyErr(_) => format!("failed: m{i} failed"),
            Kind::Panic(_) => format!("panicked: m{i} panicked"),
            Kind::Ignore => "cancelled: did not stop before the deadline".to_owned(),
        };
        assert_eq!(member.outcome().to_string(), expected);
    }
    // The cause is one of the members that could finish on its own, and
    // says how it finished.
    match report.cause() {
        Some(Cause::Finished { member, how }) => {
            let i: usize = member[1..].parse().unwrap();
            assert!(
                kinds[i].finishes_alone(),
                "{member} cannot have finished first"
            );
            let agrees = match (&kinds[i], how) {
                (Kind::Ok(_), Finish::Ok) => true,
                (Kind::Err(_), Finish::Failed(m)) => *m == format!("m{i} failed"),
                (Kind::Panic(_), Finish::Panicked(m)) => *m == format!("m{i} panicked"),
                _ => false,
            };
            assert!(agrees, "{member}: {how:?} vs {:?}", kinds[i]);
        }
        Some(Cause::Requested(_)) => assert!(!anyone_finishes),
        other => panic!("unexpected cause {other:?}"),
    }
    let success = report
        .members()
        .iter()
        .all(|m| matches!(m.outcome(), Outcome::Ok));
    assert_eq!(report.is_success(), success);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_groups_in_task(kinds in prop::collection::vec(kind(), 1..24)) {
        bounded(move || check::<crate::InTask<crate::Futures>>(kinds));
    }

    #[test]
    fn random_groups_spawned(kinds in prop::collection::vec(kind(), 1..24)) {
        bounded(move || check::<crate::Spawned<crate::Futures>>(kinds));
    }
}
