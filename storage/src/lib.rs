//! Durable keyed records in RocksDB: acceptor votes and replica checkpoints.
//!
//! This crate knows nothing of Paxos or znodes. A [`VoteDb`] keeps, per group, one "promise" record
//! and one record per instance number, all as opaque bytes; a [`CheckpointDb`] keeps numbered
//! snapshots (a position vector plus opaque bytes). Both live in one RocksDB instance opened with
//! [`Storage::open`], in two column families.
//!
//! Durability: every write is one `WriteBatch` written with `sync = true`, so a call that returns
//! `Ok` has been fsync'd (RocksDB's WAL) and a call that returns `Err` may or may not have reached
//! the disk. One call is one fsync: callers group many records into one call (group commit).
//! A full disk or any I/O failure is a [`StoreError`], never a panic.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};

const CF_VOTES: &str = "votes";
const CF_CHECKPOINTS: &str = "checkpoints";

/// Key kinds inside the votes column family, after the 4-byte group prefix.
const KIND_PROMISE: u8 = 0;
const KIND_LOW: u8 = 1;
const KIND_INSTANCE: u8 = 2;
const KIND_ACCEPTORS: u8 = 3;

/// How many checkpoints [`CheckpointDb::save`] keeps (the newest ones).
pub const CHECKPOINTS_KEPT: usize = 2;

/// Errors of the storage layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error: I/O failure, full disk, corruption, lock held by another process.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A column family this crate creates at open is missing.
    #[error("column family {0} missing")]
    MissingColumnFamily(&'static str),
    /// A stored record does not have the layout this crate writes.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Bound of the write-ahead log. A log file goes only once every column family's data in it is
/// flushed, and the checkpoints are written seldom: without a bound, the votes' log grew to
/// about 1.4 GB per server under load (RocksDB's own bound is four times all memtables), all of
/// it replayed at the next start.
pub const MAX_WAL_BYTES: u64 = 256 << 20;

/// One RocksDB instance holding both stores.
///
/// Invariant: opened with the column families `votes` and `checkpoints`; RocksDB's directory lock
/// guarantees one `Storage` per directory at a time.
#[derive(Clone)]
pub struct Storage {
    db: Arc<DB>,
}

impl Storage {
    /// Opens (creating if needed) the RocksDB directory `path`, its write-ahead log bounded by
    /// [`MAX_WAL_BYTES`].
    pub fn open(path: &Path) -> Result<Storage, StoreError> {
        Storage::open_with_wal_limit(path, MAX_WAL_BYTES)
    }

    /// Opens `path` with the write-ahead log bounded by `max_wal_bytes`: past it, RocksDB flushes
    /// the column families that hold the oldest log files back, so those can go.
    pub fn open_with_wal_limit(path: &Path, max_wal_bytes: u64) -> Result<Storage, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::None);
        opts.set_max_total_wal_size(max_wal_bytes);
        let cf = |name| {
            let mut o = Options::default();
            o.set_compression_type(DBCompressionType::None);
            ColumnFamilyDescriptor::new(name, o)
        };
        let db = DB::open_cf_descriptors(&opts, path, [cf(CF_VOTES), cf(CF_CHECKPOINTS)])?;
        let storage = Storage { db: Arc::new(db) };
        storage.cf(CF_VOTES)?;
        storage.cf(CF_CHECKPOINTS)?;
        Ok(storage)
    }

    /// The vote store (shares this RocksDB instance).
    pub fn votes(&self) -> VoteDb {
        VoteDb {
            storage: self.clone(),
        }
    }

    /// The checkpoint store (shares this RocksDB instance).
    pub fn checkpoints(&self) -> CheckpointDb {
        CheckpointDb {
            storage: self.clone(),
        }
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }
}

fn group_key(group: u32, kind: u8) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[..4].copy_from_slice(&group.to_be_bytes());
    k[4] = kind;
    k
}

fn instance_key(group: u32, instance: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..5].copy_from_slice(&group_key(group, KIND_INSTANCE));
    k[5..].copy_from_slice(&instance.to_be_bytes());
    k
}

fn decode_instance_key(group: u32, key: &[u8]) -> Option<u64> {
    if key.len() != 13 || key[..5] != group_key(group, KIND_INSTANCE) {
        return None;
    }
    Some(u64::from_be_bytes(key[5..].try_into().ok()?))
}

/// The fixed header of a RocksDB write batch (sequence number and count).
const WRITE_BATCH_HEADER: usize = 12;

/// Records to write to a [`VoteDb`] in one synced write.
///
/// Operations apply in the order they were added.
#[derive(Default)]
pub struct VoteBatch {
    ops: Vec<VoteOp>,
    /// Bytes of the records added, to size the RocksDB batch once instead of growing it.
    record_bytes: usize,
}

enum VoteOp {
    Promise(u32, Vec<u8>),
    Instance(u32, u64, Vec<u8>),
    Trim(u32, u64),
    Acceptors(u32, Vec<u8>),
}

impl VoteBatch {
    /// An empty batch.
    pub fn new() -> VoteBatch {
        VoteBatch::default()
    }

    /// Replaces the group's promise record.
    pub fn put_promise(&mut self, group: u32, record: Vec<u8>) {
        self.record_bytes += record.len();
        self.ops.push(VoteOp::Promise(group, record));
    }

    /// Replaces the record of one instance.
    pub fn put_instance(&mut self, group: u32, instance: u64, record: Vec<u8>) {
        self.record_bytes += record.len();
        self.ops.push(VoteOp::Instance(group, instance, record));
    }

    /// Replaces the group's acceptor-set record (kept through trims).
    pub fn put_acceptors(&mut self, group: u32, record: Vec<u8>) {
        self.record_bytes += record.len();
        self.ops.push(VoteOp::Acceptors(group, record));
    }

    /// Deletes every instance record below `below` and remembers `below` as the group's low mark.
    pub fn trim_below(&mut self, group: u32, below: u64) {
        self.ops.push(VoteOp::Trim(group, below));
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Per-group vote records: one promise record, a low mark, an acceptor-set record, and one record
/// per instance.
///
/// Invariant: after a trim to `below`, no instance record below `below` exists and
/// [`VoteDb::low`] returns at least `below`.
#[derive(Clone)]
pub struct VoteDb {
    storage: Storage,
}

impl VoteDb {
    /// Writes the batch as one synced RocksDB write (one fsync). Empty batches write nothing.
    pub fn write(&self, batch: VoteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let cf = self.storage.cf(CF_VOTES)?;
        // Header, then per record a tag, column family, two lengths and a key of at most 13 bytes.
        let capacity = WRITE_BATCH_HEADER + batch.record_bytes + batch.ops.len() * 32;
        let mut wb = WriteBatch::with_capacity_bytes(capacity);
        for op in batch.ops {
            match op {
                VoteOp::Promise(g, rec) => wb.put_cf(cf, group_key(g, KIND_PROMISE), rec),
                VoteOp::Instance(g, i, rec) => wb.put_cf(cf, instance_key(g, i), rec),
                VoteOp::Acceptors(g, rec) => wb.put_cf(cf, group_key(g, KIND_ACCEPTORS), rec),
                VoteOp::Trim(g, below) => {
                    wb.delete_range_cf(cf, instance_key(g, 0), instance_key(g, below));
                    wb.put_cf(cf, group_key(g, KIND_LOW), below.to_be_bytes());
                }
            }
        }
        self.storage.write_synced(wb)
    }

    /// The group's promise record, if one was ever written.
    pub fn promise(&self, group: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.storage.cf(CF_VOTES)?;
        Ok(self.storage.db.get_cf(cf, group_key(group, KIND_PROMISE))?)
    }

    /// The group's acceptor-set record, if one was ever written.
    pub fn acceptors(&self, group: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.storage.cf(CF_VOTES)?;
        Ok(self
            .storage
            .db
            .get_cf(cf, group_key(group, KIND_ACCEPTORS))?)
    }

    /// The group's low mark: instances below it were trimmed (0 if never trimmed).
    pub fn low(&self, group: u32) -> Result<u64, StoreError> {
        let cf = self.storage.cf(CF_VOTES)?;
        match self.storage.db.get_cf(cf, group_key(group, KIND_LOW))? {
            None => Ok(0),
            Some(v) => {
                let bytes: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(format!("low mark of group {group}")))?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }

    /// Up to `limit` instance records of the group with instance >= `from`, in instance order.
    pub fn instances_from(
        &self,
        group: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let cf = self.storage.cf(CF_VOTES)?;
        let start = instance_key(group, from);
        let mut out = Vec::new();
        let iter = self
            .storage
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            match decode_instance_key(group, &k) {
                Some(i) => out.push((i, v.into_vec())),
                None => break,
            }
        }
        Ok(out)
    }

    /// The highest instance with a record in the group, if any.
    pub fn highest_instance(&self, group: u32) -> Result<Option<u64>, StoreError> {
        let cf = self.storage.cf(CF_VOTES)?;
        let end = instance_key(group, u64::MAX);
        let mut iter = self
            .storage
            .db
            .iterator_cf(cf, IteratorMode::From(&end, Direction::Reverse));
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item?;
                Ok(decode_instance_key(group, &k))
            }
        }
    }
}

/// A saved checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence number assigned by [`CheckpointDb::save`], increasing with every save.
    pub seq: u64,
    /// The position the snapshot reflects (for example one instance per group).
    pub position: Vec<u64>,
    /// The snapshot itself.
    pub data: Vec<u8>,
}

/// Numbered snapshots, newest kept.
///
/// Invariant: sequence numbers strictly increase; at most [`CHECKPOINTS_KEPT`] are stored.
#[derive(Clone)]
pub struct CheckpointDb {
    storage: Storage,
}

impl CheckpointDb {
    /// Saves a checkpoint with one synced write, deleting older ones beyond [`CHECKPOINTS_KEPT`].
    /// Returns its sequence number.
    pub fn save(&self, position: &[u64], data: &[u8]) -> Result<u64, StoreError> {
        let cf = self.storage.cf(CF_CHECKPOINTS)?;
        let seq = self.latest_seq()?.map_or(0, |s| s + 1);
        let mut value = Vec::with_capacity(4 + 8 * position.len() + data.len());
        let count = u32::try_from(position.len())
            .map_err(|_| StoreError::Corrupt("position vector too long".into()))?;
        value.extend_from_slice(&count.to_be_bytes());
        for p in position {
            value.extend_from_slice(&p.to_be_bytes());
        }
        value.extend_from_slice(data);
        let mut wb = WriteBatch::default();
        wb.put_cf(cf, seq.to_be_bytes(), value);
        let keep_from = (seq + 1).saturating_sub(CHECKPOINTS_KEPT as u64);
        if keep_from > 0 {
            wb.delete_range_cf(cf, 0u64.to_be_bytes(), keep_from.to_be_bytes());
        }
        self.storage.write_synced(wb)?;
        Ok(seq)
    }

    /// The newest checkpoint, if any.
    pub fn load_latest(&self) -> Result<Option<Checkpoint>, StoreError> {
        let cf = self.storage.cf(CF_CHECKPOINTS)?;
        let mut iter = self.storage.db.iterator_cf(cf, IteratorMode::End);
        let Some(item) = iter.next() else {
            return Ok(None);
        };
        let (k, v) = item?;
        let seq = decode_seq(&k)?;
        let corrupt = || StoreError::Corrupt(format!("checkpoint {seq}"));
        let count_bytes: [u8; 4] = v.get(..4).ok_or_else(corrupt)?.try_into().unwrap_or([0; 4]);
        let count = u32::from_be_bytes(count_bytes) as usize;
        let data_at = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .filter(|&n| n <= v.len())
            .ok_or_else(corrupt)?;
        let position = v[4..data_at]
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        Ok(Some(Checkpoint {
            seq,
            position,
            data: v[data_at..].to_vec(),
        }))
    }

    fn latest_seq(&self) -> Result<Option<u64>, StoreError> {
        let cf = self.storage.cf(CF_CHECKPOINTS)?;
        let mut iter = self.storage.db.iterator_cf(cf, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => Ok(Some(decode_seq(&item?.0)?)),
        }
    }
}

fn decode_seq(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("checkpoint key".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn votes_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            let v = s.votes();
            assert_eq!(v.promise(7).unwrap(), None);
            assert_eq!(v.highest_instance(7).unwrap(), None);
            let mut b = VoteBatch::new();
            b.put_promise(7, b"p1".to_vec());
            b.put_instance(7, 1, b"one".to_vec());
            b.put_instance(7, 2, b"two".to_vec());
            b.put_instance(8, 5, b"other group".to_vec());
            b.put_promise(7, b"p2".to_vec());
            v.write(b).unwrap();
        }
        let s = Storage::open(dir.path()).unwrap();
        let v = s.votes();
        assert_eq!(v.promise(7).unwrap().as_deref(), Some(&b"p2"[..]));
        assert_eq!(v.promise(9).unwrap(), None);
        assert_eq!(v.highest_instance(7).unwrap(), Some(2));
        assert_eq!(v.highest_instance(8).unwrap(), Some(5));
        assert_eq!(
            v.instances_from(7, 0, 100).unwrap(),
            vec![(1, b"one".to_vec()), (2, b"two".to_vec())]
        );
        assert_eq!(
            v.instances_from(7, 2, 100).unwrap(),
            vec![(2, b"two".to_vec())]
        );
        assert_eq!(v.instances_from(7, 0, 1).unwrap().len(), 1);
        assert!(v.instances_from(7, 3, 100).unwrap().is_empty());
    }

    #[test]
    fn acceptor_set_record_survives_trims_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let v = Storage::open(dir.path()).unwrap().votes();
            assert_eq!(v.acceptors(3).unwrap(), None);
            let mut b = VoteBatch::new();
            b.put_acceptors(3, b"set".to_vec());
            b.put_instance(3, 1, b"one".to_vec());
            b.trim_below(3, u64::MAX);
            v.write(b).unwrap();
        }
        let v = Storage::open(dir.path()).unwrap().votes();
        assert_eq!(v.acceptors(3).unwrap().as_deref(), Some(&b"set"[..]));
        assert_eq!(v.acceptors(4).unwrap(), None);
        assert!(v.instances_from(3, 0, 10).unwrap().is_empty());
    }

    #[test]
    fn trim_deletes_below_and_sets_low_mark() {
        let (_d, s) = open();
        let v = s.votes();
        let mut b = VoteBatch::new();
        for i in 1..=10u64 {
            b.put_instance(1, i, i.to_be_bytes().to_vec());
        }
        b.put_instance(2, 3, b"g2".to_vec());
        v.write(b).unwrap();
        assert_eq!(v.low(1).unwrap(), 0);
        let mut b = VoteBatch::new();
        b.trim_below(1, 8);
        v.write(b).unwrap();
        assert_eq!(v.low(1).unwrap(), 8);
        let left: Vec<u64> = v
            .instances_from(1, 0, 100)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(left, vec![8, 9, 10]);
        assert_eq!(v.instances_from(2, 0, 10).unwrap().len(), 1);
        // Trim everything: the highest instance disappears but the low mark stays.
        let mut b = VoteBatch::new();
        b.trim_below(1, 11);
        v.write(b).unwrap();
        assert_eq!(v.highest_instance(1).unwrap(), None);
        assert_eq!(v.low(1).unwrap(), 11);
    }

    #[test]
    fn checkpoints_keep_the_newest() {
        let (_d, s) = open();
        let c = s.checkpoints();
        assert_eq!(c.load_latest().unwrap(), None);
        assert_eq!(c.save(&[5], b"tree at 5").unwrap(), 0);
        assert_eq!(c.save(&[9, 3], b"").unwrap(), 1);
        assert_eq!(c.save(&[12], b"tree at 12").unwrap(), 2);
        let cp = c.load_latest().unwrap().unwrap();
        assert_eq!(cp.seq, 2);
        assert_eq!(cp.position, vec![12]);
        assert_eq!(cp.data, b"tree at 12".to_vec());
        let cf = s.cf(CF_CHECKPOINTS).unwrap();
        let stored = s.db.iterator_cf(cf, IteratorMode::Start).count();
        assert_eq!(stored, CHECKPOINTS_KEPT);
    }

    /// Bytes in the directory's write-ahead log files.
    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    /// Votes written long after the last checkpoint: the checkpoint column family's unflushed
    /// memtable must not keep every log file since.
    #[test]
    fn the_write_ahead_log_stays_bounded_while_checkpoints_are_rare() {
        const LIMIT: u64 = 4 << 20;
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open_with_wal_limit(dir.path(), LIMIT).unwrap();
        storage.checkpoints().save(&[1], b"state").unwrap();
        let votes = storage.votes();
        let record = vec![7u8; 64 << 10];
        let mut written = 0u64;
        for i in 0..640u64 {
            let mut b = VoteBatch::new();
            b.put_instance(1, i, record.clone());
            votes.write(b).unwrap();
            written += record.len() as u64;
        }
        let wal = wal_bytes(dir.path());
        assert!(written >= 10 * LIMIT);
        assert!(
            wal <= 3 * LIMIT,
            "{wal} bytes of log after {written} bytes of votes (bound {LIMIT})"
        );
        drop((votes, storage));
        let storage = Storage::open_with_wal_limit(dir.path(), LIMIT).unwrap();
        assert_eq!(storage.votes().highest_instance(1).unwrap(), Some(639));
        assert_eq!(
            storage.checkpoints().load_latest().unwrap().unwrap().data,
            b"state"
        );
    }

    #[test]
    fn second_open_of_same_directory_is_an_error() {
        let (d, _s) = open();
        let err = Storage::open(d.path()).err().expect("lock must be held");
        assert!(matches!(err, StoreError::Rocks(_)));
    }

    #[test]
    fn corrupt_low_mark_is_an_error() {
        let (_d, s) = open();
        let cf = s.cf(CF_VOTES).unwrap();
        s.db.put_cf(cf, group_key(3, KIND_LOW), b"xx").unwrap();
        assert!(matches!(s.votes().low(3), Err(StoreError::Corrupt(_))));
    }
}
