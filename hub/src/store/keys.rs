//! Key layouts. Big-endian numbers so byte order is time order; UUIDv7 ids are time ordered too.

use crate::track::{DeliveryRecord, DeliveryState};
use uuid::Uuid;

/// `[state][updated ms][delivery id]`: current deliveries by state and time of change.
pub fn by_state(d: &DeliveryRecord) -> Vec<u8> {
    state_prefix_from(d.state, d.updated_ms)
        .into_iter()
        .chain(d.id.as_bytes().iter().copied())
        .collect()
}

pub fn state_prefix(state: DeliveryState) -> Vec<u8> {
    vec![state as u8]
}

pub fn state_prefix_from(state: DeliveryState, from_ms: u64) -> Vec<u8> {
    [&[state as u8][..], &from_ms.to_be_bytes()].concat()
}

/// `[sender ODS][0][local id]`: idempotency of submissions.
pub fn dedupe(sender: &str, local_id: &str) -> Vec<u8> {
    [sender.as_bytes(), &[0], local_id.as_bytes()].concat()
}

/// The last 16 bytes of an index key: the id it points at.
pub fn trailing_id(key: &[u8]) -> Option<Uuid> {
    key.len()
        .checked_sub(16)
        .and_then(|at| Uuid::from_slice(&key[at..]).ok())
}

/// Milliseconds since 1970 in a UUIDv7 (its first 48 bits).
pub fn id_ms(id: &Uuid) -> u64 {
    id.as_bytes()[..6]
        .iter()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
}

/// The smallest UUIDv7 for a time: a bound for range scans over time-ordered ids.
pub fn min_id_at(ms: u64) -> Uuid {
    // UUIDv7 holds 48 bits of milliseconds.
    let ms = ms.min((1 << 48) - 1);
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(b)
}
