//! What the sessions send: the operation mix, the znode layout under the bench root, and request
//! frames encoded once (`Template`) so that the hot loop only copies bytes and patches numbers.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use bytes::{BufMut, BytesMut};
use protocol::{
    encode_request, perms, Acl, CreateMode, CreateRequest, DeleteRequest, Id, MultiOp, OpCode,
    PathWatchRequest, Request, RequestHeader, SetDataRequest,
};
use serde::Serialize;

/// One kind of request the bench sends. `Create` is always followed, on the same pipeline slot, by a
/// `Delete` of the node it created, so the tree does not grow during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// setData of one value-sized key, any version.
    Set,
    /// getData of one key, no watch.
    Get,
    /// exists of one key, no watch.
    Exists,
    /// create of a new persistent znode holding a value.
    Create,
    /// delete of a znode this session created; never chosen by the mix.
    Delete,
    /// multi of two setData on two keys (two partitions of Volery when they hash apart).
    Multi,
}

impl OpKind {
    pub const ALL: [OpKind; 6] = [
        OpKind::Set,
        OpKind::Get,
        OpKind::Exists,
        OpKind::Create,
        OpKind::Delete,
        OpKind::Multi,
    ];
    pub const COUNT: usize = OpKind::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Set => "set",
            OpKind::Get => "get",
            OpKind::Exists => "exists",
            OpKind::Create => "create",
            OpKind::Delete => "delete",
            OpKind::Multi => "multi",
        }
    }

    /// Position in `ALL`, for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether Volery orders it in every partition (DESIGN.md: create and delete go to all
    /// partitions); a multi is multi-partition only when its keys hash apart, so it is not counted.
    pub fn is_global(self) -> bool {
        matches!(self, OpKind::Create | OpKind::Delete)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The share of each operation a session picks when a pipeline slot frees up, e.g.
/// `set=50,get=50` or `set=45,get=45,create=10`. Weights are relative (they need not add up to 100).
///
/// Invariant: `total > 0`, every weight is > 0, no kind twice, and `Delete` never appears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(OpKind, u32)>,
    total: u32,
}

impl Mix {
    /// The kind for a uniformly random `r`.
    pub fn pick(&self, r: u64) -> OpKind {
        let mut x = (r % u64::from(self.total)) as u32;
        for &(kind, w) in &self.weights {
            if x < w {
                return kind;
            }
            x -= w;
        }
        // Unreachable by the invariant (weights add up to total); fall back to the first kind.
        self.weights[0].0
    }

    pub fn kinds(&self) -> impl Iterator<Item = OpKind> + '_ {
        self.weights.iter().map(|&(k, _)| k)
    }

    /// The share of operations sent that are global, the paper's "rate of create/delete
    /// commands": a create pick sends two operations (the create, then its delete), so
    /// `set=90,create=5` is 10% global.
    pub fn global_share(&self) -> f64 {
        let created: u32 = self
            .weights
            .iter()
            .filter(|(k, _)| k.is_global())
            .map(|&(_, w)| w)
            .sum();
        let sent = f64::from(self.total) + f64::from(created);
        2.0 * f64::from(created) / sent
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Mix, String> {
        let mut weights: Vec<(OpKind, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected OP=WEIGHT"))?;
            let kind = match name.trim() {
                "set" | "setData" => OpKind::Set,
                "get" | "getData" => OpKind::Get,
                "exists" => OpKind::Exists,
                "create" => OpKind::Create,
                "multi" => OpKind::Multi,
                other => {
                    return Err(format!(
                        "unknown operation `{other}` (set, get, exists, create, multi; \
                         create is followed by its delete)"
                    ))
                }
            };
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: weight is not a non-negative integer"))?;
            if weights.iter().any(|&(k, _)| k == kind) {
                return Err(format!("`{name}` given twice"));
            }
            if w > 0 {
                weights.push((kind, w));
            }
        }
        let total = weights
            .iter()
            .try_fold(0u32, |t, &(_, w)| t.checked_add(w))
            .ok_or("weights overflow")?;
        if total == 0 {
            return Err("the mix has no operation with a positive weight".into());
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, w)) in self.weights.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={w}")?;
        }
        Ok(())
    }
}

/// Digits of a key number in a key path (`k00000042`).
pub const KEY_DIGITS: usize = 8;
/// Digits of a created node's number (`c` + session x 10^11 + sequence).
pub const NODE_DIGITS: usize = 16;
/// How many nodes one session may create before its numbers would overlap the next session's.
pub const NODES_PER_SESSION: u64 = 100_000_000_000;

/// A request frame (length prefix, header, body) encoded once and sent many times; only the xid
/// and the fixed-width decimal numbers inside its paths change.
///
/// Invariant: `frame[4..8]` is the xid; every `digits` range lies in `frame` past the header and
/// holds ASCII digits, so patching them keeps every length in the frame right.
#[derive(Debug, Clone)]
pub struct Template {
    frame: Vec<u8>,
    digits: Vec<Range<usize>>,
}

impl Template {
    /// Encodes `req` with xid 0; each of `numbered` is a path inside `req` whose last `width`
    /// characters are digits to patch, in the order `append` receives the numbers.
    fn new(req: &Request, numbered: &[(&str, usize)]) -> Template {
        let header = RequestHeader {
            xid: 0,
            op: req.op_code().as_i32(),
        };
        let mut out = BytesMut::new();
        out.put_i32(0);
        encode_request(&header, req, &mut out);
        let body_len = i32::try_from(out.len() - 4).unwrap_or(i32::MAX);
        out[..4].copy_from_slice(&body_len.to_be_bytes());
        let frame = out.to_vec();
        let digits = numbered
            .iter()
            .map(|&(path, width)| {
                let at = find(&frame[12..], path.as_bytes())
                    .map(|p| p + 12)
                    .unwrap_or_else(|| panic!("path {path} not in its own request"));
                let end = at + path.len();
                end - width..end
            })
            .collect();
        Template { frame, digits }
    }

    /// Appends the frame with `xid` and `numbers` (one per numbered path, each below 10^width).
    pub fn append(&self, xid: i32, numbers: &[u64], out: &mut BytesMut) {
        debug_assert_eq!(numbers.len(), self.digits.len());
        let start = out.len();
        out.extend_from_slice(&self.frame);
        out[start + 4..start + 8].copy_from_slice(&xid.to_be_bytes());
        for (range, &n) in self.digits.iter().zip(numbers) {
            put_digits(&mut out[start + range.start..start + range.end], n);
        }
    }

    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes `n` as zero-padded decimal filling `dst` (higher digits that do not fit are dropped).
fn put_digits(dst: &mut [u8], mut n: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `world:anyone` with every permission (`ZooDefs.Ids.OPEN_ACL_UNSAFE`).
pub fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

/// Everything a session needs to send its operations: the paths of one run and a template per kind.
///
/// Invariant: keys `0..keys` exist under `run_path` (as `k` + `KEY_DIGITS` digits, each holding
/// `value`) from setup until cleanup.
#[derive(Debug)]
pub struct Workload {
    pub mix: Mix,
    pub keys: u32,
    pub value: Vec<u8>,
    pub run_path: String,
    /// With `--local`, per server (in `--servers` order) the keys its sessions pick from.
    pub key_sets: Option<Vec<std::sync::Arc<[u64]>>>,
    templates: [Template; OpKind::COUNT],
    create_path_len: usize,
}

impl Workload {
    pub fn new(mix: Mix, keys: u32, size: usize, run_path: String) -> Workload {
        let value: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let key0 = key_path(&run_path, 0);
        let key1 = key_path(&run_path, 1);
        let node = node_path(&run_path, 0);
        let set = |path: &str| SetDataRequest {
            path: path.to_string(),
            data: Some(value.clone()),
            version: -1,
        };
        let read = |path: &str| PathWatchRequest {
            path: path.to_string(),
            watch: false,
        };
        fn k(p: &str) -> (&str, usize) {
            (p, KEY_DIGITS)
        }
        let templates = OpKind::ALL.map(|kind| match kind {
            OpKind::Set => Template::new(&Request::SetData(set(&key0)), &[k(&key0)]),
            OpKind::Get => Template::new(&Request::GetData(read(&key0)), &[k(&key0)]),
            OpKind::Exists => Template::new(&Request::Exists(read(&key0)), &[k(&key0)]),
            OpKind::Create => Template::new(
                &Request::Create {
                    op: OpCode::Create,
                    req: CreateRequest {
                        path: node.clone(),
                        data: Some(value.clone()),
                        acl: open_acl(),
                        flags: CreateMode::Persistent.as_i32(),
                        ttl: None,
                    },
                },
                &[(&node, NODE_DIGITS)],
            ),
            OpKind::Delete => Template::new(
                &Request::Delete(DeleteRequest {
                    path: node.clone(),
                    version: -1,
                }),
                &[(&node, NODE_DIGITS)],
            ),
            OpKind::Multi => Template::new(
                &Request::Multi(vec![
                    MultiOp::SetData(set(&key0)),
                    MultiOp::SetData(set(&key1)),
                ]),
                &[k(&key0), k(&key1)],
            ),
        });
        Workload {
            mix,
            keys,
            value,
            create_path_len: node.len(),
            run_path,
            key_sets: None,
            templates,
        }
    }

    /// Appends one request of `kind` with `xid`; `a` is the key (or the created node's number),
    /// `b` the second key of a multi.
    pub fn append(&self, kind: OpKind, xid: i32, a: u64, b: u64, out: &mut BytesMut) {
        let t = &self.templates[kind.index()];
        match kind {
            OpKind::Multi => t.append(xid, &[a, b], out),
            _ => t.append(xid, &[a], out),
        }
    }

    /// The largest frame this workload sends, to size write buffers.
    pub fn max_frame_len(&self) -> usize {
        self.templates
            .iter()
            .map(Template::frame_len)
            .max()
            .unwrap_or(0)
    }

    /// The exact body length (after the 16-byte `ReplyHeader`) of a successful reply, when it is
    /// fixed: a cheap check that the server answered the request that was sent.
    pub fn ok_body_len(&self, kind: OpKind) -> Option<usize> {
        const STAT: usize = 68;
        match kind {
            OpKind::Set | OpKind::Exists => Some(STAT),
            OpKind::Get => Some(4 + self.value.len() + STAT),
            OpKind::Create => Some(4 + self.create_path_len),
            OpKind::Delete => Some(0),
            // Two (MultiHeader, Stat) pairs and the closing MultiHeader { done: true }.
            OpKind::Multi => Some(2 * (9 + STAT) + 9),
        }
    }
}

/// The path of key `i` of a run.
pub fn key_path(run: &str, i: u64) -> String {
    format!("{run}/k{i:0width$}", width = KEY_DIGITS)
}

/// The path of created node `n` of a run.
pub fn node_path(run: &str, n: u64) -> String {
    format!("{run}/c{n:0width$}", width = NODE_DIGITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{decode_request, split_frame, JUTE_MAXBUFFER};

    fn decode(out: &mut BytesMut) -> (RequestHeader, Request) {
        let body = split_frame(out, JUTE_MAXBUFFER).unwrap().unwrap();
        assert!(out.is_empty(), "one frame exactly");
        decode_request(&body).unwrap()
    }

    fn workload(mix: &str) -> Workload {
        Workload::new(mix.parse().unwrap(), 100, 10, "/vb/run-1".into())
    }

    #[test]
    fn mix_parses_weights_and_rejects_nonsense() {
        let m: Mix = "set=50, get=50,create=0".parse().unwrap();
        assert_eq!(m.to_string(), "set=50,get=50");
        assert_eq!(m.global_share(), 0.0);
        let m: Mix = "set=3,create=1".parse().unwrap();
        assert_eq!(m.global_share(), 0.4);
        for (mix, share) in [
            ("set=100", 0.0),
            ("set=198,create=1", 0.01),
            ("set=190,create=5", 0.05),
            ("set=90,create=5", 0.10),
            ("create=1", 1.0),
        ] {
            let m: Mix = mix.parse().unwrap();
            assert!((m.global_share() - share).abs() < 1e-12, "{mix}");
        }
        assert!("delete=1".parse::<Mix>().is_err());
        assert!("set=1,set=2".parse::<Mix>().is_err());
        assert!("set=0".parse::<Mix>().is_err());
        assert!("set".parse::<Mix>().is_err());
        assert!("set=-1".parse::<Mix>().is_err());
    }

    #[test]
    fn mix_picks_in_proportion() {
        let m: Mix = "set=1,get=3".parse().unwrap();
        let gets = (0..4000u64).filter(|&r| m.pick(r) == OpKind::Get).count();
        assert_eq!(gets, 3000);
    }

    #[test]
    fn set_template_patches_xid_and_key() {
        let w = workload("set=1");
        let mut out = BytesMut::new();
        w.append(OpKind::Set, 77, 42, 0, &mut out);
        let (h, req) = decode(&mut out);
        assert_eq!(h.xid, 77);
        assert_eq!(h.op, OpCode::SetData.as_i32());
        assert_eq!(
            req,
            Request::SetData(SetDataRequest {
                path: "/vb/run-1/k00000042".into(),
                data: Some(b"abcdefghij".to_vec()),
                version: -1,
            })
        );
    }

    #[test]
    fn create_delete_and_multi_templates_patch_every_path() {
        let w = workload("create=1");
        let mut out = BytesMut::new();
        w.append(OpKind::Create, 5, 3 * NODES_PER_SESSION + 9, 0, &mut out);
        let (_, req) = decode(&mut out);
        let Request::Create { op, req } = req else {
            panic!("not a create: {req:?}")
        };
        assert_eq!(op, OpCode::Create);
        assert_eq!(req.path, "/vb/run-1/c0000300000000009");
        assert_eq!(req.acl, open_acl());

        w.append(OpKind::Delete, 6, 12, 0, &mut out);
        let (h, req) = decode(&mut out);
        assert_eq!(h.op, OpCode::Delete.as_i32());
        assert_eq!(
            req,
            Request::Delete(DeleteRequest {
                path: "/vb/run-1/c0000000000000012".into(),
                version: -1
            })
        );

        w.append(OpKind::Multi, 7, 99, 1, &mut out);
        let (_, req) = decode(&mut out);
        let Request::Multi(ops) = req else {
            panic!("not a multi: {req:?}")
        };
        let paths: Vec<_> = ops
            .iter()
            .map(|op| match op {
                MultiOp::SetData(s) => s.path.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(paths, ["/vb/run-1/k00000099", "/vb/run-1/k00000001"]);
    }

    #[test]
    fn get_reply_length_counts_value_and_stat() {
        let w = workload("get=1");
        assert_eq!(w.ok_body_len(OpKind::Get), Some(4 + 10 + 68));
        assert_eq!(
            w.ok_body_len(OpKind::Create),
            Some(4 + "/vb/run-1/c0000000000000000".len())
        );
    }
}
