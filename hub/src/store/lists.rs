//! Record layouts that hold many small entries in few database records.
//!
//! sled keeps a few hundred bytes of memory for every page of every tree, whether or not the
//! page is cached, and a page holds at most 16 records. So a node's memory grows with the
//! number of records, not their size. Indexes that would cost a record per message are kept
//! here as:
//!
//! - **Lists**: append-only, in chunks of [`CHUNK`] entries (`[time ms][id]`), newest chunk
//!   last. `[name][0]` holds the number of the newest chunk and the list's latest time;
//!   `[name][1][chunk]` holds one chunk.
//! - **Buckets**: a map from byte strings to ids, hashed into [`BUCKETS`] records per kind.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::IVec;
use uuid::Uuid;

/// Entries per list chunk.
pub const CHUNK: usize = 16;
/// Records per bucketed map.
pub const BUCKETS: u16 = u16::MAX;

const ENTRY: usize = 24;

type TxResult<T> = Result<T, ConflictableTransactionError<super::StoreError>>;

fn head_key(name: &[u8]) -> Vec<u8> {
    [name, &[0]].concat()
}

fn chunk_key(name: &[u8], chunk: u32) -> Vec<u8> {
    [name, &[1], &chunk.to_be_bytes()].concat()
}

/// A list's head: its newest chunk and the latest time in the whole list.
fn read_head(v: Option<IVec>) -> Option<(u32, u64)> {
    let v = v?;
    let chunk = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
    let max = u64::from_be_bytes(v.get(4..12)?.try_into().ok()?);
    Some((chunk, max))
}

fn head_value(chunk: u32, max: u64) -> Vec<u8> {
    [&chunk.to_be_bytes()[..], &max.to_be_bytes()].concat()
}

/// A chunk: `[latest time in the chunks before it][entries]`. Entries are in the order they
/// were appended, which is not quite time order (clocks, and changes committing in another
/// order than they were stamped), so readers merge by time (see [`NewestFirst`]).
fn new_chunk(before: u64) -> Vec<u8> {
    before.to_be_bytes().to_vec()
}

/// Appends `(ms, id)` to the list `name`.
pub fn append(t: &TransactionalTree, name: &[u8], ms: u64, id: Uuid) -> TxResult<()> {
    let head = head_key(name);
    let (mut chunk, max) = read_head(t.get(&head)?).unwrap_or((0, 0));
    let mut bytes = match t.get(chunk_key(name, chunk))? {
        Some(v) if v.len() >= 8 + CHUNK * ENTRY => {
            chunk += 1;
            new_chunk(max)
        }
        Some(v) => v.to_vec(),
        None => new_chunk(0),
    };
    bytes.extend_from_slice(&ms.to_be_bytes());
    bytes.extend_from_slice(id.as_bytes());
    t.insert(chunk_key(name, chunk), bytes)?;
    t.insert(head, head_value(chunk, max.max(ms)))?;
    Ok(())
}

/// How many entries the list `name` holds.
pub fn len(tree: &sled::Tree, name: &[u8]) -> Result<u64, sled::Error> {
    let Some((last, _)) = read_head(tree.get(head_key(name))?) else {
        return Ok(0);
    };
    let tail = tree
        .get(chunk_key(name, last))?
        .map_or(0, |v| v.len().saturating_sub(8) / ENTRY);
    Ok(u64::from(last) * CHUNK as u64 + tail as u64)
}

/// The entries of a list, newest first by time: chunks are read newest first, and an entry is
/// given out once no chunk still to read can hold a later one.
pub struct NewestFirst {
    chunks: std::iter::Rev<sled::Iter>,
    waiting: std::collections::BinaryHeap<(u64, Uuid)>,
    /// The latest time in the chunks not read yet (`None`: all read).
    unread: Option<u64>,
}

/// The list `name`, newest first.
pub fn newest_first(tree: &sled::Tree, name: &[u8]) -> NewestFirst {
    let (from, to) = (chunk_key(name, 0), chunk_key(name, u32::MAX));
    NewestFirst {
        chunks: tree.range(from..=to).rev(),
        waiting: Default::default(),
        unread: Some(u64::MAX),
    }
}

impl Iterator for NewestFirst {
    type Item = Result<(u64, Uuid), sled::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(top) = self.waiting.peek() {
                if self.unread.is_none_or(|u| top.0 > u) {
                    return self.waiting.pop().map(Ok);
                }
            }
            self.unread?;
            match self.chunks.next() {
                None => self.unread = None,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok((_, v))) => {
                    let before = v
                        .get(..8)
                        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
                    for e in v.get(8..).unwrap_or_default().chunks_exact(ENTRY) {
                        let ms = u64::from_be_bytes(e[..8].try_into().expect("8 bytes"));
                        let id = Uuid::from_slice(&e[8..]).expect("16 bytes");
                        self.waiting.push((ms, id));
                    }
                    self.unread = Some(before);
                }
            }
        }
    }
}

/// FNV-1a, then mixed so similar keys spread: a stable hash, so a key finds the same bucket in
/// every version.
fn bucket_of(kind: u8, key: &[u8]) -> Vec<u8> {
    let mut h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let b = (h % u64::from(BUCKETS)) as u16;
    [&[kind][..], &b.to_be_bytes()].concat()
}

/// Entries of a bucket: `[key length u16][key][id]`.
fn find(bucket: &[u8], key: &[u8]) -> Option<Uuid> {
    let mut rest = bucket;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let (k, id) = rest.get(2..2 + n).zip(rest.get(2 + n..18 + n))?;
        if k == key {
            return Uuid::from_slice(id).ok();
        }
        rest = &rest[18 + n..];
    }
    None
}

/// The id `key` maps to in the bucketed map `kind`.
pub fn get(tree: &sled::Tree, kind: u8, key: &[u8]) -> Result<Option<Uuid>, sled::Error> {
    Ok(tree.get(bucket_of(kind, key))?.and_then(|b| find(&b, key)))
}

/// The same, inside a transaction.
pub fn tx_get(t: &TransactionalTree, kind: u8, key: &[u8]) -> TxResult<Option<Uuid>> {
    Ok(t.get(bucket_of(kind, key))?.and_then(|b| find(&b, key)))
}

/// Maps `key` to `id` in the bucketed map `kind` (replacing what it mapped to).
pub fn put(t: &TransactionalTree, kind: u8, key: &[u8], id: Uuid) -> TxResult<()> {
    let at = bucket_of(kind, key);
    let old = t.get(&at)?.map(|v| v.to_vec()).unwrap_or_default();
    let mut bucket = Vec::with_capacity(old.len() + key.len() + 18);
    let mut rest = old.as_slice();
    // Keeps every other entry.
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let Some(entry) = rest.get(..18 + n) else {
            break;
        };
        if &entry[2..2 + n] != key {
            bucket.extend_from_slice(entry);
        }
        rest = &rest[18 + n..];
    }
    let n = u16::try_from(key.len()).unwrap_or(u16::MAX);
    bucket.extend_from_slice(&n.to_be_bytes());
    bucket.extend_from_slice(&key[..usize::from(n)]);
    bucket.extend_from_slice(id.as_bytes());
    t.insert(at, bucket)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree() -> sled::Tree {
        sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap()
    }

    fn id(n: u64) -> Uuid {
        Uuid::from_u64_pair(n, n.wrapping_mul(31))
    }

    proptest! {
        #[test]
        fn lists_give_back_every_entry_newest_first(
            // Times mostly rising, some going back (clocks, commits in another order).
            steps in proptest::collection::vec(-40i64..60, 0..300),
        ) {
            let t = tree();
            let mut at = 1_000i64;
            let entries: Vec<(u64, Uuid)> = steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    at = (at + step).max(0);
                    (at as u64, id(i as u64))
                })
                .collect();
            for (ms, i) in &entries {
                t.transaction(|tx| append(tx, b"Ra", *ms, *i)).unwrap();
            }
            // Another list beside it stays apart.
            t.transaction(|tx| append(tx, b"Rab", 7, id(999))).unwrap();
            let got: Vec<(u64, Uuid)> = newest_first(&t, b"Ra")
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let mut want = entries.clone();
            want.sort_by(|a, b| b.cmp(a));
            prop_assert_eq!(got, want);
            prop_assert_eq!(len(&t, b"Ra").unwrap(), entries.len() as u64);
            prop_assert_eq!(len(&t, b"Rab").unwrap(), 1);
            prop_assert_eq!(len(&t, b"Rx").unwrap(), 0);
        }

        #[test]
        fn buckets_map_every_key_to_its_latest_id(
            keys in proptest::collection::vec("[A-Z0-9]{1,6}", 1..200),
        ) {
            let t = tree();
            for (i, k) in keys.iter().enumerate() {
                t.transaction(|tx| put(tx, b'D', k.as_bytes(), id(i as u64))).unwrap();
            }
            for k in &keys {
                let last = keys.iter().rposition(|x| x == k).unwrap();
                prop_assert_eq!(get(&t, b'D', k.as_bytes()).unwrap(), Some(id(last as u64)));
                prop_assert_eq!(get(&t, b'T', k.as_bytes()).unwrap(), None, "kinds are apart");
            }
            prop_assert_eq!(get(&t, b'D', b"not-a-key").unwrap(), None);
        }
    }

    #[test]
    fn keys_sharing_a_bucket_keep_their_own_ids() {
        let t = tree();
        // Enough keys that many share a bucket.
        let n = 10_000u64;
        let chunk: Vec<u64> = (0..n).collect();
        for part in chunk.chunks(5000) {
            t.transaction(|tx| {
                for i in part {
                    put(tx, b'D', &i.to_be_bytes(), id(*i))?;
                }
                Ok(())
            })
            .unwrap();
        }
        for i in (0..n).step_by(97) {
            assert_eq!(get(&t, b'D', &i.to_be_bytes()).unwrap(), Some(id(i)));
        }
        assert!(t.len() < n as usize - 100, "{} buckets", t.len());
    }
}
