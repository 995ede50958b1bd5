//! The store's reads: records, timelines, payloads, listings and counts. Reads take no
//! transaction; each sees every committed write.

use super::schema::*;
use super::SledStore;
use crate::store::entry::Entry;
use crate::store::payload_log::PayloadAt;
use crate::store::{keys, lists};
use crate::store::{After, ListPage, ListQuery, StoreError, UnmatchedAck};
use crate::track::{AuditEvent, DeliveryRecord, DeliveryState, MessageRecord};
use std::collections::HashSet;
use uuid::Uuid;

/// Extra reads of each record in a long scan (see [`messages_since`]).
const SCAN_TOUCHES: usize = 2;

/// How long [`Store::list_page`] may go on counting once a match past its page is known.
const COUNT_BUDGET: std::time::Duration = std::time::Duration::from_millis(30);

pub(super) fn message(s: &SledStore, id: Uuid) -> Result<Option<MessageRecord>, StoreError> {
    s.tree(MESSAGES)
        .get(id.as_bytes())?
        .map(|v| dec(Entry::message_of(&v)?, "message"))
        .transpose()
}

/// Where a message's payload is in the payload log, if it is there.
pub(super) fn payload_at(s: &SledStore, id: Uuid) -> Result<Option<PayloadAt>, StoreError> {
    match s.tree(MESSAGES).get(id.as_bytes())? {
        Some(v) => Entry::payload_of(&v),
        None => Ok(None),
    }
}

pub(super) fn payload(s: &SledStore, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
    let err = |e| StoreError::Engine(format!("reading the payload of {id}: {e}"));
    match payload_at(s, id)? {
        Some(at) => {
            let bytes = s.log.read(at).map_err(err)?;
            // A purge may have given its space back meanwhile: then it is no longer held.
            Ok(bytes.filter(|_| payload_at(s, id).ok().flatten() == Some(at)))
        }
        None => s.payloads.read(&id).map_err(err),
    }
}

pub(super) fn delivery(s: &SledStore, id: Uuid) -> Result<Option<DeliveryRecord>, StoreError> {
    if let Some(message) = crate::track::derived_message(id) {
        if let Some(d) = kept_in(s.tree(MESSAGES).get(message.as_bytes())?, id)? {
            return Ok(Some(d));
        }
    }
    match lists::get(s.tree(BUCKETS), HOME_MAP, id.as_bytes())? {
        Some(message) => kept_in(s.tree(MESSAGES).get(message.as_bytes())?, id),
        None => Ok(None),
    }
}

pub(super) fn deliveries_of(
    s: &SledStore,
    message: Uuid,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let Some(v) = s.tree(MESSAGES).get(message.as_bytes())? else {
        return Ok(Vec::new());
    };
    Entry::decode(&v)?
        .records
        .iter()
        .map(|(_, r)| dec(r, "delivery"))
        .collect()
}

pub(super) fn audit_of(s: &SledStore, message: Uuid) -> Result<Vec<AuditEvent>, StoreError> {
    // Events recorded before the message itself come first.
    let mut events = match s.tree(AUDIT).get(message.as_bytes())? {
        Some(v) => timeline_events(&v)?,
        None => Vec::new(),
    };
    if let Some(v) = s.tree(MESSAGES).get(message.as_bytes())? {
        events.extend(timeline_events(&Entry::decode(&v)?.timeline)?);
    }
    Ok(events)
}

pub(super) fn audit_between(
    s: &SledStore,
    since_ms: u64,
    until_ms: u64,
    f: &mut dyn FnMut(AuditEvent) -> bool,
) -> Result<(), StoreError> {
    // Events are keyed by message: a message received before `since` can have events
    // after it, so the whole tree is read (messages received after `until` are skipped).
    let end = keys::min_id_at(until_ms.saturating_add(1))
        .as_bytes()
        .to_vec();
    for kv in s.tree(AUDIT).range(..end.clone()) {
        let (_, v) = kv?;
        for e in timeline_events(&v)? {
            if e.at_ms >= since_ms && e.at_ms <= until_ms && !f(e) {
                return Ok(());
            }
        }
    }
    for kv in s.tree(MESSAGES).range(..end) {
        let (_, v) = kv?;
        for e in timeline_events(&Entry::decode(&v)?.timeline)? {
            if e.at_ms >= since_ms && e.at_ms <= until_ms && !f(e) {
                return Ok(());
            }
        }
    }
    Ok(())
}

pub(super) fn find_by_local_id(
    s: &SledStore,
    sender_ods: &str,
    local_id: &str,
) -> Result<Option<Uuid>, StoreError> {
    let key = keys::dedupe(sender_ods, local_id);
    Ok(lists::get(s.tree(BUCKETS), DEDUPE_MAP, &key)?)
}

pub(super) fn payload_candidates(
    s: &SledStore,
    before_ms: u64,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Vec<Uuid>, StoreError> {
    s.payloads
        .candidates(before_ms, after, limit)
        .map_err(|e| StoreError::Engine(format!("listing payload files: {e}")))
}

pub(super) fn payload_size(s: &SledStore, id: Uuid) -> Result<Option<u64>, StoreError> {
    if let Some(at) = payload_at(s, id)? {
        return Ok(Some(at.len));
    }
    s.payloads
        .size(&id)
        .map_err(|e| StoreError::Engine(format!("reading the payload of {id}: {e}")))
}

pub(super) fn payload_segments(s: &SledStore, before_ms: u64) -> Result<Vec<u64>, StoreError> {
    s.log
        .segments(before_ms)
        .map_err(|e| StoreError::Engine(format!("listing payload segments: {e}")))
}

pub(super) fn segment_payloads(s: &SledStore, segment: u64) -> Result<Vec<Uuid>, StoreError> {
    let listed = s
        .log
        .payloads(segment)
        .map_err(|e| StoreError::Engine(format!("reading payload segment {segment}: {e}")))?;
    Ok(listed.into_iter().map(|(id, _)| id).collect())
}

pub(super) fn delivery_by_transport(
    s: &SledStore,
    transport_id: &str,
) -> Result<Option<Uuid>, StoreError> {
    if let Some(id) = lists::get(s.tree(BUCKETS), TRANSPORT_MAP, transport_id.as_bytes())? {
        return Ok(Some(id));
    }
    // A delivery's own id, as a drop file names it, is not kept in the map.
    match Uuid::parse_str(transport_id) {
        Ok(id) if names_itself(transport_id, id) => Ok(delivery(s, id)?
            .filter(|d| d.transport_id.as_deref() == Some(transport_id))
            .map(|d| d.id)),
        _ => Ok(None),
    }
}

pub(super) fn list_page(
    s: &SledStore,
    q: &ListQuery,
    count_to: usize,
) -> Result<ListPage, StoreError> {
    let limit = if q.limit == 0 { 100 } else { q.limit };
    let cap = count_to.max(limit + 1);
    let since = q.since_ms.unwrap_or(0);
    let until = q.until_ms.unwrap_or(u64::MAX);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut total = 0usize;
    // Counting past the page reads records the page did not need: it gets a time budget,
    // so a big count costs a listing little (the total is then a lower bound).
    let counting_ends = std::time::Instant::now() + COUNT_BUDGET;
    let mut out_of_time = false;
    // Accepts a candidate message if the filters not used for the scan hold; false once
    // the count has reached `cap` or its time is up.
    let mut examined = 0usize;
    // `None`: an index entry that did not match (it counts against the time budget too).
    let mut positions = Vec::new();
    let mut take = |id: Option<Uuid>,
                    at: (u64, Uuid),
                    out: &mut Vec<Uuid>|
     -> Result<bool, StoreError> {
        examined += 1;
        // Only once a match past the page is known, so `truncated` stays exact.
        if total > limit && examined.is_multiple_of(64) && std::time::Instant::now() > counting_ends
        {
            out_of_time = true;
            return Ok(false);
        }
        let Some(id) = id else {
            return Ok(true);
        };
        if seen.contains(&id) {
            return Ok(true);
        }
        if q.needs_message() {
            match message(s, id)? {
                Some(m) if q.accepts(&m) => {}
                _ => return Ok(true),
            }
        }
        seen.insert(id);
        total += 1;
        if out.len() < limit {
            out.push(id);
            positions.push(After::At(at.0, at.1));
        }
        Ok(total < cap)
    };
    // A state index entry's message and recipient, from its value.
    let state_entry = |v: &[u8]| -> Result<(Uuid, String), StoreError> {
        let message = v.get(..16).and_then(|b| Uuid::from_slice(b).ok());
        let message = message.ok_or_else(|| StoreError::Corrupt("state index entry".into()))?;
        Ok((message, String::from_utf8_lossy(&v[16..]).into_owned()))
    };
    // Where the previous page ended, in the listing's own order.
    let before = match q.after {
        Some(After::At(ms, id)) => Some((ms, id)),
        _ => None,
    };
    // A message listed by one of its deliveries was listed on an earlier page if another of
    // its deliveries that matches too comes before the page's start.
    let listed_earlier = |message: Uuid, fits: &dyn Fn(&DeliveryRecord) -> bool| {
        let Some(b) = before else {
            return Ok::<bool, StoreError>(false);
        };
        Ok(deliveries_of(s, message)?
            .iter()
            .any(|d| d.is_current() && fits(d) && (d.updated_ms, d.id) >= b))
    };
    enum Scan<'a> {
        State(DeliveryState, Option<&'a str>),
        Recipient(&'a str, Option<DeliveryState>),
        Sender(&'a str),
        Received,
    }
    let scan = match (&q.state, &q.recipient_ods) {
        // Whichever of the two is shorter.
        (Some(state), Some(ods)) => {
            let listed = lists::len(s.tree(LISTS), &recipient_list(ods))?;
            let in_state = read_count(s.tree(COUNTS).get([*state as u8])?);
            match listed <= in_state {
                true => Scan::Recipient(ods, Some(*state)),
                false => Scan::State(*state, Some(ods)),
            }
        }
        (Some(state), None) => Scan::State(*state, None),
        (None, Some(ods)) => Scan::Recipient(ods, None),
        (None, None) => match &q.sender_ods {
            Some(sender) => Scan::Sender(sender),
            None => Scan::Received,
        },
    };
    match scan {
        Scan::State(state, ods) => {
            let from = keys::state_prefix_from(state, since);
            let end = match q.until_ms {
                Some(u) => keys::state_prefix_from(state, u.saturating_add(1)),
                None => keys::state_prefix(state)
                    .into_iter()
                    .map(|b| b + 1)
                    .collect::<Vec<u8>>(),
            };
            let end = match before {
                Some((ms, id)) => {
                    let at = [&keys::state_prefix_from(state, ms)[..], id.as_bytes()].concat();
                    at.min(end)
                }
                None => end,
            };
            for kv in s.tree(BY_STATE).range(from..end).rev() {
                let (k, v) = kv?;
                let (message, recipient) = state_entry(&v)?;
                let at = state_key_place(&k)?;
                let fits = |d: &DeliveryRecord| {
                    d.state == state && ods.is_none_or(|o| o == d.recipient_ods)
                };
                let matched = match ods.is_none_or(|o| o == recipient) {
                    true if listed_earlier(message, &fits)? => None,
                    true => Some(message),
                    false => None,
                };
                if !take(matched, at, &mut out)? {
                    break;
                }
            }
        }
        // Lists hold every change, newest last: an entry is current while its delivery
        // was last changed at its time.
        Scan::Recipient(ods, state) => {
            for entry in lists::newest_first(s.tree(LISTS), &recipient_list(ods)) {
                let (ms, id) = entry?;
                if ms < since {
                    break;
                }
                if ms > until || before.is_some_and(|b| (ms, id) >= b) {
                    continue;
                }
                let fits = |d: &DeliveryRecord| {
                    d.recipient_ods == ods && state.is_none_or(|want| d.state == want)
                };
                let matched =
                    delivery(s, id)?.filter(|d| d.is_current() && d.updated_ms == ms && fits(d));
                let matched = match matched {
                    Some(d) if listed_earlier(d.message_id, &fits)? => None,
                    other => other.map(|d| d.message_id),
                };
                if !take(matched, (ms, id), &mut out)? {
                    break;
                }
            }
        }
        Scan::Sender(sender) => {
            for entry in lists::newest_first(s.tree(LISTS), &sender_list(sender)) {
                let (ms, id) = entry?;
                if ms < since {
                    break;
                }
                if ms <= until
                    && before.is_none_or(|b| (ms, id) < b)
                    && !take(Some(id), (ms, id), &mut out)?
                {
                    break;
                }
            }
        }
        Scan::Received => {
            let from = keys::min_id_at(since);
            // Ids are time-ordered: until and after bound the scan its.
            let mut upper = vec![0xffu8; 17];
            if let Some(u) = q.until_ms {
                upper = keys::min_id_at(u.saturating_add(1)).as_bytes().to_vec();
            }
            if let Some(After::Message(a) | After::At(_, a)) = q.after {
                if a.as_bytes().as_slice() < upper.as_slice() {
                    upper = a.as_bytes().to_vec();
                }
            }
            for kv in s
                .tree(MESSAGES)
                .range(from.as_bytes().to_vec()..upper)
                .rev()
            {
                let (k, _) = kv?;
                if let Ok(id) = Uuid::from_slice(&k) {
                    if !take(Some(id), (keys::id_ms(&id), id), &mut out)? {
                        break;
                    }
                }
            }
        }
    }
    Ok(ListPage {
        ids: out,
        total: total as u64,
        total_is_lower_bound: total >= cap || out_of_time,
        positions,
    })
}

/// A state index key's time of change and delivery id.
fn state_key_place(k: &[u8]) -> Result<(u64, Uuid), StoreError> {
    let ms = k
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes);
    match (ms, keys::trailing_id(k)) {
        (Some(ms), Some(id)) => Ok((ms, id)),
        _ => Err(StoreError::Corrupt("state index key".into())),
    }
}

pub(super) fn deliveries_in_state(
    s: &SledStore,
    state: DeliveryState,
    before_ms: u64,
    limit: usize,
) -> Result<Vec<Uuid>, StoreError> {
    let from = keys::state_prefix(state);
    let end = keys::state_prefix_from(state, before_ms);
    let mut out = Vec::new();
    for kv in s.tree(BY_STATE).range(from..end) {
        if out.len() >= limit {
            break;
        }
        let (k, _) = kv?;
        if let Some(id) = keys::trailing_id(&k) {
            out.push(id);
        }
    }
    Ok(out)
}

pub(super) fn messages_since(
    s: &SledStore,
    since_ms: u64,
    f: &mut dyn FnMut(MessageRecord, Vec<DeliveryRecord>) -> bool,
) -> Result<(), StoreError> {
    let from = keys::min_id_at(since_ms);
    let tree = s.tree(MESSAGES);
    for kv in tree.range(from.as_bytes().to_vec()..) {
        let (k, v) = kv?;
        // sled applies its cache bound to a page only once the page's shard (of 256) has
        // queued 64 accesses, and a scan touches each page about once: a long read then keeps
        // up to 64 pages per shard resident beyond the bound, about half of what it read
        // (180 MB for a week of a million-message store). Reading each record again (from
        // memory: microseconds) fills the queues sooner, so the bound holds during the read.
        for _ in 0..SCAN_TOUCHES {
            tree.get(&k)?;
        }
        let entry = Entry::decode(&v)?;
        let message: MessageRecord = dec(&entry.message, "message")?;
        let deliveries = entry
            .records
            .iter()
            .map(|(_, r)| dec(r, "delivery"))
            .collect::<Result<Vec<DeliveryRecord>, _>>()?;
        if !f(message, deliveries) {
            break;
        }
    }
    Ok(())
}

pub(super) fn count_by_state(s: &SledStore) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
    DeliveryState::ALL
        .into_iter()
        .map(|state| Ok((state, read_count(s.tree(COUNTS).get([state as u8])?))))
        .collect()
}

pub(super) fn message_count(s: &SledStore) -> Result<u64, StoreError> {
    Ok(read_count(s.tree(COUNTS).get(MESSAGE_COUNT)?))
}

pub(super) fn unmatched_acks(s: &SledStore, limit: usize) -> Result<Vec<UnmatchedAck>, StoreError> {
    s.unmatched
        .iter()
        .rev()
        .take(limit)
        .map(|kv| {
            let (_, v) = kv?;
            dec(&v, "unmatched ack")
        })
        .collect()
}
