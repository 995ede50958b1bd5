//! The store's transactions: submitting a message, applying a change to a delivery, replaying
//! one, recording audit events and purging payloads. Each is one sled transaction over every
//! tree, so a change, its index entries, its audit event and the work it causes are written
//! together or not at all.

use super::query;
use super::schema::*;
use super::SledStore;
use crate::bus::embedded;
use crate::store::entry::Entry;
use crate::store::{keys, lists};
use crate::store::{
    Change, Enqueue, NewMessage, Replay, StoreError, Submitted, UnmatchedAck, ORPHAN_AFTER_MS,
};
use crate::track::{
    derived_message, now_ms, transition, AuditEvent, DeliveryRecord, DeliveryState,
};
use uuid::Uuid;

/// A delivery, read from its message's record.
fn tx_delivery(t: &Tx, id: Uuid) -> TxResult<Option<DeliveryRecord>> {
    if let Some(message) = derived_message(id) {
        if let Some(d) = kept_in(t[MESSAGES].get(message.as_bytes())?, id).or_else(abort)? {
            return Ok(Some(d));
        }
    }
    let Some(message) = lists::tx_get(&t[BUCKETS], HOME_MAP, id.as_bytes())? else {
        return Ok(None);
    };
    kept_in(t[MESSAGES].get(message.as_bytes())?, id).or_else(abort)
}

/// Notes which message keeps the delivery `id`, unless its id says so (see
/// `track::delivery_id`).
fn put_home(t: &Tx, id: Uuid, message: Uuid) -> TxResult<()> {
    if derived_message(id) != Some(message) {
        lists::put(&t[BUCKETS], HOME_MAP, id.as_bytes(), message)?;
    }
    Ok(())
}

/// Records a delivery in its message's record, and indexes it.
fn put_delivery(t: &Tx, d: &DeliveryRecord) -> TxResult<()> {
    let key = d.message_id.as_bytes();
    let Some(v) = t[MESSAGES].get(key)? else {
        return abort(StoreError::Corrupt(format!(
            "no record of message {}",
            d.message_id
        )));
    };
    let mut entry = Entry::decode(&v).or_else(abort)?;
    entry.set_record(d.id, enc(d));
    t[MESSAGES].insert(key.as_slice(), entry.encode())?;
    index_delivery(t, d)
}

/// Indexes a current delivery by state (the entry's value names its message and recipient, so
/// listings need not read the delivery) and appends it to its recipient's list, where the
/// entry is current while the delivery's `updated_ms` still matches it.
fn index_delivery(t: &Tx, d: &DeliveryRecord) -> TxResult<()> {
    if d.is_current() {
        let value = [d.message_id.as_bytes(), d.recipient_ods.as_bytes()].concat();
        if t[BY_STATE].insert(keys::by_state(d), value)?.is_none() {
            add_count(t, d.state, 1)?;
        }
        let list = recipient_list(&d.recipient_ods);
        lists::append(&t[LISTS], &list, d.updated_ms, d.id)?;
    }
    Ok(())
}

fn unindex_delivery(t: &Tx, d: &DeliveryRecord) -> TxResult<()> {
    if t[BY_STATE].remove(keys::by_state(d))?.is_some() {
        add_count(t, d.state, -1)?;
    }
    Ok(())
}

/// Keeps the number of current deliveries in each state, so stats need no scan.
fn add_count(t: &Tx, state: DeliveryState, by: i64) -> TxResult<()> {
    let key = [state as u8];
    let n = read_count(t[COUNTS].get(key)?).saturating_add_signed(by);
    t[COUNTS].insert(&key, &n.to_be_bytes())?;
    Ok(())
}

/// Appends to the message's timeline, the tail of its record (see `entry`). Events of a
/// message with no record go to the audit tree.
fn put_audit(t: &Tx, e: &AuditEvent) -> TxResult<()> {
    let key = e.message_id.as_bytes();
    let (tree, mut record) = match t[MESSAGES].get(key)? {
        Some(v) => (MESSAGES, v.to_vec()),
        None => (
            AUDIT,
            t[AUDIT].get(key)?.map(|v| v.to_vec()).unwrap_or_default(),
        ),
    };
    push_event(&mut record, e);
    t[tree].insert(key.as_slice(), record)?;
    Ok(())
}

fn put_enqueue(t: &Tx, e: &Enqueue) -> TxResult<()> {
    embedded::enqueue_in(&t[QUEUE], &e.queue, &e.body, e.due_ms)?;
    Ok(())
}

/// A submission made ready outside the transaction: its dedupe key and encoded record.
struct Prepared {
    new: NewMessage,
    dedupe: Vec<u8>,
    entry: Vec<u8>,
}

fn submit_tx(t: &Tx, p: &Prepared) -> TxResult<Submitted> {
    let (new, m) = (&p.new, &p.new.message);
    if let Some(id) = lists::tx_get(&t[BUCKETS], DEDUPE_MAP, &p.dedupe)? {
        return Ok(Submitted::Duplicate(id));
    }
    lists::put(&t[BUCKETS], DEDUPE_MAP, &p.dedupe, m.id)?;
    t[MESSAGES].insert(m.id.as_bytes().as_slice(), p.entry.as_slice())?;
    let messages = read_count(t[COUNTS].get(MESSAGE_COUNT)?) + 1;
    t[COUNTS].insert(MESSAGE_COUNT, &messages.to_be_bytes())?;
    lists::append(&t[LISTS], &sender_list(&m.sender_ods), m.received_ms, m.id)?;
    for d in &new.deliveries {
        put_home(t, d.id, m.id)?;
        index_delivery(t, d)?;
    }
    for e in new.audit.iter().filter(|e| e.message_id != m.id) {
        put_audit(t, e)?;
    }
    for e in &new.enqueue {
        put_enqueue(t, e)?;
    }
    Ok(Submitted::Created(m.id))
}

pub(super) async fn submit(s: &SledStore, new: NewMessage) -> Result<Submitted, StoreError> {
    let m = &new.message;
    let queues = queue_names(&new.enqueue);
    // The payload is on disk before its message is recorded (see `payload_log`).
    let (at, written) = s
        .log
        .append(&m.id, &new.payload)
        .map_err(|e| StoreError::Engine(format!("writing the payload of {}: {e}", m.id)))?;
    if let Err(e) = s.files.sync(written).await {
        let _ = s.log.release(at);
        return Err(StoreError::Engine(format!(
            "syncing the payload of {}: {e}",
            m.id
        )));
    }
    let mut entry = Entry {
        records: new.deliveries.iter().map(|d| (d.id, enc(d))).collect(),
        message: enc(m),
        payload: Some(at),
        ..Entry::default()
    };
    for e in new.audit.iter().filter(|e| e.message_id == m.id) {
        push_event(&mut entry.timeline, e);
    }
    let p = Prepared {
        dedupe: keys::dedupe(&m.sender_ods, &m.local_id),
        entry: entry.encode(),
        new: NewMessage {
            payload: Vec::new(),
            ..new
        },
    };
    let outcome = s.batch.run(move |t| submit_tx(t, &p)).await;
    match &outcome {
        Ok(Submitted::Created(id)) => s.after_commit(*id, queues),
        // Nothing recorded: the space of the payload written for it goes too.
        Ok(Submitted::Duplicate(_)) | Err(_) => {
            let _ = s.log.release(at);
        }
    }
    outcome
}

fn queue_names<'a>(e: impl IntoIterator<Item = &'a Enqueue>) -> Vec<String> {
    e.into_iter().map(|e| e.queue.clone()).collect()
}

fn apply_tx(t: &Tx, delivery: Uuid, change: &Change) -> TxResult<DeliveryRecord> {
    let Some(old) = tx_delivery(t, delivery)? else {
        return abort(StoreError::NoSuchDelivery(delivery));
    };
    let to = match transition(old.state, change.event) {
        Ok(to) => to,
        Err(e) => return abort(e.into()),
    };
    let now = now_ms().max(old.updated_ms);
    let mut d = old.clone();
    d.state = to;
    d.updated_ms = now;
    if change.count_attempt {
        d.attempts += 1;
    }
    if let Some(err) = &change.error {
        d.last_error = Some(err.clone());
    }
    if let Some((code, reason)) = &change.ack {
        d.ack_code = Some(code.clone());
        d.ack_reason = Some(reason.clone());
    }
    d.next_attempt_ms = change.next_attempt_ms;
    if to == DeliveryState::Sent {
        d.sent_ms = Some(now);
    }
    if let Some(tid) = &change.transport_id {
        d.transport_id = Some(tid.clone());
        // A transport that names what it carries by the delivery's own id (a drop file)
        // needs no map entry: the id finds the delivery (see `delivery_by_transport`).
        if !names_itself(tid, d.id) {
            lists::put(&t[BUCKETS], TRANSPORT_MAP, tid.as_bytes(), d.id)?;
        }
    }
    if old.is_current() {
        unindex_delivery(t, &old)?;
    }
    put_delivery(t, &d)?;
    put_audit(
        t,
        &AuditEvent {
            at_ms: now,
            message_id: d.message_id,
            delivery_id: Some(d.id),
            event: change.event.as_str().to_string(),
            from: Some(old.state),
            to: Some(to),
            actor: change.actor.clone(),
            reason: change.reason.clone(),
        },
    )?;
    if let Some(e) = &change.enqueue {
        put_enqueue(t, e)?;
    }
    Ok(d)
}

pub(super) fn apply(
    s: &SledStore,
    delivery: Uuid,
    change: Change,
) -> Result<DeliveryRecord, StoreError> {
    let updated = s.run(|t| apply_tx(t, delivery, &change))?;
    s.after_commit(updated.message_id, queue_names(&change.enqueue));
    Ok(updated)
}

pub(super) async fn apply_batched(
    s: &SledStore,
    delivery: Uuid,
    change: Change,
) -> Result<DeliveryRecord, StoreError> {
    let queues = queue_names(&change.enqueue);
    let updated = s.batch.run(move |t| apply_tx(t, delivery, &change)).await?;
    s.after_commit(updated.message_id, queues);
    Ok(updated)
}

pub(super) fn replay(s: &SledStore, r: Replay) -> Result<DeliveryRecord, StoreError> {
    let new = s.run(|t| {
        let Some(mut orig) = tx_delivery(t, r.original)? else {
            return abort(StoreError::NoSuchDelivery(r.original));
        };
        if let Some(by) = orig.superseded_by {
            return abort(StoreError::AlreadyReplayed(orig.id, by));
        }
        // Checked here, inside the transaction: an ack may have landed since the caller
        // looked.
        if !orig.state.is_replayable() {
            return abort(StoreError::NotReplayable(orig.id, orig.state));
        }
        let now = now_ms();
        unindex_delivery(t, &orig)?;
        orig.superseded_by = Some(r.new.id);
        put_delivery(t, &orig)?;
        let mut new = r.new.clone();
        new.replay_of = Some(orig.id);
        new.created_ms = now;
        new.updated_ms = now;
        put_home(t, new.id, new.message_id)?;
        put_delivery(t, &new)?;
        put_audit(
            t,
            &AuditEvent {
                at_ms: now,
                message_id: orig.message_id,
                delivery_id: Some(orig.id),
                event: "replayed".into(),
                from: Some(orig.state),
                to: None,
                actor: r.actor.clone(),
                reason: format!("replayed as delivery {}: {}", new.id, r.reason),
            },
        )?;
        put_audit(
            t,
            &AuditEvent {
                at_ms: now,
                message_id: new.message_id,
                delivery_id: Some(new.id),
                event: "created".into(),
                from: None,
                to: Some(new.state),
                actor: r.actor.clone(),
                reason: if r.routing.is_empty() {
                    format!("replay of delivery {}", orig.id)
                } else {
                    format!("replay of delivery {}; {}", orig.id, r.routing)
                },
            },
        )?;
        if let Some(e) = &r.enqueue {
            put_enqueue(t, e)?;
        }
        Ok(new)
    })?;
    s.after_commit(new.message_id, r.enqueue.iter().map(|e| e.queue.clone()));
    Ok(new)
}

pub(super) fn audit(s: &SledStore, event: AuditEvent) -> Result<(), StoreError> {
    s.run(|t| put_audit(t, &event))?;
    let _ = s.changes.send(event.message_id);
    Ok(())
}

pub(super) fn purge_payload(
    s: &SledStore,
    message: Uuid,
    final_deliveries: &[DeliveryRecord],
    event: AuditEvent,
) -> Result<Option<u64>, StoreError> {
    let file = |e: std::io::Error| StoreError::Engine(format!("payload of {message}: {e}"));
    if query::message(s, message)?.is_none() {
        // An orphan: written for a submission that was never recorded. Removed once it is
        // old enough that no submission can still be recording it.
        let orphaned = keys::id_ms(&message) + ORPHAN_AFTER_MS < crate::track::now_ms();
        return match orphaned {
            true => s.payloads.remove(&message).map_err(file).map(|_| None),
            false => Ok(None),
        };
    }
    // A payload kept as a file of its own (by an earlier release) is sized from the file.
    let on_file = match query::payload_at(s, message)? {
        Some(_) => None,
        None => s.payloads.size(&message).map_err(file)?,
    };
    let freed = s.run(|t| {
        for d in final_deliveries {
            if tx_delivery(t, d.id)?.as_ref() != Some(d) {
                return abort(StoreError::Busy(d.id));
            }
        }
        // In the payload log: the record stops pointing at it, in the same change.
        let logged = match t[MESSAGES].get(message.as_bytes())? {
            Some(v) => {
                let mut entry = Entry::decode(&v).or_else(abort)?;
                let at = entry.payload.take();
                if at.is_some() {
                    t[MESSAGES].insert(message.as_bytes(), entry.encode())?;
                }
                at
            }
            None => None,
        };
        let Some(len) = logged.map(|at| at.len).or(on_file) else {
            return Ok(None);
        };
        put_audit(t, &event)?;
        Ok(Some((len, logged)))
    })?;
    let Some((len, logged)) = freed else {
        return Ok(None);
    };
    if let Some(at) = logged {
        s.purged
            .lock()
            .expect("purged payloads")
            .insert(message, at);
    }
    let _ = s.changes.send(message);
    Ok(Some(len))
}

pub(super) fn release_payload(s: &SledStore, message: Uuid) -> Result<(), StoreError> {
    let err = |e| StoreError::Engine(format!("removing the payload of {message}: {e}"));
    let logged = s.purged.lock().expect("purged payloads").remove(&message);
    match logged {
        Some(at) => s.log.release(at).map_err(err),
        None => s.payloads.remove(&message).map(|_| ()).map_err(err),
    }
}

pub(super) fn remove_segment(s: &SledStore, segment: u64) -> Result<Option<u64>, StoreError> {
    s.log
        .remove(segment)
        .map_err(|e| StoreError::Engine(format!("removing payload segment {segment}: {e}")))
}

pub(super) fn record_unmatched_ack(s: &SledStore, ack: UnmatchedAck) -> Result<(), StoreError> {
    let id = s.db.generate_id()?;
    s.unmatched.insert(id.to_be_bytes(), enc(&ack))?;
    Ok(())
}
