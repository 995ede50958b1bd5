//! A message's one database record: its deliveries, the message itself and its timeline.
//!
//! `[2][legacy u16][legacy delivery ids][records u16][records][message length u32][message
//! JSON][events, JSON lines]`, each record `[delivery id][length u32][delivery JSON]`.
//! Keeping them together costs the database one record per message instead of four (see
//! `lists` for why the number of records matters).
//!
//! Older layouts are read too. Layout 1 is `[1][n u16][delivery ids][message length u32]
//! [message JSON][events]`, its deliveries kept in a tree of their own; before it, the record
//! was the message JSON alone (it starts with `{`), its deliveries and timeline elsewhere.
//! Deliveries kept elsewhere stay there (`legacy`); a record rewritten is in layout 2.

use super::StoreError;
use uuid::Uuid;

const LAYOUT_1: u8 = 1;
const LAYOUT: u8 = 2;

/// A decoded message record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Deliveries whose records are in the deliveries tree (written by older versions).
    pub legacy: Vec<Uuid>,
    /// Deliveries kept in this record: id and JSON.
    pub records: Vec<(Uuid, Vec<u8>)>,
    pub message: Vec<u8>,
    pub timeline: Vec<u8>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("message record: {what}"))
}

/// Reads a record front to back.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.at.checked_add(n).ok_or_else(|| corrupt("cut short"))?;
        let b = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| corrupt("cut short"))?;
        self.at = end;
        Ok(b)
    }

    fn u16(&mut self) -> Result<usize, StoreError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn id(&mut self) -> Result<Uuid, StoreError> {
        Ok(Uuid::from_slice(self.take(16)?).expect("16 bytes"))
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }
}

/// A record in layout 1 or 2, read in place.
struct Parts<'a> {
    /// Legacy delivery ids, 16 bytes each.
    legacy: &'a [u8],
    message: &'a [u8],
    timeline: &'a [u8],
}

/// Reads a record in layout 1 or 2, giving each delivery kept in it to `on_record`.
fn walk<'a>(
    bytes: &'a [u8],
    mut on_record: impl FnMut(Uuid, &'a [u8]),
) -> Result<Parts<'a>, StoreError> {
    let mut r = Reader { bytes, at: 1 };
    let layout = bytes.first().copied();
    let n = r.u16()?;
    let legacy = r.take(16 * n)?;
    if layout == Some(LAYOUT) {
        for _ in 0..r.u16()? {
            let id = r.id()?;
            let len = r.u32()?;
            on_record(id, r.take(len)?);
        }
    }
    let len = r.u32()?;
    let message = r.take(len)?;
    Ok(Parts {
        legacy,
        message,
        timeline: r.rest(),
    })
}

impl Entry {
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.first() {
            Some(b'{') => Ok(Self {
                message: bytes.to_vec(),
                ..Self::default()
            }),
            Some(&LAYOUT_1) | Some(&LAYOUT) => {
                let mut records = Vec::new();
                let parts = walk(bytes, |id, r| records.push((id, r.to_vec())))?;
                Ok(Self {
                    legacy: parts
                        .legacy
                        .chunks_exact(16)
                        .map(|b| Uuid::from_slice(b).expect("16 bytes"))
                        .collect(),
                    records,
                    message: parts.message.to_vec(),
                    timeline: parts.timeline.to_vec(),
                })
            }
            _ => Err(corrupt("unknown layout")),
        }
    }

    /// Only the message JSON, without copying the rest (listings read many).
    pub fn message_of(bytes: &[u8]) -> Result<&[u8], StoreError> {
        match bytes.first() {
            Some(b'{') => Ok(bytes),
            Some(&LAYOUT_1) | Some(&LAYOUT) => Ok(walk(bytes, |_, _| {})?.message),
            _ => Err(corrupt("unknown layout")),
        }
    }

    /// One delivery's JSON, if this record keeps it, without copying the rest.
    pub fn record_of(bytes: &[u8], delivery: Uuid) -> Result<Option<&[u8]>, StoreError> {
        match bytes.first() {
            Some(b'{') | Some(&LAYOUT_1) => Ok(None),
            Some(&LAYOUT) => {
                let mut found = None;
                walk(bytes, |id, r| {
                    if id == delivery {
                        found = Some(r);
                    }
                })?;
                Ok(found)
            }
            _ => Err(corrupt("unknown layout")),
        }
    }

    /// Keeps a delivery's JSON in this record, replacing what it kept for that id.
    pub fn set_record(&mut self, id: Uuid, json: Vec<u8>) {
        match self.records.iter_mut().find(|(i, _)| *i == id) {
            Some(r) => r.1 = json,
            None => self.records.push((id, json)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let count = |n: usize| u16::try_from(n).expect("fewer than 65,536 deliveries");
        let len = |n: usize| u32::try_from(n).expect("a message record under 4 GB");
        let kept: usize = self.records.iter().map(|(_, r)| 20 + r.len()).sum();
        let mut out = Vec::with_capacity(
            9 + 16 * self.legacy.len() + kept + self.message.len() + self.timeline.len() + 256,
        );
        out.push(LAYOUT);
        out.extend_from_slice(&count(self.legacy.len()).to_be_bytes());
        for d in &self.legacy {
            out.extend_from_slice(d.as_bytes());
        }
        out.extend_from_slice(&count(self.records.len()).to_be_bytes());
        for (id, r) in &self.records {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&len(r.len()).to_be_bytes());
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&len(self.message.len()).to_be_bytes());
        out.extend_from_slice(&self.message);
        out.extend_from_slice(&self.timeline);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entries_read_back_as_written(
            ids in proptest::collection::vec(any::<u128>(), 0..5),
            records in proptest::collection::vec((any::<u128>(), "\\{[ -~]{0,60}"), 0..5),
            message in "\\{[ -~]{0,80}",
            timeline in "[ -~\n]{0,200}",
        ) {
            let mut e = Entry {
                legacy: ids.into_iter().map(Uuid::from_u128).collect(),
                message: message.into_bytes(),
                timeline: timeline.into_bytes(),
                ..Entry::default()
            };
            for (id, r) in &records {
                e.set_record(Uuid::from_u128(*id), r.clone().into_bytes());
            }
            let bytes = e.encode();
            prop_assert_eq!(Entry::message_of(&bytes).unwrap(), e.message.as_slice());
            for (id, r) in &e.records {
                prop_assert_eq!(Entry::record_of(&bytes, *id).unwrap(), Some(r.as_slice()));
            }
            prop_assert_eq!(Entry::record_of(&bytes, Uuid::nil()).unwrap(), None);
            prop_assert_eq!(Entry::decode(&bytes).unwrap(), e);
        }

        #[test]
        fn damaged_entries_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Entry::decode(&bytes);
            let _ = Entry::message_of(&bytes);
            let _ = Entry::record_of(&bytes, Uuid::nil());
        }
    }

    #[test]
    fn older_records_are_the_message_alone() {
        let e = Entry::decode(br#"{"id":"x"}"#).unwrap();
        assert_eq!(e.message, br#"{"id":"x"}"#);
        assert!(e.legacy.is_empty() && e.records.is_empty() && e.timeline.is_empty());
        let cut = &Entry {
            legacy: vec![Uuid::nil()],
            message: b"{}".to_vec(),
            ..Entry::default()
        }
        .encode()[..10];
        assert!(matches!(Entry::decode(cut), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn layout_one_records_read_with_their_delivery_ids() {
        let id = Uuid::from_u128(7);
        let mut bytes = vec![LAYOUT_1, 0, 1];
        bytes.extend_from_slice(id.as_bytes());
        bytes.extend_from_slice(&2u32.to_be_bytes());
        bytes.extend_from_slice(b"{}{\"event\":1}\n");
        let e = Entry::decode(&bytes).unwrap();
        assert_eq!(e.legacy, [id]);
        assert!(e.records.is_empty());
        assert_eq!(e.message, b"{}");
        assert_eq!(e.timeline, b"{\"event\":1}\n");
        assert_eq!(Entry::message_of(&bytes).unwrap(), b"{}");
        assert_eq!(Entry::record_of(&bytes, id).unwrap(), None);
        // Rewritten, it keeps them.
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
    }
}
