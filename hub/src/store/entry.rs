//! A message's one database record: its deliveries, the message itself and its timeline.
//!
//! `[3][0 u16][records u16][records][message length u32][message JSON][payload][events, JSON
//! lines]`, each record `[delivery id][length u32][delivery JSON]`, the payload where it is in
//! the payload log (`[segment u64][offset u64][length u64]`). Layout 2 is the same without the
//! payload: a message whose payload is a file of its own (as earlier releases kept them), or
//! whose payload has been purged. Keeping them together costs the
//! database one record per message instead of four (see `lists` for why the number of records
//! matters). The first byte is the layout; the zero after it is a count of deliveries kept
//! outside the record, which only development builds before this layout wrote: a record with
//! any is refused.

use super::payload_log::PayloadAt;
use super::StoreError;
use uuid::Uuid;

const LAYOUT: u8 = 2;
const LAYOUT_WITH_PAYLOAD: u8 = 3;

/// A decoded message record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Deliveries kept in this record: id and JSON.
    pub records: Vec<(Uuid, Vec<u8>)>,
    pub message: Vec<u8>,
    /// Where the payload is in the payload log.
    pub payload: Option<PayloadAt>,
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

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn id(&mut self) -> Result<Uuid, StoreError> {
        Ok(Uuid::from_slice(self.take(16)?).expect("16 bytes"))
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }
}

/// A record, read in place.
struct Parts<'a> {
    message: &'a [u8],
    payload: Option<PayloadAt>,
    timeline: &'a [u8],
}

/// Reads a record, giving each delivery kept in it to `on_record`.
fn walk<'a>(
    bytes: &'a [u8],
    mut on_record: impl FnMut(Uuid, &'a [u8]),
) -> Result<Parts<'a>, StoreError> {
    let with_payload = match bytes.first() {
        Some(&LAYOUT) => false,
        Some(&LAYOUT_WITH_PAYLOAD) => true,
        _ => return Err(corrupt("unknown layout")),
    };
    let mut r = Reader { bytes, at: 1 };
    if r.u16()? != 0 {
        return Err(corrupt(
            "deliveries kept outside the record (an older store)",
        ));
    }
    for _ in 0..r.u16()? {
        let id = r.id()?;
        let len = r.u32()?;
        on_record(id, r.take(len)?);
    }
    let len = r.u32()?;
    let message = r.take(len)?;
    let payload = match with_payload {
        true => Some(PayloadAt {
            segment: r.u64()?,
            offset: r.u64()?,
            len: r.u64()?,
        }),
        false => None,
    };
    Ok(Parts {
        message,
        payload,
        timeline: r.rest(),
    })
}

impl Entry {
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut records = Vec::new();
        let parts = walk(bytes, |id, r| records.push((id, r.to_vec())))?;
        Ok(Self {
            records,
            message: parts.message.to_vec(),
            payload: parts.payload,
            timeline: parts.timeline.to_vec(),
        })
    }

    /// Only the message JSON, without copying the rest (listings read many).
    pub fn message_of(bytes: &[u8]) -> Result<&[u8], StoreError> {
        Ok(walk(bytes, |_, _| {})?.message)
    }

    /// Where the payload is in the payload log, if it is there.
    pub fn payload_of(bytes: &[u8]) -> Result<Option<PayloadAt>, StoreError> {
        Ok(walk(bytes, |_, _| {})?.payload)
    }

    /// One delivery's JSON, if this record keeps it, without copying the rest.
    pub fn record_of(bytes: &[u8], delivery: Uuid) -> Result<Option<&[u8]>, StoreError> {
        let mut found = None;
        walk(bytes, |id, r| {
            if id == delivery {
                found = Some(r);
            }
        })?;
        Ok(found)
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
        let mut out =
            Vec::with_capacity(33 + kept + self.message.len() + self.timeline.len() + 256);
        out.push(match self.payload {
            Some(_) => LAYOUT_WITH_PAYLOAD,
            None => LAYOUT,
        });
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&count(self.records.len()).to_be_bytes());
        for (id, r) in &self.records {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&len(r.len()).to_be_bytes());
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&len(self.message.len()).to_be_bytes());
        out.extend_from_slice(&self.message);
        if let Some(p) = self.payload {
            for n in [p.segment, p.offset, p.len] {
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
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
            records in proptest::collection::vec((any::<u128>(), "\\{[ -~]{0,60}"), 0..5),
            message in "\\{[ -~]{0,80}",
            payload in proptest::option::of(any::<(u64, u64, u64)>()),
            timeline in "[ -~\n]{0,200}",
        ) {
            let mut e = Entry {
                message: message.into_bytes(),
                payload: payload.map(|(segment, offset, len)| PayloadAt { segment, offset, len }),
                timeline: timeline.into_bytes(),
                ..Entry::default()
            };
            for (id, r) in &records {
                e.set_record(Uuid::from_u128(*id), r.clone().into_bytes());
            }
            let bytes = e.encode();
            prop_assert_eq!(Entry::message_of(&bytes).unwrap(), e.message.as_slice());
            prop_assert_eq!(Entry::payload_of(&bytes).unwrap(), e.payload);
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
    fn records_cut_short_or_of_another_layout_are_corrupt() {
        let bytes = Entry {
            records: vec![(Uuid::nil(), b"{}".to_vec())],
            message: b"{}".to_vec(),
            ..Entry::default()
        }
        .encode();
        assert!(matches!(
            Entry::decode(&bytes[..10]),
            Err(StoreError::Corrupt(_))
        ));
        for layout in [b'{', 1, 4] {
            let other = [&[layout][..], &bytes[1..]].concat();
            assert!(matches!(Entry::decode(&other), Err(StoreError::Corrupt(_))));
        }
        let elsewhere = [&[LAYOUT, 0, 1][..], &bytes[3..]].concat();
        assert!(matches!(
            Entry::decode(&elsewhere),
            Err(StoreError::Corrupt(_))
        ));
    }
}
