//! A message's one database record: its delivery ids, the message itself and its timeline.
//!
//! `[1][deliveries u16][delivery ids][message length u32][message JSON][events, JSON lines]`.
//! Keeping them together costs the database one record per message instead of three (see
//! `lists` for why the number of records matters). Stores written before this layout hold the
//! message JSON alone (it starts with `{`); their deliveries and timeline are in other trees.

use super::StoreError;
use uuid::Uuid;

const LAYOUT: u8 = 1;

/// A decoded message record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub deliveries: Vec<Uuid>,
    pub message: Vec<u8>,
    pub timeline: Vec<u8>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("message record: {what}"))
}

/// Where a record in the current layout keeps its parts: the number of deliveries, and where
/// the message JSON starts and ends.
fn parts(bytes: &[u8]) -> Result<(usize, usize, usize), StoreError> {
    let n = bytes
        .get(1..3)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| corrupt("cut short"))?;
    let at = 3 + 16 * n;
    let m_len = bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| corrupt("cut short"))?;
    let end = at + 4 + m_len;
    if bytes.len() < end {
        return Err(corrupt("cut short"));
    }
    Ok((n, at + 4, end))
}

impl Entry {
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.first() {
            Some(b'{') => Ok(Self {
                message: bytes.to_vec(),
                ..Self::default()
            }),
            Some(&LAYOUT) => {
                let (n, start, end) = parts(bytes)?;
                Ok(Self {
                    deliveries: bytes[3..3 + 16 * n]
                        .chunks_exact(16)
                        .map(|b| Uuid::from_slice(b).expect("16 bytes"))
                        .collect(),
                    message: bytes[start..end].to_vec(),
                    timeline: bytes[end..].to_vec(),
                })
            }
            _ => Err(corrupt("unknown layout")),
        }
    }

    /// Only the message JSON, without copying the rest (listings read many).
    pub fn message_of(bytes: &[u8]) -> Result<&[u8], StoreError> {
        match bytes.first() {
            Some(b'{') => Ok(bytes),
            Some(&LAYOUT) => parts(bytes).map(|(_, start, end)| &bytes[start..end]),
            _ => Err(corrupt("unknown layout")),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let n = u16::try_from(self.deliveries.len()).expect("fewer than 65,536 deliveries");
        let mut out = Vec::with_capacity(7 + 16 * self.deliveries.len() + self.message.len() + 64);
        out.push(LAYOUT);
        out.extend_from_slice(&n.to_be_bytes());
        for d in &self.deliveries {
            out.extend_from_slice(d.as_bytes());
        }
        let m_len = u32::try_from(self.message.len()).expect("a message record under 4 GB");
        out.extend_from_slice(&m_len.to_be_bytes());
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
            message in "\\{[ -~]{0,80}",
            timeline in "[ -~\n]{0,200}",
        ) {
            let e = Entry {
                deliveries: ids.into_iter().map(Uuid::from_u128).collect(),
                message: message.into_bytes(),
                timeline: timeline.into_bytes(),
            };
            let bytes = e.encode();
            prop_assert_eq!(Entry::message_of(&bytes).unwrap(), e.message.as_slice());
            prop_assert_eq!(Entry::decode(&bytes).unwrap(), e);
        }

        #[test]
        fn damaged_entries_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Entry::decode(&bytes);
            let _ = Entry::message_of(&bytes);
        }
    }

    #[test]
    fn older_records_are_the_message_alone() {
        let e = Entry::decode(br#"{"id":"x"}"#).unwrap();
        assert_eq!(e.message, br#"{"id":"x"}"#);
        assert!(e.deliveries.is_empty() && e.timeline.is_empty());
        let cut = &Entry {
            deliveries: vec![Uuid::nil()],
            message: b"{}".to_vec(),
            timeline: Vec::new(),
        }
        .encode()[..10];
        assert!(matches!(Entry::decode(cut), Err(StoreError::Corrupt(_))));
    }
}
