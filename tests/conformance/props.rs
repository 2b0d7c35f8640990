//! A property test over random groups: member counts, exit kinds, exit
//! orders and delays, in both futures-based modes.

use std::time::Duration;

use allstop::{Cause, Exit, Outcome, Stop};
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
    let mut group = M::group();
    group.timer(timer.clone()).grace(Duration::from_secs(3600));
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
    let report = M::block_on(group.run());
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
        Some(Cause::Finished { member, exit: how }) => {
            let i: usize = member[1..].parse().unwrap();
            assert!(
                kinds[i].finishes_alone(),
                "{member} cannot have finished first"
            );
            let agrees = match (&kinds[i], how) {
                (Kind::Ok(_), Exit::Ok) => true,
                (Kind::Err(_), Exit::Failed(m)) => *m == format!("m{i} failed"),
                (Kind::Panic(_), Exit::Panicked(m)) => *m == format!("m{i} panicked"),
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

/// What one member of a random staged group does.
#[derive(Debug, Clone)]
enum Plan {
    /// Ends on its own after `n` turns: it begins the stop.
    Exit(usize),
    /// Waits for its stop, then takes `n` turns.
    Obey(usize),
    /// Restartable, at most `limit` restarts: fails `failures` times after
    /// `n` turns each, then waits for its stop.
    Flaky { failures: u32, limit: u32, n: usize },
}

fn plan() -> impl Strategy<Value = (u16, Plan)> {
    let plan = prop_oneof![
        (0..6usize).prop_map(Plan::Exit),
        (0..6usize).prop_map(Plan::Obey),
        (0..4u32, 0..4u32, 0..4usize).prop_map(|(failures, limit, n)| Plan::Flaky {
            failures,
            limit,
            n
        }),
    ];
    (0..3u16, plan)
}

/// Stops in stage order, with restarts in between: a member's stop comes
/// only once every member of the earlier stages has ended; restarts stay
/// within the limit, and past it the report says so.
fn check_staged<M: Mode>(plans: Vec<(u16, Plan)>) {
    use std::sync::{Arc, Mutex};

    let timer = ManualTimer::new();
    timer.fire();
    // (stage, "stop" or "end"), in the order they happened.
    let log: Arc<Mutex<Vec<(u16, &'static str)>>> = Arc::default();
    let mut group = M::group();
    group.timer(timer.clone());
    for (i, (stage, plan)) in plans.iter().cloned().enumerate() {
        group.stage(allstop::Stage::new(stage));
        let log = log.clone();
        let finished = log.clone();
        let obey = move |stop: Stop, n: usize| {
            let log = log.clone();
            async move {
                stop.await;
                log.lock().unwrap().push((stage, "stop"));
                yield_times(n).await;
                log.lock().unwrap().push((stage, "end"));
                Ok::<(), String>(())
            }
        };
        match plan {
            Plan::Exit(n) => group.add(format!("m{i}"), move |_stop: Stop| async move {
                yield_times(n).await;
                finished.lock().unwrap().push((stage, "end"));
                Ok::<(), String>(())
            }),
            Plan::Obey(n) => group.add(format!("m{i}"), move |stop| obey(stop, n)),
            Plan::Flaky { failures, limit, n } => {
                let policy = allstop::Restart::on_failure().limit(limit, Duration::from_secs(3600));
                let mut attempt = 0;
                group.add_restartable(format!("m{i}"), policy, move |stop: Stop| {
                    attempt += 1;
                    let obey = obey.clone();
                    let fails = attempt <= failures;
                    async move {
                        if fails {
                            yield_times(n).await;
                            return Err(format!("attempt {attempt}"));
                        }
                        obey(stop, n).await
                    }
                })
            }
        };
    }
    // Stops the group once the restarts have had their turns, unless a
    // member did first.
    group.stage(allstop::Stage::FIRST);
    group.add("stopper", |_stop: Stop| async {
        yield_times(64).await;
        Ok::<(), String>(())
    });
    let report = M::block_on(group.run());

    let log = log.lock().unwrap();
    for (at, (stage, what)) in log.iter().enumerate() {
        if *what == "stop" {
            // Every member of an earlier stage that got its stop ended before.
            let ended_later = log[at..].iter().any(|(s, w)| s < stage && *w == "end");
            assert!(!ended_later, "stage {stage} stopped early: {log:?}");
        }
    }
    for ((_, plan), member) in plans.iter().zip(report.members()) {
        if let Plan::Flaky {
            failures, limit, ..
        } = plan
        {
            assert!(member.restarts() <= (*failures).min(*limit), "{report}");
            assert_eq!(
                member.outcome().is_ok(),
                member.restarts() == *failures,
                "{report}"
            );
            if member.restart_limit_reached() {
                assert!(failures > limit && member.restarts() == *limit, "{report}");
            }
        } else {
            assert!(member.outcome().is_ok(), "{report}");
        }
    }
    for pair in report.stages().windows(2) {
        if let (Some(ended), Some(began)) = (pair[0].ended(), pair[1].began()) {
            assert!(ended <= began, "{report}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_staged_groups_with_restarts_in_task(plans in prop::collection::vec(plan(), 1..12)) {
        bounded(move || check_staged::<crate::InTask<crate::Futures>>(plans));
    }

    #[test]
    fn random_staged_groups_with_restarts_spawned(plans in prop::collection::vec(plan(), 1..12)) {
        bounded(move || check_staged::<crate::Spawned<crate::Futures>>(plans));
    }
}
