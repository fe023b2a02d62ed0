//! A linearizability checker for histories of znode operations, and a recorder that builds them.
//!
//! The model is one znode per key seen as a versioned register: absent, or a value with ZooKeeper's
//! data version (0 after create, +1 per setData). The search is Wing & Gong's, with Lowe's
//! memoization as Porcupine implements it: the history becomes a list of call and return events in
//! time order; the search repeatedly linearizes a pending call whose outcome the model accepts, and
//! backtracks when it meets the return of an operation it has not linearized yet. A cache of
//! (set of linearized operations, model state) prunes every configuration already explored.
//!
//! Linearizability is local (Herlihy & Wing), so every key is checked on its own (P-compositionality),
//! which keeps the search small.
//!
//! An operation whose outcome is unknown (timeout, connection loss, session expiry) may have taken
//! effect at any point after its invocation, or never: it returns at time +∞ and the model accepts
//! whatever outcome it produces. A read with an unknown outcome has no effect and is dropped.
//!
//! Invariant: [`check`] returns `Ok` only if, for every key, some total order of that key's
//! operations respects real time (a return before an invocation orders them) and replays on the
//! model with exactly the recorded outcomes.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// `create(path, value)`, persistent, no sequence suffix.
    Create(Vec<u8>),
    /// `setData(path, value, -1)`.
    Set(Vec<u8>),
    /// `getData(path)`.
    Get,
    /// `delete(path, -1)`.
    Delete,
}

/// A definite reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    Created,
    NodeExists,
    /// setData succeeded; the reply's stat carries the new data version.
    SetOk {
        version: i32,
    },
    GetOk {
        value: Vec<u8>,
        version: i32,
    },
    Deleted,
    NoNode,
    /// Any other definite reply (an unexpected error code): the model never produces it.
    Other(String),
}

/// One operation of the history. Times are nanoseconds since the history's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub input: Input,
    /// Taken before the request was sent.
    pub invoke: u64,
    /// Taken after the reply arrived, with the reply; `None` when the outcome is unknown.
    pub ret: Option<(u64, Output)>,
}

impl Operation {
    /// A completed operation (for hand-written histories).
    pub fn done(
        client: usize,
        key: &str,
        input: Input,
        invoke: u64,
        ret: u64,
        out: Output,
    ) -> Operation {
        assert!(invoke <= ret, "an operation returns after its invocation");
        Operation {
            client,
            key: key.to_string(),
            input,
            invoke,
            ret: Some((ret, out)),
        }
    }

    /// An operation whose outcome is unknown.
    pub fn unknown(client: usize, key: &str, input: Input, invoke: u64) -> Operation {
        Operation {
            client,
            key: key.to_string(),
            input,
            invoke,
            ret: None,
        }
    }

    /// Whether the reply is definite and not a failed attempt to change nothing (for counting).
    pub fn is_acknowledged_write(&self) -> bool {
        matches!(
            (&self.input, &self.ret),
            (Input::Create(_), Some((_, Output::Created)))
                | (Input::Set(_), Some((_, Output::SetOk { .. })))
                | (Input::Delete, Some((_, Output::Deleted)))
        )
    }
}

fn show_bytes(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("{v:?}"),
    }
}

fn show_time(ns: u64) -> String {
    format!("{:.6}s", ns as f64 / 1e9)
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} {} ", self.client, self.key)?;
        match &self.input {
            Input::Create(v) => write!(f, "create({})", show_bytes(v))?,
            Input::Set(v) => write!(f, "set({})", show_bytes(v))?,
            Input::Get => write!(f, "get")?,
            Input::Delete => write!(f, "delete")?,
        }
        match &self.ret {
            None => write!(f, " -> unknown  [{} .. ∞)", show_time(self.invoke)),
            Some((t, out)) => {
                match out {
                    Output::Created => write!(f, " -> ok")?,
                    Output::NodeExists => write!(f, " -> NodeExists")?,
                    Output::SetOk { version } => write!(f, " -> ok(version {version})")?,
                    Output::GetOk { value, version } => {
                        write!(f, " -> {} (version {version})", show_bytes(value))?
                    }
                    Output::Deleted => write!(f, " -> ok")?,
                    Output::NoNode => write!(f, " -> NoNode")?,
                    Output::Other(e) => write!(f, " -> error {e}")?,
                }
                write!(f, "  [{} .. {}]", show_time(self.invoke), show_time(*t))
            }
        }
    }
}

/// Records operations from many concurrent clients.
///
/// Invariant: an operation's recorded interval contains the real one (invoke is read before the
/// request is sent, return after the reply arrived), so the checker never sees an order that did
/// not happen.
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
}

/// Index of an operation in its [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpId(usize);

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> History {
        History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the history started.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Records an invocation; the operation stays of unknown outcome until [`History::complete`].
    pub fn invoke(&self, client: usize, key: &str, input: Input) -> OpId {
        let invoke = self.now();
        let mut ops = self.ops.lock().expect("history lock");
        ops.push(Operation::unknown(client, key, input, invoke));
        OpId(ops.len() - 1)
    }

    /// Records the definite reply of `id`.
    pub fn complete(&self, id: OpId, out: Output) {
        let ret = self.now();
        let mut ops = self.ops.lock().expect("history lock");
        let op = &mut ops[id.0];
        assert!(op.ret.is_none(), "operation completed twice");
        op.ret = Some((ret, out));
    }

    /// A copy of every operation recorded so far.
    pub fn operations(&self) -> Vec<Operation> {
        self.ops.lock().expect("history lock").clone()
    }
}

/// Limits of the search.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Search steps allowed per key before the check gives up as inconclusive.
    pub max_steps_per_key: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps_per_key: 20_000_000,
        }
    }
}

/// What a successful check covered.
#[derive(Clone, Debug)]
pub struct Report {
    pub keys: usize,
    /// Operations checked (reads with an unknown outcome are not counted).
    pub operations: usize,
    /// Operations with an unknown outcome among them.
    pub unknown: usize,
    /// Search steps over all keys (a measure of how much backtracking happened).
    pub steps: u64,
    pub elapsed: Duration,
}

/// Why a history is not shown linearizable.
#[derive(Clone, Debug)]
pub enum CheckError {
    /// No order of the key's operations is legal.
    Violation(Box<Violation>),
    /// The search hit [`Limits::max_steps_per_key`].
    Inconclusive { key: String, steps: u64 },
}

/// A key whose sub-history is not linearizable, and where the search got stuck.
#[derive(Clone, Debug)]
pub struct Violation {
    pub key: String,
    /// Operations of the key (reads with unknown outcome excluded).
    pub operations: usize,
    /// The longest sequence of operations the search could linearize, in order.
    pub longest_prefix: Vec<Operation>,
    /// The model state after that prefix.
    pub state: String,
    /// The operation that returned before it could be linearized after the longest prefix.
    pub stuck: Operation,
    /// The last operations of the longest prefix, in their linearization order.
    pub context: Vec<Operation>,
    /// The operations pending (invoked, not linearized) when `stuck` returned, in invocation
    /// order, the latest ones if there are many: no order of these fits the state after `context`.
    pub pending: Vec<Operation>,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Inconclusive { key, steps } => write!(
                f,
                "linearizability check of key {key} gave up after {steps} steps"
            ),
            CheckError::Violation(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "history of key {} ({} operations) is not linearizable: at most {} operations linearize, \
             leaving the key {}",
            self.key,
            self.operations,
            self.longest_prefix.len(),
            self.state
        )?;
        writeln!(f, "stuck at: {}", self.stuck)?;
        writeln!(f, "last linearized operations:")?;
        for op in &self.context {
            writeln!(f, "  {op}")?;
        }
        writeln!(f, "pending operations, none of which can go next:")?;
        for op in &self.pending {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// Checks every key of `ops` with the default [`Limits`].
pub fn check(ops: &[Operation]) -> Result<Report, CheckError> {
    check_with(ops, Limits::default())
}

/// Checks every key of `ops`, keys in sorted order; the first failing key is reported.
pub fn check_with(ops: &[Operation], limits: Limits) -> Result<Report, CheckError> {
    let started = Instant::now();
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        if op.input == Input::Get && op.ret.is_none() {
            continue;
        }
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut report = Report {
        keys: by_key.len(),
        operations: 0,
        unknown: 0,
        steps: 0,
        elapsed: Duration::ZERO,
    };
    for (key, ops) in by_key {
        report.operations += ops.len();
        report.unknown += ops.iter().filter(|o| o.ret.is_none()).count();
        report.steps += check_key(key, &ops, limits)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Values interned as small integers: the model state is `Copy` and cheap to hash.
type ValueId = u32;
/// The znode: absent, or (value, data version).
type State = Option<(ValueId, i32)>;

#[derive(Clone, Copy)]
enum In {
    Create(ValueId),
    Set(ValueId),
    Get,
    Delete,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    Created,
    NodeExists,
    SetOk(i32),
    GetOk(ValueId, i32),
    Deleted,
    NoNode,
    Never,
}

/// The sequential specification: the state after `input`, if the model can answer `out` (any
/// answer when `out` is `None`).
fn step(state: State, input: In, out: Option<Out>) -> Option<State> {
    let (next, answer) = match (input, state) {
        (In::Create(v), None) => (Some((v, 0)), Out::Created),
        (In::Create(_), Some(s)) => (Some(s), Out::NodeExists),
        (In::Set(v), Some((_, version))) => (Some((v, version + 1)), Out::SetOk(version + 1)),
        (In::Set(_), None) => (None, Out::NoNode),
        (In::Get, Some((v, version))) => (Some((v, version)), Out::GetOk(v, version)),
        (In::Get, None) => (None, Out::NoNode),
        (In::Delete, Some(_)) => (None, Out::Deleted),
        (In::Delete, None) => (None, Out::NoNode),
    };
    match out {
        None => Some(next),
        Some(o) if o == answer => Some(next),
        Some(_) => None,
    }
}

/// FxHash: the cache hashes bitsets of a few hundred bytes per step; SipHash would dominate.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxBuild = BuildHasherDefault<Fx>;

const NIL: usize = usize::MAX;

/// The event list of one key, doubly linked so that linearized operations can be lifted out and
/// put back in O(1) (dancing links: put back in the reverse order of removal).
struct Events {
    /// Entry 0 is the head sentinel; entries 1.. are events in time order.
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each entry: the operation, and the matching return entry for a call (NIL for a return).
    op: Vec<usize>,
    ret_of: Vec<usize>,
}

impl Events {
    fn lift(&mut self, call: usize) {
        let ret = self.ret_of[call];
        for e in [call, ret] {
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p] = n;
            if n != NIL {
                self.prev[n] = p;
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.ret_of[call];
        for e in [ret, call] {
            let (p, n) = (self.prev[e], self.next[e]);
            self.next[p] = e;
            if n != NIL {
                self.prev[n] = e;
            }
        }
    }
}

/// Searches one key's history; returns the number of steps taken.
fn check_key(key: &str, ops: &[&Operation], limits: Limits) -> Result<u64, CheckError> {
    let mut values: HashMap<&[u8], ValueId> = HashMap::new();
    fn intern<'a>(v: &'a [u8], values: &mut HashMap<&'a [u8], ValueId>) -> ValueId {
        let n = values.len() as ValueId;
        *values.entry(v).or_insert(n)
    }
    let mut inputs = Vec::with_capacity(ops.len());
    let mut outputs = Vec::with_capacity(ops.len());
    for op in ops {
        inputs.push(match &op.input {
            Input::Create(v) => In::Create(intern(v.as_slice(), &mut values)),
            Input::Set(v) => In::Set(intern(v.as_slice(), &mut values)),
            Input::Get => In::Get,
            Input::Delete => In::Delete,
        });
        outputs.push(op.ret.as_ref().map(|(_, out)| match out {
            Output::Created => Out::Created,
            Output::NodeExists => Out::NodeExists,
            Output::SetOk { version } => Out::SetOk(*version),
            Output::GetOk { value, version } => {
                Out::GetOk(intern(value.as_slice(), &mut values), *version)
            }
            Output::Deleted => Out::Deleted,
            Output::NoNode => Out::NoNode,
            Output::Other(_) => Out::Never,
        }));
    }

    // Events: (time, is_return, op). Calls sort before returns at equal times (treated as
    // concurrent, the permissive reading); unknown outcomes return at +∞.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, false, i));
        let ret = op.ret.as_ref().map_or(u64::MAX, |(t, _)| *t);
        events.push((ret, true, i));
    }
    events.sort_unstable();
    let n = events.len() + 1;
    let mut list = Events {
        next: (1..=n).map(|i| if i == n { NIL } else { i }).collect(),
        prev: (0..n).map(|i| i.wrapping_sub(1)).collect(),
        op: std::iter::once(NIL)
            .chain(events.iter().map(|e| e.2))
            .collect(),
        ret_of: vec![NIL; n],
    };
    let mut call_entry = vec![NIL; ops.len()];
    for (e, &(_, is_return, op)) in events.iter().enumerate() {
        let entry = e + 1;
        if is_return {
            list.ret_of[call_entry[op]] = entry;
        } else {
            call_entry[op] = entry;
        }
    }

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State), FxBuild> = HashSet::default();
    let mut state: State = None;
    // (call entry, state before it)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut best: Option<(Vec<usize>, State, usize)> = None;
    let mut steps = 0u64;
    let mut entry = list.next[0];
    while list.next[0] != NIL {
        steps += 1;
        if steps > limits.max_steps_per_key {
            return Err(CheckError::Inconclusive {
                key: key.to_string(),
                steps,
            });
        }
        let op = list.op[entry];
        let is_call = list.ret_of[entry] != NIL;
        if is_call {
            if let Some(next_state) = step(state, inputs[op], outputs[op]) {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), next_state)) {
                    stack.push((entry, state));
                    state = next_state;
                    list.lift(entry);
                    entry = list.next[0];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = list.next[entry];
        } else {
            if best.as_ref().is_none_or(|b| stack.len() > b.0.len()) {
                let order = stack.iter().map(|&(e, _)| list.op[e]).collect();
                best = Some((order, state, op));
            }
            let Some((call, before)) = stack.pop() else {
                let (order, state, stuck) = best.expect("a dead end was recorded");
                return Err(CheckError::Violation(Box::new(explain(
                    key, ops, &values, &order, state, stuck,
                ))));
            };
            let undone = list.op[call];
            linearized[undone / 64] &= !(1 << (undone % 64));
            state = before;
            list.unlift(call);
            entry = list.next[call];
        }
    }
    Ok(steps)
}

/// Builds the report for a key whose search failed.
fn explain(
    key: &str,
    ops: &[&Operation],
    values: &HashMap<&[u8], ValueId>,
    order: &[usize],
    state: State,
    stuck: usize,
) -> Violation {
    let state_text = match state {
        None => "absent".to_string(),
        Some((v, version)) => {
            let bytes = values
                .iter()
                .find(|(_, &id)| id == v)
                .map(|(b, _)| show_bytes(b))
                .unwrap_or_default();
            format!("= {bytes} (version {version})")
        }
    };
    let stuck_op = ops[stuck];
    let stuck_ret = stuck_op.ret.as_ref().map_or(u64::MAX, |(t, _)| *t);
    let done: HashSet<usize> = order.iter().copied().collect();
    const CONTEXT: usize = 3;
    const PENDING: usize = 16;
    let context: Vec<Operation> = order
        .iter()
        .rev()
        .take(CONTEXT)
        .rev()
        .map(|&i| ops[i].clone())
        .collect();
    let mut pending: Vec<&Operation> = (0..ops.len())
        .filter(|i| !done.contains(i) && ops[*i].invoke <= stuck_ret)
        .map(|i| ops[i])
        .collect();
    pending.sort_by_key(|o| o.invoke);
    // Keep the operations closest to the stuck one: the last ones invoked before it returned.
    let skip = pending.len().saturating_sub(PENDING);
    let mut pending: Vec<Operation> = pending[skip..].iter().map(|o| (*o).clone()).collect();
    if !pending.iter().any(|o| o == stuck_op) {
        pending.push(stuck_op.clone());
    }
    Violation {
        key: key.to_string(),
        operations: ops.len(),
        longest_prefix: order.iter().map(|&i| ops[i].clone()).collect(),
        state: state_text,
        stuck: stuck_op.clone(),
        context,
        pending,
    }
}
