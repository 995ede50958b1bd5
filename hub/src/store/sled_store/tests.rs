//! The sled engine's own tests: the conformance suite, and what only this engine promises
//! (where records are kept, counts, payload files, listings across list chunks).

use super::schema::*;
use super::SledStore;
use crate::store::conformance::{self, StoreFactory};
use crate::store::entry::Entry;
use crate::store::{keys, lists};
use crate::store::{Change, Enqueue, ListQuery, Replay, Store, StoreError, Submitted};
use crate::track::{now_ms, AuditEvent, DeliveryState};
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

struct Factory(PathBuf);

impl StoreFactory for Factory {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
        Box::pin(async move { Arc::new(open_in(&self.0).await) as Arc<dyn Store> })
    }
}

/// Opens the store kept in `dir` (database and payloads), waiting out a dropped handle's
/// background tasks, which may still hold the file lock briefly.
pub(super) async fn open_in(dir: &std::path::Path) -> SledStore {
    for _ in 0..100 {
        match SledStore::open(&dir.join("db"), &dir.join("payloads"), 8) {
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("cannot reopen {}", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(&Factory(dir.path().to_path_buf())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_whose_ids_name_their_message_cost_no_map_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_in(dir.path()).await;
    let homed = |id: Uuid| lists::get(s.tree(BUCKETS), HOME_MAP, id.as_bytes()).unwrap();
    let derived = conformance::sample("RX1", "HOME-1", &["A81001", "A81002"]);
    let mut own = conformance::sample("RX1", "HOME-2", &["A81001", "A81002"]);
    for d in &mut own.deliveries {
        d.id = crate::track::new_id();
    }
    for new in [&derived, &own] {
        s.submit(new.clone()).await.unwrap();
    }
    for d in &derived.deliveries {
        assert_eq!(homed(d.id), None);
    }
    for d in &own.deliveries {
        assert_eq!(homed(d.id), Some(own.message.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_counts_follow_every_change_and_survive_reopen() {
    use crate::track::DeliveryEvent;
    let dir = tempfile::tempdir().unwrap();
    let scanned = |s: &SledStore| -> Vec<(DeliveryState, u64)> {
        DeliveryState::ALL
            .into_iter()
            .map(|st| {
                let n = s.tree(BY_STATE).scan_prefix(keys::state_prefix(st)).count();
                (st, n as u64)
            })
            .collect()
    };
    let s = open_in(dir.path()).await;
    let mut first = Vec::new();
    for i in 0..3 {
        let new = conformance::sample("RX1", &format!("C{i}"), &["A81001", "A81002"]);
        first.push(new.deliveries[0].clone());
        s.submit(new).await.unwrap();
    }
    let step = |d: Uuid, e: DeliveryEvent| s.apply(d, Change::new(e, "t", "")).unwrap();
    step(first[0].id, DeliveryEvent::GaveUp);
    step(first[1].id, DeliveryEvent::Cancel);
    let mut again = first[0].clone();
    again.id = crate::track::new_id();
    s.replay(Replay {
        original: first[0].id,
        new: again,
        actor: "t".into(),
        reason: "t".into(),
        routing: String::new(),
        enqueue: None,
    })
    .unwrap();
    let counts = s.count_by_state().unwrap();
    assert_eq!(counts, scanned(&s), "counts match the index");
    assert_eq!(s.message_count().unwrap(), 3);
    let n = |st| counts.iter().find(|(x, _)| *x == st).unwrap().1;
    assert_eq!(
        (
            n(DeliveryState::Pending),
            n(DeliveryState::Cancelled),
            n(DeliveryState::Failed)
        ),
        (5, 1, 0),
        "the replay took the failed delivery's place"
    );
    s.flush().await.unwrap();
    drop(s);
    let s = open_in(dir.path()).await;
    assert_eq!(s.count_by_state().unwrap(), counts);
    assert_eq!(s.message_count().unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_and_duplicate_payload_files_do_not_stay() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_in(dir.path()).await;
    let old = keys::min_id_at(now_ms() - 3_600_000);
    let young = crate::track::new_id();
    s.payloads.write(&old, b"o").unwrap();
    s.payloads.write(&young, b"y").unwrap();
    let event = |id| AuditEvent {
        at_ms: now_ms(),
        message_id: id,
        delivery_id: None,
        event: "payload-purged".into(),
        from: None,
        to: None,
        actor: "t".into(),
        reason: "orphaned payload".into(),
    };
    assert_eq!(s.purge_payload(old, &[], event(old)).unwrap(), None);
    assert_eq!(s.purge_payload(young, &[], event(young)).unwrap(), None);
    assert_eq!(s.payload(old).unwrap(), None, "an old orphan is removed");
    assert!(
        s.payload(young).unwrap().is_some(),
        "a submission may still be recording a young one"
    );
    assert!(
        s.audit_of(old).unwrap().is_empty(),
        "not a message: no timeline"
    );
    // A duplicate submission leaves no file behind.
    s.submit(conformance::sample("RX1", "DUP", &["A81001"]))
        .await
        .unwrap();
    let dup = conformance::sample("RX1", "DUP", &["A81001"]);
    let dup_id = dup.message.id;
    assert!(matches!(
        s.submit(dup).await.unwrap(),
        Submitted::Duplicate(_)
    ));
    assert_eq!(s.payload(dup_id).unwrap(), None);
    let first = s.find_by_local_id("RX1", "DUP").unwrap().unwrap();
    let at = super::query::payload_at(&s, first).unwrap().unwrap();
    let listed = s.log.payloads(at.segment).unwrap();
    let (_, dup_at) = listed.iter().find(|(id, _)| *id == dup_id).unwrap();
    assert_eq!(
        s.log.read(*dup_at).unwrap(),
        Some(vec![0; dup_at.len as usize]),
        "the duplicate's bytes are given back"
    );
    // A purge records itself first; the bytes go when released, after a flush.
    let new = conformance::sample("RX1", "PURGE", &["A81001"]);
    let (mid, deliveries) = (new.message.id, new.deliveries.clone());
    let size = new.payload.len() as u64;
    s.submit(new).await.unwrap();
    assert_eq!(s.payload_size(mid).unwrap(), Some(size));
    assert_eq!(
        s.purge_payload(mid, &deliveries, event(mid)).unwrap(),
        Some(size)
    );
    assert_eq!(
        s.payload(mid).unwrap(),
        None,
        "the record no longer holds it"
    );
    assert_eq!(s.payload_size(mid).unwrap(), None);
    assert!(s
        .audit_of(mid)
        .unwrap()
        .iter()
        .any(|e| e.event == "payload-purged"));
    let at = s.purged.lock().unwrap()[&mid];
    assert_eq!(
        s.log.read(at).unwrap().as_deref(),
        Some(&b"document PURGE"[..]),
        "its bytes stay until released"
    );
    s.release_payload(mid).unwrap();
    assert!(s.purged.lock().unwrap().is_empty());
    assert_eq!(s.log.read(at).unwrap(), Some(vec![0; size as usize]));
}

/// A message and its deliveries are one record: changes and replays rewrite it, and no
/// delivery has a record of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_kept_in_their_messages_record() {
    use crate::track::DeliveryEvent;
    let dir = tempfile::tempdir().unwrap();
    let s = open_in(dir.path()).await;
    let new = conformance::sample("RX1", "ONE", &["A81001", "A81002"]);
    let m = new.message.id;
    let (a, b) = (new.deliveries[0].clone(), new.deliveries[1].clone());
    s.submit(new).await.unwrap();
    s.apply(a.id, Change::new(DeliveryEvent::TransportAccepted, "t", ""))
        .unwrap();
    s.apply(a.id, Change::new(DeliveryEvent::ReceiverReject, "t", ""))
        .unwrap();
    let mut again = a.clone();
    again.id = crate::track::new_id();
    s.replay(Replay {
        original: a.id,
        new: again.clone(),
        actor: "t".into(),
        reason: "t".into(),
        routing: String::new(),
        enqueue: None,
    })
    .unwrap();
    assert_eq!(s.tree(MESSAGES).len(), 1);
    let record = Entry::decode(&s.tree(MESSAGES).get(m.as_bytes()).unwrap().unwrap()).unwrap();
    let kept: Vec<Uuid> = record.records.iter().map(|(id, _)| *id).collect();
    assert_eq!(kept, vec![a.id, b.id, again.id]);
    let now = s.delivery(a.id).unwrap().unwrap();
    assert_eq!(
        (now.state, now.superseded_by),
        (DeliveryState::Rejected, Some(again.id))
    );
    assert_eq!(s.delivery(b.id).unwrap().unwrap().state, b.state);
    assert_eq!(s.delivery(again.id).unwrap().unwrap().replay_of, Some(a.id));
    let all: Vec<Uuid> = s.deliveries_of(m).unwrap().iter().map(|d| d.id).collect();
    assert_eq!(all, kept);
    assert_eq!(s.delivery(crate::track::new_id()).unwrap(), None);
    assert!(matches!(
        s.apply(
            crate::track::new_id(),
            Change::new(DeliveryEvent::TransportAccepted, "t", "")
        ),
        Err(StoreError::NoSuchDelivery(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_and_recipient_listings_are_newest_first_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_in(dir.path()).await;
    // Recorded in an order other than their times' (as when clocks step back or changes
    // commit in another order than they were stamped), over several list chunks.
    let n = 5 * lists::CHUNK as u64;
    let base = now_ms() - 3_600_000;
    let mut ids = Vec::new();
    for i in 0..n {
        let at = base + (i * 37 % n) * 1000;
        let mut new = conformance::sample("RX1", &format!("ORDER-{i}"), &["A81001"]);
        new.message.received_ms = at;
        for d in &mut new.deliveries {
            d.updated_ms = at;
            d.created_ms = at;
        }
        ids.push((at, new.message.id));
        s.submit(new).await.unwrap();
    }
    ids.sort_by(|a, b| b.cmp(a));
    let since = base + n / 3 * 1000;
    let want: Vec<Uuid> = ids
        .iter()
        .filter(|(at, _)| *at >= since)
        .map(|x| x.1)
        .collect();
    let pending = conformance::sample("RX1", "-", &["A81001"]).deliveries[0].state;
    for q in [
        ListQuery {
            recipient_ods: Some("A81001".into()),
            ..Default::default()
        },
        ListQuery {
            sender_ods: Some("RX1".into()),
            ..Default::default()
        },
        ListQuery {
            recipient_ods: Some("A81001".into()),
            state: Some(pending),
            ..Default::default()
        },
    ] {
        let all = ListQuery {
            limit: 1000,
            ..q.clone()
        };
        let got = s.list(&all).unwrap().0;
        assert_eq!(got, ids.iter().map(|x| x.1).collect::<Vec<_>>(), "{q:?}");
        let recent = ListQuery {
            since_ms: Some(since),
            limit: 1000,
            ..q.clone()
        };
        assert_eq!(s.list(&recent).unwrap().0, want, "{q:?} since");
        let page = ListQuery {
            since_ms: Some(since),
            limit: 5,
            ..q.clone()
        };
        let page = s.list_page(&page, 10_000).unwrap();
        assert_eq!(page.ids, want[..5], "{q:?} first page");
        assert_eq!(page.total, want.len() as u64, "{q:?} total");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_enqueues_work_in_the_same_transaction() {
    use crate::bus::{embedded::EmbeddedBus, Bus};
    let payloads = tempfile::tempdir().unwrap();
    let s = SledStore::temporary(payloads.path()).unwrap();
    let bus = EmbeddedBus::open(s.db(), s.signals(), s.group_commit(), 5).unwrap();
    let mut new = conformance::sample("RX1", "L1", &["A81001"]);
    new.enqueue.push(Enqueue {
        queue: "work".into(),
        body: b"d1".to_vec(),
        due_ms: 0,
    });
    let waiter = tokio::spawn(async move {
        let item = bus.receive("work").await.unwrap();
        item.body
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.submit(new.clone()).await.unwrap();
    assert_eq!(waiter.await.unwrap(), b"d1", "a waiting consumer is woken");
    // A duplicate enqueues nothing.
    let bus = EmbeddedBus::open(s.db(), s.signals(), s.group_commit(), 5).unwrap();
    let mut dup = conformance::sample("RX1", "L1", &["A81001"]);
    dup.enqueue = new.enqueue.clone();
    s.submit(dup).await.unwrap();
    assert_eq!(
        bus.depth("work").await.unwrap(),
        1,
        "only the in-flight original"
    );
}

/// Payloads go to the payload log; a segment a process wrote takes no more once the store is
/// opened again, and can then be removed whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_segments_are_sealed_by_a_restart_and_removed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_in(dir.path()).await;
    let new = conformance::sample("RX1", "SEG", &["A81001"]);
    let (mid, payload) = (new.message.id, new.payload.clone());
    s.submit(new).await.unwrap();
    let orphan = keys::min_id_at(now_ms() - 3_600_000);
    s.log.append(&orphan, b"never recorded").unwrap();
    let writing = s.payload_segments(u64::MAX).unwrap();
    assert_eq!(writing.len(), 1);
    assert_eq!(s.segment_payloads(writing[0]).unwrap(), vec![mid, orphan]);
    assert_eq!(
        s.remove_segment(writing[0]).unwrap(),
        None,
        "the segment being written stays"
    );
    s.flush().await.unwrap();
    drop(s);
    let s = open_in(dir.path()).await;
    let sealed = s.payload_segments(u64::MAX).unwrap();
    assert_eq!(sealed, writing);
    assert!(
        s.payload_segments(sealed[0]).unwrap().is_empty(),
        "started before"
    );
    assert_eq!(s.payload(mid).unwrap(), Some(payload.clone()));
    assert_eq!(s.payload_size(mid).unwrap(), Some(payload.len() as u64));
    assert!(s.remove_segment(sealed[0]).unwrap().unwrap() > 0);
    assert!(s.payload_segments(u64::MAX).unwrap().is_empty());
    assert_eq!(s.payload(mid).unwrap(), None);
}

/// A message recorded by an earlier release has its payload in a file of its own: it is read,
/// sized and purged from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_kept_as_files_by_earlier_releases_are_read_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_in(dir.path()).await;
    let new = conformance::sample("RX1", "OLD", &["A81001"]);
    let (mid, deliveries) = (new.message.id, new.deliveries.clone());
    s.submit(new).await.unwrap();
    // As an earlier release wrote it: no place in the payload log, a file instead.
    let key = mid.as_bytes();
    let mut entry = Entry::decode(&s.tree(MESSAGES).get(key).unwrap().unwrap()).unwrap();
    entry.payload = None;
    s.tree(MESSAGES).insert(key, entry.encode()).unwrap();
    s.payloads.write(&mid, b"kept as a file").unwrap();
    assert_eq!(
        s.payload(mid).unwrap().as_deref(),
        Some(&b"kept as a file"[..])
    );
    assert_eq!(s.payload_size(mid).unwrap(), Some(14));
    assert_eq!(s.payload_candidates(u64::MAX, None, 10).unwrap(), vec![mid]);
    let event = AuditEvent {
        at_ms: now_ms(),
        message_id: mid,
        delivery_id: None,
        event: "payload-purged".into(),
        from: None,
        to: None,
        actor: "t".into(),
        reason: "retention".into(),
    };
    assert_eq!(s.purge_payload(mid, &deliveries, event).unwrap(), Some(14));
    s.release_payload(mid).unwrap();
    assert_eq!(s.payload(mid).unwrap(), None);
    assert!(s.payload_candidates(u64::MAX, None, 10).unwrap().is_empty());
}
