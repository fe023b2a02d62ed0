//! A linearizability checker for histories of znode operations, and a recorder that builds them.
//!
//! The model is one znode per key seen as a versioned register: absent, or a value with ZooKeeper's
//! data version (0 after create, +1 per setData). Besides create, setData (with or without an
//! expected version), getData, delete and check on one key, an operation may be a multi (a
//! transaction of creates, setDatas, deletes and checks on several keys, all or nothing) or a
//! multiRead (getData of several keys at one instant). The search is Wing & Gong's, with Lowe's
//! memoization as Porcupine implements it: the history becomes a list of call and return events in
//! time order; the search repeatedly linearizes a pending call whose outcome the model accepts, and
//! backtracks when it meets the return of an operation it has not linearized yet. A cache of
//! (set of linearized operations, model state) prunes every configuration already explored. An
//! operation whose outcome says it changes nothing (a read, a check, a failed write) is linearized
//! as soon as it fits, with no backtracking over that choice: it fits as well there as anywhere
//! later, and leaves the same state.
//!
//! Linearizability is local (Herlihy & Wing): keys that no multi or multiRead links are checked on
//! their own (P-compositionality), which keeps the search small; keys linked by such operations
//! are checked together.
//!
//! An operation whose outcome is unknown (timeout, connection loss, session expiry) may have taken
//! effect at any point after its invocation, or never: it returns at time +∞ and the model accepts
//! whatever outcome it produces. A read (getData, check, multiRead) with an unknown outcome has no
//! effect and is dropped.
//!
//! Invariant: [`check`] returns `Ok` only if, for every set of linked keys, some total order of
//! their operations respects real time (a return before an invocation orders them) and replays on
//! the model with exactly the recorded outcomes.
//!
//! One copy serves the integration tests (`tests/common` includes this file) and the library's
//! simulations (`crate::testkit::linearizability`).
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
    /// `setData(path, value, version)`: `BadVersion` unless the data version is `version`.
    SetVersion(Vec<u8>, i32),
    /// `getData(path)`.
    Get,
    /// `delete(path, -1)`.
    Delete,
    /// `check(path, version)` (-1 matches any version).
    Check(i32),
    /// `multi`: each op (Create, Set, SetVersion, Delete or Check) on its own key, in order, all or
    /// nothing. The operation's `key` is only a label.
    Multi(Vec<(String, Input)>),
    /// `multiRead` of getData on each key, at one instant. The operation's `key` is only a label.
    MultiRead(Vec<String>),
}

impl Input {
    /// True for operations that change nothing (dropped when their outcome is unknown).
    pub fn is_read(&self) -> bool {
        matches!(self, Input::Get | Input::Check(_) | Input::MultiRead(_))
    }
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
    BadVersion,
    /// check succeeded.
    CheckOk,
    /// A multi succeeded: one result per op.
    MultiOk(Vec<Output>),
    /// A multi failed at op `index` with `err` (NoNode, NodeExists or BadVersion): nothing changed.
    MultiFailed {
        index: usize,
        err: Box<Output>,
    },
    /// A multiRead: per key, `GetOk` or `NoNode`.
    MultiRead(Vec<Output>),
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
                | (
                    Input::Set(_) | Input::SetVersion(..),
                    Some((_, Output::SetOk { .. }))
                )
                | (Input::Delete, Some((_, Output::Deleted)))
                | (Input::Multi(_), Some((_, Output::MultiOk(_))))
        )
    }

    /// The keys the operation touches, without duplicates.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = match &self.input {
            Input::Multi(ops) => ops.iter().map(|(k, _)| k.as_str()).collect(),
            Input::MultiRead(keys) => keys.iter().map(String::as_str).collect(),
            _ => vec![self.key.as_str()],
        };
        keys.sort_unstable();
        keys.dedup();
        keys
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

fn show_input(f: &mut fmt::Formatter<'_>, input: &Input) -> fmt::Result {
    match input {
        Input::Create(v) => write!(f, "create({})", show_bytes(v)),
        Input::Set(v) => write!(f, "set({})", show_bytes(v)),
        Input::SetVersion(v, version) => write!(f, "set({}, version {version})", show_bytes(v)),
        Input::Get => write!(f, "get"),
        Input::Delete => write!(f, "delete"),
        Input::Check(version) => write!(f, "check(version {version})"),
        Input::Multi(ops) => {
            write!(f, "multi[")?;
            for (i, (key, op)) in ops.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{key} ")?;
                show_input(f, op)?;
            }
            write!(f, "]")
        }
        Input::MultiRead(keys) => write!(f, "multiRead{keys:?}"),
    }
}

fn show_output(f: &mut fmt::Formatter<'_>, out: &Output) -> fmt::Result {
    let list = |f: &mut fmt::Formatter<'_>, outs: &[Output]| -> fmt::Result {
        write!(f, "[")?;
        for (i, o) in outs.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            show_output(f, o)?;
        }
        write!(f, "]")
    };
    match out {
        Output::Created | Output::Deleted => write!(f, "ok"),
        Output::NodeExists => write!(f, "NodeExists"),
        Output::SetOk { version } => write!(f, "ok(version {version})"),
        Output::GetOk { value, version } => write!(f, "{} (version {version})", show_bytes(value)),
        Output::NoNode => write!(f, "NoNode"),
        Output::BadVersion => write!(f, "BadVersion"),
        Output::CheckOk => write!(f, "ok"),
        Output::MultiOk(outs) => list(f, outs),
        Output::MultiFailed { index, err } => {
            write!(f, "failed at op {index}: ")?;
            show_output(f, err)
        }
        Output::MultiRead(outs) => list(f, outs),
        Output::Other(e) => write!(f, "error {e}"),
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} ", self.client)?;
        if !matches!(self.input, Input::Multi(_) | Input::MultiRead(_)) {
            write!(f, "{} ", self.key)?;
        }
        show_input(f, &self.input)?;
        match &self.ret {
            None => write!(f, " -> unknown  [{} .. ∞)", show_time(self.invoke)),
            Some((t, out)) => {
                write!(f, " -> ")?;
                show_output(f, out)?;
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
    /// Search steps allowed per set of linked keys before the check gives up as inconclusive.
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
    /// Sets of keys linked by multi-key operations, each checked on its own.
    pub components: usize,
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
    /// No order of the operations of some linked keys is legal.
    Violation(Box<Violation>),
    /// The search hit [`Limits::max_steps_per_key`] (`key`: the keys, comma-separated).
    Inconclusive { key: String, steps: u64 },
}

/// A key (or set of linked keys) whose sub-history is not linearizable, and where the search got
/// stuck.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The key, or the linked keys comma-separated.
    pub key: String,
    /// Operations of the keys (reads with unknown outcome excluded).
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

/// Checks `ops` with the default [`Limits`].
pub fn check(ops: &[Operation]) -> Result<Report, CheckError> {
    check_with(ops, Limits::default())
}

/// Checks every set of linked keys of `ops` (in the order of their smallest key); the first
/// failing one is reported.
pub fn check_with(ops: &[Operation], limits: Limits) -> Result<Report, CheckError> {
    let started = Instant::now();
    let ops: Vec<&Operation> = ops
        .iter()
        .filter(|op| !(op.input.is_read() && op.ret.is_none()))
        .collect();
    // Union-find over keys: an operation on several keys links them.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &ops {
        for k in op.keys() {
            let n = index.len();
            index.entry(k).or_insert(n);
        }
    }
    let mut parent: Vec<usize> = (0..index.len()).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for op in &ops {
        let keys = op.keys();
        let first = index[keys[0]];
        for k in &keys[1..] {
            let (a, b) = (root(&mut parent, first), root(&mut parent, index[k]));
            parent[a] = b;
        }
    }
    let mut components: BTreeMap<usize, (Vec<&str>, Vec<&Operation>)> = BTreeMap::new();
    for (&k, &i) in &index {
        let r = root(&mut parent, i);
        components.entry(r).or_default().0.push(k);
    }
    for op in &ops {
        let r = root(&mut parent, index[op.keys()[0]]);
        components
            .get_mut(&r)
            .expect("every key has a component")
            .1
            .push(op);
    }
    let mut components: Vec<(Vec<&str>, Vec<&Operation>)> = components.into_values().collect();
    components.sort_by(|a, b| a.0.cmp(&b.0));
    let mut report = Report {
        keys: index.len(),
        components: components.len(),
        operations: 0,
        unknown: 0,
        steps: 0,
        elapsed: Duration::ZERO,
    };
    for (keys, ops) in components {
        report.operations += ops.len();
        report.unknown += ops.iter().filter(|o| o.ret.is_none()).count();
        report.steps += check_component(&keys, &ops, limits)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Values interned as small integers: the model state is cheap to copy and hash.
type ValueId = u32;
/// One znode: absent, or (value, data version).
type Node = Option<(ValueId, i32)>;
/// The znodes of one set of linked keys, by key index.
type State = Vec<Node>;

/// An operation on one znode.
#[derive(Clone, Copy)]
enum Sub {
    Create(ValueId),
    /// setData with an expected version (-1: any).
    Set(ValueId, i32),
    Get,
    Delete,
    Check(i32),
}

#[derive(Clone)]
enum In {
    One(usize, Sub),
    Multi(Vec<(usize, Sub)>),
    Read(Vec<usize>),
}

#[derive(Clone, PartialEq, Eq)]
enum Out {
    Created,
    NodeExists,
    SetOk(i32),
    GetOk(ValueId, i32),
    Deleted,
    NoNode,
    BadVersion,
    CheckOk,
    MultiOk(Vec<Out>),
    MultiFailed(usize, Box<Out>),
    Read(Vec<Out>),
    Never,
}

/// One znode's sequential specification: its next state and the answer.
fn apply(node: Node, sub: Sub) -> (Node, Out) {
    let matches = |expected: i32, version: i32| expected == -1 || expected == version;
    match (sub, node) {
        (Sub::Create(v), None) => (Some((v, 0)), Out::Created),
        (Sub::Create(_), Some(_)) => (node, Out::NodeExists),
        (Sub::Set(v, e), Some((_, version))) if matches(e, version) => {
            (Some((v, version + 1)), Out::SetOk(version + 1))
        }
        (Sub::Set(..), Some(_)) => (node, Out::BadVersion),
        (Sub::Get, Some((v, version))) => (node, Out::GetOk(v, version)),
        (Sub::Delete, Some(_)) => (None, Out::Deleted),
        (Sub::Check(e), Some((_, version))) if matches(e, version) => (node, Out::CheckOk),
        (Sub::Check(_), Some(_)) => (node, Out::BadVersion),
        (Sub::Set(..) | Sub::Get | Sub::Delete | Sub::Check(_), None) => (None, Out::NoNode),
    }
}

/// Whether an operation with this outcome leaves every state as it is: a read, a check, a
/// failed write, a multi of checks. (An outcome alone decides it: a multi that deletes a znode and
/// creates it again changes nothing in one state and something in another, so it is excluded.)
fn changes_nothing(out: &Out) -> bool {
    match out {
        Out::GetOk(..)
        | Out::NoNode
        | Out::NodeExists
        | Out::BadVersion
        | Out::CheckOk
        | Out::MultiFailed(..)
        | Out::Read(_) => true,
        Out::MultiOk(results) => results.iter().all(|r| *r == Out::CheckOk),
        Out::Created | Out::SetOk(_) | Out::Deleted | Out::Never => false,
    }
}

/// The sequential specification: the state after `input`, if the model can answer `out` (any
/// answer when `out` is `None`).
fn step(state: &[Node], input: &In, out: Option<&Out>) -> Option<State> {
    let (next, answer) = match input {
        In::One(k, sub) => {
            let (node, answer) = apply(state[*k], *sub);
            if out.is_some_and(|o| *o != answer) {
                return None;
            }
            let mut next = state.to_vec();
            next[*k] = node;
            return Some(next);
        }
        In::Multi(subs) => {
            let mut next = state.to_vec();
            let mut results = Vec::with_capacity(subs.len());
            let mut failed = None;
            for (i, (k, sub)) in subs.iter().enumerate() {
                let (node, answer) = apply(next[*k], *sub);
                if matches!(answer, Out::NoNode | Out::NodeExists | Out::BadVersion) {
                    failed = Some(Out::MultiFailed(i, Box::new(answer)));
                    break;
                }
                next[*k] = node;
                results.push(answer);
            }
            match failed {
                Some(answer) => (state.to_vec(), answer),
                None => (next, Out::MultiOk(results)),
            }
        }
        In::Read(keys) => (
            state.to_vec(),
            Out::Read(keys.iter().map(|k| apply(state[*k], Sub::Get).1).collect()),
        ),
    };
    match out {
        Some(o) if *o != answer => None,
        _ => Some(next),
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

/// Interns values and translates one set of linked keys' operations into the model's terms.
struct Model<'a> {
    keys: &'a [&'a str],
    values: HashMap<&'a [u8], ValueId>,
}

impl<'a> Model<'a> {
    fn key(&self, k: &str) -> usize {
        self.keys
            .binary_search(&k)
            .expect("the operation's keys are in its component")
    }

    fn value(&mut self, v: &'a [u8]) -> ValueId {
        let n = self.values.len() as ValueId;
        *self.values.entry(v).or_insert(n)
    }

    fn sub(&mut self, input: &'a Input) -> Sub {
        match input {
            Input::Create(v) => Sub::Create(self.value(v)),
            Input::Set(v) => Sub::Set(self.value(v), -1),
            Input::SetVersion(v, version) => Sub::Set(self.value(v), *version),
            Input::Get => Sub::Get,
            Input::Delete => Sub::Delete,
            Input::Check(version) => Sub::Check(*version),
            // Not a znode operation: nested multis never succeed in ZooKeeper; model a failing check.
            Input::Multi(_) | Input::MultiRead(_) => Sub::Check(i32::MIN),
        }
    }

    fn input(&mut self, op: &'a Operation) -> In {
        match &op.input {
            Input::Multi(ops) => In::Multi(
                ops.iter()
                    .map(|(k, input)| (self.key(k), self.sub(input)))
                    .collect(),
            ),
            Input::MultiRead(keys) => In::Read(keys.iter().map(|k| self.key(k)).collect()),
            input => In::One(self.key(&op.key), self.sub(input)),
        }
    }

    fn output(&mut self, out: &'a Output) -> Out {
        match out {
            Output::Created => Out::Created,
            Output::NodeExists => Out::NodeExists,
            Output::SetOk { version } => Out::SetOk(*version),
            Output::GetOk { value, version } => Out::GetOk(self.value(value), *version),
            Output::Deleted => Out::Deleted,
            Output::NoNode => Out::NoNode,
            Output::BadVersion => Out::BadVersion,
            Output::CheckOk => Out::CheckOk,
            Output::MultiOk(outs) => Out::MultiOk(outs.iter().map(|o| self.output(o)).collect()),
            Output::MultiFailed { index, err } => {
                Out::MultiFailed(*index, Box::new(self.output(err)))
            }
            Output::MultiRead(outs) => Out::Read(outs.iter().map(|o| self.output(o)).collect()),
            Output::Other(_) => Out::Never,
        }
    }
}

/// Searches the history of one set of linked keys (sorted); returns the number of steps taken.
fn check_component(keys: &[&str], ops: &[&Operation], limits: Limits) -> Result<u64, CheckError> {
    let mut model = Model {
        keys,
        values: HashMap::new(),
    };
    let inputs: Vec<In> = ops.iter().map(|op| model.input(op)).collect();
    let outputs: Vec<Option<Out>> = ops
        .iter()
        .map(|op| op.ret.as_ref().map(|(_, out)| model.output(out)))
        .collect();
    let label = keys.join(",");

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
    let mut state: State = vec![None; keys.len()];
    // (call entry, state before it, forced: no alternative to try when it is undone)
    let mut stack: Vec<(usize, State, bool)> = Vec::new();
    let mut best: Option<(Vec<usize>, State, usize)> = None;
    let mut steps = 0u64;
    let mut entry = list.next[0];
    while list.next[0] != NIL {
        steps += 1;
        if steps > limits.max_steps_per_key {
            return Err(CheckError::Inconclusive { key: label, steps });
        }
        let op = list.op[entry];
        let is_call = list.ret_of[entry] != NIL;
        if is_call {
            let mut dead_end = false;
            if let Some(next_state) = step(&state, &inputs[op], outputs[op].as_ref()) {
                // An operation whose outcome says it changes nothing fits here as well as at any
                // later point: linearize it now and never try leaving it for later.
                let forced = outputs[op].as_ref().is_some_and(changes_nothing);
                debug_assert!(!forced || next_state == state);
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), next_state.clone())) {
                    let before = std::mem::replace(&mut state, next_state);
                    stack.push((entry, before, forced));
                    list.lift(entry);
                    entry = list.next[0];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
                dead_end = forced;
            }
            if !dead_end {
                entry = list.next[entry];
                continue;
            }
        } else if best.as_ref().is_none_or(|b| stack.len() > b.0.len()) {
            let order = stack.iter().map(|&(e, _, _)| list.op[e]).collect();
            best = Some((order, state.clone(), op));
        }
        // A dead end: undo the last choice that had an alternative.
        loop {
            let Some((call, before, forced)) = stack.pop() else {
                let (order, state, stuck) = best.expect("a dead end was recorded");
                return Err(CheckError::Violation(Box::new(explain(
                    &label,
                    keys,
                    ops,
                    &model.values,
                    &order,
                    &state,
                    stuck,
                ))));
            };
            let undone = list.op[call];
            linearized[undone / 64] &= !(1 << (undone % 64));
            state = before;
            list.unlift(call);
            if !forced {
                entry = list.next[call];
                break;
            }
        }
    }
    Ok(steps)
}

/// Builds the report for a set of keys whose search failed.
fn explain(
    label: &str,
    keys: &[&str],
    ops: &[&Operation],
    values: &HashMap<&[u8], ValueId>,
    order: &[usize],
    state: &[Node],
    stuck: usize,
) -> Violation {
    let show = |node: &Node| match node {
        None => "absent".to_string(),
        Some((v, version)) => {
            let bytes = values
                .iter()
                .find(|(_, &id)| id == *v)
                .map(|(b, _)| show_bytes(b))
                .unwrap_or_default();
            format!("= {bytes} (version {version})")
        }
    };
    let state_text = if keys.len() == 1 {
        show(&state[0])
    } else {
        keys.iter()
            .zip(state)
            .map(|(k, n)| format!("{k} {}", show(n)))
            .collect::<Vec<_>>()
            .join(", ")
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
        key: label.to_string(),
        operations: ops.len(),
        longest_prefix: order.iter().map(|&i| ops[i].clone()).collect(),
        state: state_text,
        stuck: stuck_op.clone(),
        context,
        pending,
    }
}
