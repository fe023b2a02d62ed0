//! The linearizability checker on its own: hand-written histories with a known answer, random
//! histories recorded from a real sequential execution (linearizable by construction) and the same
//! histories with one read corrupted (never linearizable), and a size that the fault tests reach.

mod common;

use std::time::Instant;

use common::linearizability::{check, CheckError, Input, Operation, Output, Violation};
use volery::rng::Rng;

const K: &str = "/lin/k0";

fn create(c: usize, v: &str, t: (u64, u64), out: Output) -> Operation {
    Operation::done(c, K, Input::Create(v.into()), t.0, t.1, out)
}

fn set(c: usize, v: &str, t: (u64, u64), version: i32) -> Operation {
    Operation::done(
        c,
        K,
        Input::Set(v.into()),
        t.0,
        t.1,
        Output::SetOk { version },
    )
}

fn get(c: usize, t: (u64, u64), v: &str, version: i32) -> Operation {
    Operation::done(
        c,
        K,
        Input::Get,
        t.0,
        t.1,
        Output::GetOk {
            value: v.into(),
            version,
        },
    )
}

fn get_none(c: usize, t: (u64, u64)) -> Operation {
    Operation::done(c, K, Input::Get, t.0, t.1, Output::NoNode)
}

fn delete(c: usize, t: (u64, u64), out: Output) -> Operation {
    Operation::done(c, K, Input::Delete, t.0, t.1, out)
}

fn unknown(c: usize, input: Input, at: u64) -> Operation {
    Operation::unknown(c, K, input, at)
}

fn created(c: usize, v: &str, t: (u64, u64)) -> Operation {
    create(c, v, t, Output::Created)
}

fn assert_linearizable(ops: &[Operation]) {
    if let Err(e) = check(ops) {
        panic!("expected linearizable, got: {e}");
    }
}

fn assert_violation(ops: &[Operation]) -> Violation {
    match check(ops) {
        Ok(r) => panic!("expected a violation, the checker accepted {r:?}"),
        Err(CheckError::Inconclusive { key, steps }) => {
            panic!("expected a violation, inconclusive on {key} after {steps} steps")
        }
        Err(CheckError::Violation(v)) => *v,
    }
}

#[test]
fn empty_and_sequential_histories_are_linearizable() {
    assert_linearizable(&[]);
    assert_linearizable(&[
        get_none(0, (0, 1)),
        created(0, "a", (2, 3)),
        get(1, (4, 5), "a", 0),
        set(1, "b", (6, 7), 1),
        get(0, (8, 9), "b", 1),
        delete(0, (10, 11), Output::Deleted),
        delete(1, (12, 13), Output::NoNode),
        Operation::done(2, K, Input::Set("x".into()), 14, 15, Output::NoNode),
        created(2, "c", (16, 17)),
        create(0, "d", (18, 19), Output::NodeExists),
        get(2, (20, 21), "c", 0),
    ]);
}

#[test]
fn overlapping_writes_and_reads_linearize_in_some_order() {
    assert_linearizable(&[
        created(0, "a", (0, 1)),
        set(1, "b", (2, 10), 1),
        set(2, "c", (3, 9), 2),
        get(3, (4, 5), "b", 1),
        get(4, (6, 11), "c", 2),
        get(0, (12, 13), "c", 2),
    ]);
    // The write invoked last took effect first: allowed, they overlap.
    assert_linearizable(&[
        created(0, "a", (0, 1)),
        set(1, "b", (2, 10), 2),
        set(2, "c", (3, 4), 1),
        get(3, (5, 6), "c", 1),
        get(3, (11, 12), "b", 2),
    ]);
    // A read concurrent with a write may see either side of it.
    for (v, version) in [("a", 0), ("b", 1)] {
        assert_linearizable(&[
            created(0, "a", (0, 1)),
            set(1, "b", (2, 10), 1),
            get(2, (3, 4), v, version),
        ]);
    }
    // Concurrent create and delete: the read between them saw the create.
    assert_linearizable(&[
        created(0, "a", (0, 10)),
        delete(1, (1, 12), Output::Deleted),
        get(2, (2, 11), "a", 0),
        get_none(2, (13, 14)),
    ]);
}

#[test]
fn unknown_outcomes_may_or_may_not_have_taken_effect() {
    // It took effect, long after its invocation and after later operations of other clients.
    assert_linearizable(&[
        created(0, "a", (0, 1)),
        unknown(1, Input::Set("x".into()), 2),
        get(2, (3, 4), "a", 0),
        set(2, "y", (5, 6), 1),
        get(0, (20, 21), "x", 2),
    ]);
    // It never took effect.
    assert_linearizable(&[
        created(0, "a", (0, 1)),
        unknown(1, Input::Set("x".into()), 2),
        get(2, (10, 11), "a", 0),
        get(2, (12, 13), "a", 0),
    ]);
    // An unknown delete and an unknown create, both effective.
    assert_linearizable(&[
        created(0, "a", (0, 1)),
        unknown(1, Input::Delete, 2),
        get_none(2, (5, 6)),
        unknown(1, Input::Create("z".into()), 7),
        get(2, (9, 10), "z", 0),
    ]);
    // Unknown reads say nothing and are dropped.
    assert_linearizable(&[created(0, "a", (0, 1)), unknown(1, Input::Get, 2)]);
    // But an unknown write that took effect still had to happen after its invocation.
    let v = assert_violation(&[
        created(0, "a", (0, 1)),
        get(2, (2, 3), "x", 1),
        unknown(1, Input::Set("x".into()), 4),
    ]);
    assert_eq!(v.stuck.input, Input::Get);
}

#[test]
fn a_stale_read_after_an_acknowledged_write_is_a_violation() {
    let v = assert_violation(&[
        created(0, "a", (0, 1)),
        set(1, "b", (2, 3), 1),
        get(2, (4, 5), "a", 0),
    ]);
    assert_eq!(v.key, K);
    assert_eq!(v.stuck, get(2, (4, 5), "a", 0));
    assert_eq!(v.longest_prefix.len(), 2, "{v}");
    assert!(v.pending.contains(&v.stuck), "{v}");
    assert_eq!(v.context, v.longest_prefix, "{v}");
    let text = v.to_string();
    assert!(text.contains(K) && text.contains("get"), "{text}");
}

#[test]
fn a_read_of_a_value_never_written_is_a_violation() {
    let v = assert_violation(&[
        created(0, "a", (0, 1)),
        set(1, "b", (2, 10), 1),
        get(2, (3, 4), "zzz", 1),
    ]);
    assert_eq!(v.stuck, get(2, (3, 4), "zzz", 1));
    assert_violation(&[get(2, (3, 4), "a", 0)]);
}

#[test]
fn a_lost_acknowledged_write_is_a_violation() {
    // Two acknowledged writes, then a read that sees the first only.
    assert_violation(&[
        created(0, "a", (0, 1)),
        set(1, "b", (2, 3), 1),
        set(2, "c", (4, 5), 2),
        get(3, (6, 7), "b", 1),
    ]);
    // Two concurrent writes both acknowledged with version 1: one update was lost.
    assert_violation(&[
        created(0, "a", (0, 1)),
        set(1, "b", (2, 5), 1),
        set(2, "c", (3, 6), 1),
    ]);
    // An acknowledged create, then a read finding nothing.
    assert_violation(&[created(0, "a", (0, 1)), get_none(1, (2, 3))]);
    // An acknowledged delete, then a read still finding the node.
    assert_violation(&[
        created(0, "a", (0, 1)),
        delete(1, (2, 3), Output::Deleted),
        get(2, (4, 5), "a", 0),
    ]);
}

#[test]
fn a_version_going_backwards_is_a_violation() {
    assert_violation(&[
        created(0, "a", (0, 1)),
        set(1, "b", (2, 3), 1),
        set(1, "c", (4, 5), 2),
        get(2, (6, 7), "c", 2),
        get(2, (8, 9), "c", 1),
    ]);
    // Writes that finished in one order but report versions of the other.
    assert_violation(&[
        created(0, "a", (0, 1)),
        set(1, "b", (2, 3), 2),
        set(2, "c", (4, 5), 1),
    ]);
}

#[test]
fn impossible_replies_are_violations() {
    assert_violation(&[create(0, "a", (0, 1), Output::NodeExists)]);
    assert_violation(&[delete(0, (0, 1), Output::Deleted)]);
    assert_violation(&[
        created(0, "a", (0, 1)),
        Operation::done(1, K, Input::Set("b".into()), 2, 3, Output::NoNode),
    ]);
    assert_violation(&[
        created(0, "a", (0, 1)),
        Operation::done(1, K, Input::Get, 2, 3, Output::Other("BadVersion".into())),
    ]);
}

#[test]
fn keys_are_checked_independently_and_the_bad_one_is_named() {
    let mut ops = vec![
        created(0, "a", (0, 1)),
        set(1, "b", (2, 3), 1),
        get(2, (4, 5), "b", 1),
    ];
    let mut other: Vec<Operation> = ops.clone();
    for op in &mut other {
        op.key = "/lin/k1".into();
    }
    ops.extend(other.clone());
    assert_linearizable(&ops);
    let mut stale = get(3, (6, 7), "a", 0);
    stale.key = "/lin/k1".into();
    ops.push(stale);
    assert_eq!(assert_violation(&ops).key, "/lin/k1");
}

/// What a simulated client is doing.
enum Phase {
    Idle,
    /// Invoked, not yet applied to the store.
    Invoked(usize),
    /// Applied (linearized) with this reply, not yet returned.
    Applied(usize, Output),
}

/// A history of `clients` concurrent clients over `keys` keys, `ops` operations in all, recorded
/// from a real execution: every operation takes effect at one instant strictly inside its
/// interval, so the history is linearizable. `unknown_percent` of operations are abandoned by
/// their client, before or after taking effect.
fn generate(
    seed: u64,
    keys: usize,
    clients: usize,
    ops: usize,
    unknown_percent: u64,
) -> Vec<Operation> {
    let mut rng = Rng(seed);
    let mut store: Vec<Option<(Vec<u8>, i32)>> = vec![None; keys];
    let mut history: Vec<Operation> = Vec::new();
    let mut phases: Vec<Phase> = (0..clients).map(|_| Phase::Idle).collect();
    let mut t = 0u64;
    let mut invoked = 0;
    let mut busy = 0;
    while invoked < ops || busy > 0 {
        t += 1;
        let c = rng.below(clients as u64) as usize;
        match std::mem::replace(&mut phases[c], Phase::Idle) {
            Phase::Idle if invoked < ops => {
                let key = rng.below(keys as u64) as usize;
                let value = format!("c{c}-{t}").into_bytes();
                let input = match rng.below(100) {
                    0..=44 => Input::Get,
                    45..=84 => Input::Set(value),
                    85..=92 => Input::Create(value),
                    _ => Input::Delete,
                };
                history.push(Operation::unknown(c, &format!("/lin/k{key}"), input, t));
                phases[c] = Phase::Invoked(history.len() - 1);
                invoked += 1;
                busy += 1;
            }
            Phase::Idle => {}
            Phase::Invoked(i) => {
                if rng.percent(unknown_percent / 2) {
                    busy -= 1; // abandoned before taking effect
                    continue;
                }
                let key: usize = history[i].key["/lin/k".len()..].parse().unwrap();
                let node = &mut store[key];
                let out = match (&history[i].input, node.as_mut()) {
                    (Input::Create(v), None) => {
                        *node = Some((v.clone(), 0));
                        Output::Created
                    }
                    (Input::Create(_), Some(_)) => Output::NodeExists,
                    (Input::Set(v), Some((value, version))) => {
                        *value = v.clone();
                        *version += 1;
                        Output::SetOk { version: *version }
                    }
                    (Input::Set(_), None) => Output::NoNode,
                    (Input::Get, Some((value, version))) => Output::GetOk {
                        value: value.clone(),
                        version: *version,
                    },
                    (Input::Get, None) => Output::NoNode,
                    (Input::Delete, Some(_)) => {
                        *node = None;
                        Output::Deleted
                    }
                    (Input::Delete, None) => Output::NoNode,
                    (input, _) => unreachable!("not generated: {input:?}"),
                };
                phases[c] = Phase::Applied(i, out);
            }
            Phase::Applied(i, out) => {
                busy -= 1;
                if !rng.percent(unknown_percent / 2) {
                    history[i].ret = Some((t, out));
                }
            }
        }
    }
    history
}

/// Seeds for the random cases: `VOLERY_SEED` replays one.
fn seeds(n: u64) -> Vec<u64> {
    match std::env::var("VOLERY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..n).map(|i| 0x5eed_0000 + i).collect(),
    }
}

#[test]
fn random_executions_are_linearizable_and_any_corrupted_read_is_caught() {
    let mut corrupted = 0;
    for seed in seeds(300) {
        let mut rng = Rng(seed ^ 0xc0ffee);
        let keys = 1 + rng.below(3) as usize;
        let clients = 2 + rng.below(7) as usize;
        let history = generate(seed, keys, clients, 40 + rng.below(120) as usize, 10);
        if let Err(e) = check(&history) {
            panic!("seed {seed} (replay with VOLERY_SEED={seed}): generated history rejected: {e}");
        }
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].ret, Some((_, Output::GetOk { .. }))))
            .collect();
        if reads.is_empty() {
            continue;
        }
        let victim = reads[rng.below(reads.len() as u64) as usize];
        let mut bad = history.clone();
        let Some((_, Output::GetOk { value, version })) = &mut bad[victim].ret else {
            unreachable!()
        };
        if rng.percent(50) {
            *value = b"never written".to_vec();
        } else {
            *version += 1_000_000;
        }
        match check(&bad) {
            Err(CheckError::Violation(v)) => {
                assert_eq!(v.key, bad[victim].key, "seed {seed}");
                corrupted += 1;
            }
            other => panic!(
                "seed {seed} (replay with VOLERY_SEED={seed}): corrupted read of {} not caught: {other:?}",
                bad[victim]
            ),
        }
    }
    assert!(corrupted > 0);
}

#[test]
fn five_keys_of_two_thousand_operations_check_quickly() {
    let history = generate(42, 5, 8, 10_000, 4);
    let started = Instant::now();
    let report = check(&history).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "checked {} operations on {} keys ({} unknown outcomes, {} search steps) in {:?}",
        report.operations,
        report.keys,
        report.unknown,
        report.steps,
        started.elapsed()
    );
    assert_eq!(report.keys, 5);
}

const K2: &str = "/lin/k1";

fn multi(ops: &[(&str, Input)]) -> Input {
    Input::Multi(
        ops.iter()
            .map(|(k, i)| (k.to_string(), i.clone()))
            .collect(),
    )
}

fn read_both(c: usize, t: (u64, u64), a: (&str, i32), b: (&str, i32)) -> Operation {
    let get = |(v, version): (&str, i32)| Output::GetOk {
        value: v.into(),
        version,
    };
    Operation::done(
        c,
        "multiRead",
        Input::MultiRead(vec![K.into(), K2.into()]),
        t.0,
        t.1,
        Output::MultiRead(vec![get(a), get(b)]),
    )
}

fn both_created() -> Vec<Operation> {
    vec![
        created(0, "a", (0, 1)),
        Operation::done(0, K2, Input::Create("a".into()), 0, 1, Output::Created),
    ]
}

#[test]
fn a_multi_is_atomic_across_keys() {
    let write_both = |t: (u64, u64)| {
        Operation::done(
            1,
            "multi",
            multi(&[
                (K, Input::Set("x".into())),
                (K2, Input::SetVersion("y".into(), 0)),
            ]),
            t.0,
            t.1,
            Output::MultiOk(vec![
                Output::SetOk { version: 1 },
                Output::SetOk { version: 1 },
            ]),
        )
    };
    // A multiRead concurrent with the multi sees all of it or none of it.
    for seen in [(("a", 0), ("a", 0)), (("x", 1), ("y", 1))] {
        let mut ops = both_created();
        ops.push(write_both((2, 10)));
        ops.push(read_both(2, (3, 4), seen.0, seen.1));
        assert_linearizable(&ops);
    }
    let mut torn = both_created();
    torn.push(write_both((2, 10)));
    torn.push(read_both(2, (3, 4), ("x", 1), ("a", 0)));
    let v = assert_violation(&torn);
    assert_eq!(
        v.key,
        format!("{K},{K2}"),
        "linked keys are checked together"
    );
    // Two single-key reads inside the multi's interval may not see it half done either: the
    // first sees the new value of K, so the later read of K2 must see the new value too.
    let mut ops = both_created();
    ops.push(write_both((2, 10)));
    ops.push(get(2, (3, 4), "x", 1));
    ops.push(Operation::done(
        2,
        K2,
        Input::Get,
        5,
        6,
        Output::GetOk {
            value: "a".into(),
            version: 0,
        },
    ));
    assert_violation(&ops);
}

#[test]
fn a_failed_multi_changes_nothing_and_names_the_failing_op() {
    let failed = |index: usize, err: Output| {
        Operation::done(
            1,
            "multi",
            multi(&[(K, Input::Set("x".into())), (K2, Input::Check(7))]),
            2,
            3,
            Output::MultiFailed {
                index,
                err: Box::new(err),
            },
        )
    };
    let mut ops = both_created();
    ops.push(failed(1, Output::BadVersion));
    ops.push(read_both(2, (4, 5), ("a", 0), ("a", 0)));
    assert_linearizable(&ops);
    for (index, err) in [(0, Output::BadVersion), (1, Output::NoNode)] {
        let mut ops = both_created();
        ops.push(failed(index, err));
        assert_violation(&ops);
    }
    // A failed multi's writes did not happen.
    let mut ops = both_created();
    ops.push(failed(1, Output::BadVersion));
    ops.push(read_both(2, (4, 5), ("x", 1), ("a", 0)));
    assert_violation(&ops);
}

#[test]
fn versioned_writes_and_checks_follow_the_data_version() {
    assert_linearizable(&[
        created(0, "a", (0, 1)),
        Operation::done(
            1,
            K,
            Input::SetVersion("b".into(), 0),
            2,
            3,
            Output::SetOk { version: 1 },
        ),
        Operation::done(
            1,
            K,
            Input::SetVersion("c".into(), 0),
            4,
            5,
            Output::BadVersion,
        ),
        Operation::done(2, K, Input::Check(1), 6, 7, Output::CheckOk),
        Operation::done(2, K, Input::Check(-1), 8, 9, Output::CheckOk),
        get(2, (10, 11), "b", 1),
    ]);
    assert_violation(&[
        created(0, "a", (0, 1)),
        Operation::done(
            1,
            K,
            Input::SetVersion("b".into(), 3),
            2,
            3,
            Output::SetOk { version: 4 },
        ),
    ]);
    assert_violation(&[
        created(0, "a", (0, 1)),
        Operation::done(2, K, Input::Check(0), 2, 3, Output::BadVersion),
    ]);
    // A check with an unknown outcome says nothing and is dropped, as a read.
    let report = check(&[created(0, "a", (0, 1)), unknown(1, Input::Check(5), 2)]).unwrap();
    assert_eq!(report.operations, 1);
}
