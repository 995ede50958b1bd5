//! The conformance suite every [`Store`] engine must pass, written against the trait only.
//! An engine's tests provide a [`StoreFactory`] whose `open` opens (after the previous handle
//! is dropped: reopens) the same database, and call [`run_all`].

pub use super::fixtures::sample;
use super::{Change, ListPage, ListQuery, Replay, Store, StoreError, Submitted, UnmatchedAck};
use crate::track::{new_id, now_ms, DeliveryEvent, DeliveryRecord, DeliveryState};
use futures::future::BoxFuture;
use std::sync::Arc;
use uuid::Uuid;

/// Opens the store under test; a second call after dropping the first handle is a restart.
pub trait StoreFactory: Sync {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>>;
}

fn step(s: &dyn Store, d: Uuid, e: DeliveryEvent) -> DeliveryRecord {
    s.apply(d, Change::new(e, "test", e.as_str()))
        .expect("valid transition")
}

/// Runs every case.
pub async fn run_all(f: &dyn StoreFactory) {
    submit_and_read_back(f).await;
    resubmission_is_a_duplicate(f).await;
    transitions_update_state_indexes_and_audit(f).await;
    invalid_transitions_change_nothing(f).await;
    concurrent_changes_keep_their_own_outcomes(f).await;
    replay_supersedes_without_editing_history(f).await;
    list_queries(f).await;
    pages_follow_the_listing_order(f).await;
    unmatched_acks_are_kept(f).await;
    transport_ids_find_their_delivery(f).await;
    deliveries_with_ids_of_their_own_are_found(f).await;
    messages_since_reads_a_window(f).await;
    flushed_writes_survive_reopen(f).await;
}

pub async fn messages_since_reads_a_window(f: &dyn StoreFactory) {
    let s = f.open().await;
    let before = now_ms();
    // Ids are time-ordered: what is submitted from now on is in the window.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let mut ids = Vec::new();
    for i in 0..3 {
        let new = sample("RX9", &format!("WINDOW-{i}"), &["A81001", "A81002"]);
        ids.push((new.message.id, new.deliveries[0].id));
        s.submit(new).await.unwrap();
    }
    step(&*s, ids[1].1, DeliveryEvent::TransportAccepted);
    let mut seen = Vec::new();
    s.messages_since(before, &mut |m, all| {
        if m.sender_ods == "RX9" {
            seen.push((m.id, all));
        }
        true
    })
    .unwrap();
    assert_eq!(
        seen.iter().map(|x| x.0).collect::<Vec<_>>(),
        ids.iter().map(|x| x.0).collect::<Vec<_>>(),
        "oldest first"
    );
    assert!(
        seen.iter().all(|(_, all)| all.len() == 2),
        "with every delivery"
    );
    assert_eq!(
        seen[1].1.iter().find(|d| d.id == ids[1].1).unwrap().state,
        DeliveryState::Sent
    );
    let mut n = 0;
    s.messages_since(before, &mut |_, _| {
        n += 1;
        false
    })
    .unwrap();
    assert_eq!(n, 1, "stops when told");
    let mut later = 0;
    s.messages_since(now_ms() + 60_000, &mut |_, _| {
        later += 1;
        true
    })
    .unwrap();
    assert_eq!(later, 0);
}

pub async fn transport_ids_find_their_delivery(f: &dyn StoreFactory) {
    let s = f.open().await;
    let new = sample("RX1", &new_id().to_string(), &["A81001", "A81002"]);
    let (a, b) = (new.deliveries[0].id, new.deliveries[1].id);
    s.submit(new).await.unwrap();
    let mut c = Change::new(DeliveryEvent::TransportAccepted, "test", "sent");
    c.transport_id = Some("20261125093000000001_ABCDEF".into());
    let d = s.apply(a, c).unwrap();
    assert_eq!(
        d.transport_id.as_deref(),
        Some("20261125093000000001_ABCDEF")
    );
    step(&*s, b, DeliveryEvent::TransportAccepted);
    assert_eq!(
        s.delivery_by_transport("20261125093000000001_ABCDEF")
            .unwrap(),
        Some(a)
    );
    assert_eq!(s.delivery(b).unwrap().unwrap().transport_id, None);
    assert_eq!(s.delivery_by_transport("unknown").unwrap(), None);
    // A delivery with no transport id is not found by its own id...
    assert_eq!(s.delivery_by_transport(&b.to_string()).unwrap(), None);
    // ...and one whose transport named it by its own id (a drop file) is.
    let new = sample("RX1", &new_id().to_string(), &["A81001"]);
    let own = new.deliveries[0].id;
    s.submit(new).await.unwrap();
    let mut c = Change::new(DeliveryEvent::TransportAccepted, "test", "sent");
    c.transport_id = Some(own.to_string());
    s.apply(own, c).unwrap();
    assert_eq!(
        s.delivery_by_transport(&own.to_string()).unwrap(),
        Some(own)
    );
    assert_eq!(
        s.delivery_by_transport(&own.to_string().to_uppercase())
            .unwrap(),
        None,
        "transport ids match exactly"
    );
}

/// Deliveries whose ids do not derive from their message's (ids minted elsewhere, or a
/// message's 256th delivery) are found, changed and listed like the others.
pub async fn deliveries_with_ids_of_their_own_are_found(f: &dyn StoreFactory) {
    let s = f.open().await;
    let mut new = sample("RX1", &new_id().to_string(), &["A81001", "A81002"]);
    let derived = new.deliveries[0].id;
    assert_eq!(crate::track::derived_message(derived), Some(new.message.id));
    let own = new_id();
    new.deliveries[1].id = own;
    s.submit(new.clone()).await.unwrap();
    for id in [derived, own] {
        assert_eq!(s.delivery(id).unwrap().unwrap().message_id, new.message.id);
        step(&*s, id, DeliveryEvent::TransportAccepted);
        assert_eq!(s.delivery(id).unwrap().unwrap().state, DeliveryState::Sent);
    }
    assert_eq!(s.deliveries_of(new.message.id).unwrap().len(), 2);
    // An id shaped like a derived one names no delivery its message does not keep.
    let mut stranger = *derived.as_bytes();
    stranger[13] = 200;
    assert_eq!(s.delivery(Uuid::from_bytes(stranger)).unwrap(), None);
}

pub async fn submit_and_read_back(f: &dyn StoreFactory) {
    let s = f.open().await;
    let new = sample("RX1", &new_id().to_string(), &["A81001", "A81002"]);
    let mut changes = s.changes();
    let id = new.message.id;
    assert_eq!(s.submit(new.clone()).await.unwrap(), Submitted::Created(id));
    s.flush().await.unwrap();
    assert_eq!(changes.recv().await.unwrap(), id, "a change is announced");
    assert_eq!(s.message(id).unwrap().unwrap(), new.message);
    assert_eq!(s.payload(id).unwrap().unwrap(), new.payload);
    let ds = s.deliveries_of(id).unwrap();
    assert_eq!(ds, new.deliveries);
    assert_eq!(s.delivery(ds[0].id).unwrap().unwrap(), ds[0]);
    assert_eq!(s.audit_of(id).unwrap(), new.audit);
    assert_eq!(
        s.find_by_local_id("RX1", &new.message.local_id).unwrap(),
        Some(id)
    );
    assert_eq!(s.message(new_id()).unwrap(), None);
}

pub async fn resubmission_is_a_duplicate(f: &dyn StoreFactory) {
    let s = f.open().await;
    let local = new_id().to_string();
    let first = sample("RX1", &local, &["A81001"]);
    let again = sample("RX1", &local, &["A81001"]);
    let other_sender = sample("R1K", &local, &["A81001"]);
    let id = first.message.id;
    assert_eq!(s.submit(first).await.unwrap(), Submitted::Created(id));
    assert_eq!(
        s.submit(again.clone()).await.unwrap(),
        Submitted::Duplicate(id)
    );
    assert_eq!(
        s.message(again.message.id).unwrap(),
        None,
        "nothing of the repeat is stored"
    );
    assert!(s.deliveries_of(again.message.id).unwrap().is_empty());
    assert!(s.delivery(again.deliveries[0].id).unwrap().is_none());
    let oid = other_sender.message.id;
    assert_eq!(
        s.submit(other_sender).await.unwrap(),
        Submitted::Created(oid),
        "local ids are per sender"
    );
}

pub async fn transitions_update_state_indexes_and_audit(f: &dyn StoreFactory) {
    let s = f.open().await;
    let ods = format!("T{}", &new_id().simple().to_string()[24..]).to_uppercase();
    let new = sample("RX1", &new_id().to_string(), &[&ods]);
    let (mid, did) = (new.message.id, new.deliveries[0].id);
    s.submit(new).await.unwrap();
    let q = |state| ListQuery {
        state: Some(state),
        recipient_ods: Some(ods.clone()),
        ..Default::default()
    };
    assert_eq!(s.list(&q(DeliveryState::Pending)).unwrap().0, vec![mid]);
    let mut c = Change::new(DeliveryEvent::RetryScheduled, "hub", "folder missing");
    c.count_attempt = true;
    c.error = Some("folder missing".into());
    c.next_attempt_ms = Some(now_ms() + 1000);
    let d = s.apply(did, c).unwrap();
    assert_eq!((d.state, d.attempts), (DeliveryState::Retrying, 1));
    assert_eq!(d.last_error.as_deref(), Some("folder missing"));
    assert!(
        s.list(&q(DeliveryState::Pending)).unwrap().0.is_empty(),
        "old index entry removed"
    );
    assert_eq!(s.list(&q(DeliveryState::Retrying)).unwrap().0, vec![mid]);
    let d = step(s.as_ref(), did, DeliveryEvent::TransportAccepted);
    assert!(d.sent_ms.is_some());
    assert_eq!(d.next_attempt_ms, None);
    let mut c = Change::new(DeliveryEvent::ReceiverReject, "ack-file", "rejected");
    c.ack = Some(("30002".into(), "Patient not known here".into()));
    let d = s.apply(did, c).unwrap();
    assert_eq!(d.state, DeliveryState::Rejected);
    assert_eq!(d.ack_code.as_deref(), Some("30002"));
    assert_eq!(s.list(&q(DeliveryState::Rejected)).unwrap().0, vec![mid]);
    let trail: Vec<_> = s
        .audit_of(mid)
        .unwrap()
        .into_iter()
        .filter_map(|e| e.to.map(|to| (e.from, to, e.actor)))
        .collect();
    assert_eq!(
        trail,
        vec![
            (
                Some(DeliveryState::Pending),
                DeliveryState::Retrying,
                "hub".to_string()
            ),
            (
                Some(DeliveryState::Retrying),
                DeliveryState::Sent,
                "test".to_string()
            ),
            (
                Some(DeliveryState::Sent),
                DeliveryState::Rejected,
                "ack-file".to_string()
            ),
        ],
        "every transition is audited, in order"
    );
    let counts = s.count_by_state().unwrap();
    assert!(counts
        .iter()
        .any(|(st, n)| *st == DeliveryState::Rejected && *n >= 1));
}

pub async fn invalid_transitions_change_nothing(f: &dyn StoreFactory) {
    let s = f.open().await;
    let new = sample("RX1", &new_id().to_string(), &["A81001"]);
    let (mid, did) = (new.message.id, new.deliveries[0].id);
    s.submit(new).await.unwrap();
    let before = (s.delivery(did).unwrap(), s.audit_of(mid).unwrap());
    match s.apply(did, Change::new(DeliveryEvent::BusinessAccept, "x", "")) {
        Err(StoreError::InvalidTransition(t)) => {
            assert_eq!(t.from, DeliveryState::Pending);
        }
        other => panic!("expected an invalid transition, got {other:?}"),
    }
    assert_eq!((s.delivery(did).unwrap(), s.audit_of(mid).unwrap()), before);
    assert!(matches!(
        s.apply(new_id(), Change::new(DeliveryEvent::Cancel, "x", "")),
        Err(StoreError::NoSuchDelivery(_))
    ));
}

/// Submissions and changes made at the same moment (which an engine may commit together)
/// each get the outcome they would have had alone: a duplicate is a duplicate, a refused
/// change changes nothing, and the refusal of one leaves the others in place.
pub async fn concurrent_changes_keep_their_own_outcomes(f: &dyn StoreFactory) {
    let s = f.open().await;
    let ods = format!("C{}", &new_id().simple().to_string()[24..]).to_uppercase();
    let local_ids: Vec<String> = (0..12).map(|_| new_id().to_string()).collect();
    // Each local id twice, at once: one is created, the other is its duplicate.
    let subs: Vec<_> = local_ids
        .iter()
        .chain(&local_ids)
        .map(|l| sample("RX1", l, &[&ods]))
        .collect();
    let outcomes = futures::future::join_all(subs.into_iter().map(|n| s.submit(n))).await;
    let mut created = std::collections::HashMap::new();
    for (i, o) in outcomes.iter().enumerate() {
        if let Ok(Submitted::Created(id)) = o {
            assert!(
                created.insert(&local_ids[i % 12], *id).is_none(),
                "a local id created twice"
            );
        }
    }
    assert_eq!(created.len(), 12, "{outcomes:?}");
    for (i, o) in outcomes.iter().enumerate() {
        let original = created[&local_ids[i % 12]];
        match o {
            Ok(Submitted::Created(id)) | Ok(Submitted::Duplicate(id)) => assert_eq!(*id, original),
            Err(e) => panic!("submission failed: {e}"),
        }
    }
    let sent_before = sent_count(s.as_ref());
    let deliveries: Vec<Uuid> = created
        .values()
        .map(|m| s.deliveries_of(*m).unwrap()[0].id)
        .collect();
    // Each delivery sent twice at once (the second is refused), and a delivery that does not
    // exist between them.
    let changes = deliveries.iter().flat_map(|d| [*d, new_id(), *d]).map(|d| {
        let mut c = Change::new(DeliveryEvent::TransportAccepted, "hub", "dropped");
        c.count_attempt = true;
        s.apply_batched(d, c)
    });
    let results = futures::future::join_all(changes).await;
    for (d, r) in deliveries.iter().zip(results.chunks(3)) {
        let sent: Vec<_> = r
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|rec| (rec.id, rec.state, rec.attempts))
            .collect();
        assert_eq!(sent, vec![(*d, DeliveryState::Sent, 1)], "{r:?}");
        assert!(matches!(r[1], Err(StoreError::NoSuchDelivery(_))), "{r:?}");
        assert_eq!(
            r.iter()
                .filter(|r| matches!(r, Err(StoreError::InvalidTransition(t)) if t.from == DeliveryState::Sent))
                .count(),
            1,
            "{r:?}"
        );
        let now = s.delivery(*d).unwrap().unwrap();
        assert_eq!((now.state, now.attempts), (DeliveryState::Sent, 1));
        let sent_events = s
            .audit_of(now.message_id)
            .unwrap()
            .into_iter()
            .filter(|e| e.to == Some(DeliveryState::Sent))
            .count();
        assert_eq!(sent_events, 1, "one audit event per change made");
    }
    assert_eq!(sent_count(s.as_ref()), sent_before + 12);
}

fn sent_count(s: &dyn Store) -> u64 {
    s.count_by_state()
        .unwrap()
        .into_iter()
        .find(|(st, _)| *st == DeliveryState::Sent)
        .map_or(0, |(_, n)| n)
}

pub async fn replay_supersedes_without_editing_history(f: &dyn StoreFactory) {
    let s = f.open().await;
    let new = sample("RX1", &new_id().to_string(), &["A81001"]);
    let (mid, did) = (new.message.id, new.deliveries[0].id);
    let template = new.deliveries[0].clone();
    s.submit(new).await.unwrap();
    let not_yet = s.replay(Replay {
        original: did,
        new: DeliveryRecord {
            id: new_id(),
            ..template.clone()
        },
        actor: "ops:test".into(),
        reason: String::new(),
        routing: String::new(),
        enqueue: None,
    });
    assert!(
        matches!(
            not_yet,
            Err(StoreError::NotReplayable(_, DeliveryState::Pending))
        ),
        "a pending delivery is not replayed: {not_yet:?}"
    );
    step(s.as_ref(), did, DeliveryEvent::GaveUp);
    let replacement = DeliveryRecord {
        id: new_id(),
        ..template
    };
    let r = s
        .replay(Replay {
            original: did,
            new: replacement.clone(),
            actor: "ops:test".into(),
            reason: "folder fixed".into(),
            routing: "A81001: matched a rule".into(),
            enqueue: None,
        })
        .unwrap();
    assert_eq!(r.replay_of, Some(did));
    assert_eq!(r.state, DeliveryState::Pending);
    let orig = s.delivery(did).unwrap().unwrap();
    assert_eq!(
        orig.state,
        DeliveryState::Failed,
        "the original keeps its outcome"
    );
    assert_eq!(orig.superseded_by, Some(replacement.id));
    let failed = s
        .list(&ListQuery {
            state: Some(DeliveryState::Failed),
            recipient_ods: Some("A81001".into()),
            ..Default::default()
        })
        .unwrap()
        .0;
    assert!(
        !failed.contains(&mid),
        "a replayed delivery no longer counts as failed"
    );
    assert_eq!(s.deliveries_of(mid).unwrap().len(), 2);
    let again = s.replay(Replay {
        original: did,
        new: DeliveryRecord {
            id: new_id(),
            ..replacement
        },
        actor: "ops:test".into(),
        reason: String::new(),
        routing: String::new(),
        enqueue: None,
    });
    assert!(matches!(again, Err(StoreError::AlreadyReplayed(_, _))));
    let events: Vec<_> = s
        .audit_of(mid)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(events.contains(&"replayed".to_string()), "{events:?}");
}

pub async fn list_queries(f: &dyn StoreFactory) {
    let s = f.open().await;
    let sender = format!("S{}", &new_id().simple().to_string()[24..]).to_uppercase();
    let ods = format!("R{}", &new_id().simple().to_string()[24..]).to_uppercase();
    let mut ids = Vec::new();
    for i in 0..5 {
        let new = sample(&sender, &format!("L{i}"), &[&ods]);
        ids.push((new.message.id, new.deliveries[0].id));
        s.submit(new).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let newest_first: Vec<Uuid> = ids.iter().rev().map(|(m, _)| *m).collect();
    let by_sender = s
        .list(&ListQuery {
            sender_ods: Some(sender.clone()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_sender, (newest_first.clone(), false));
    let limited = s
        .list(&ListQuery {
            sender_ods: Some(sender.clone()),
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited, (newest_first[..2].to_vec(), true));
    let q2 = ListQuery {
        sender_ods: Some(sender.clone()),
        limit: 2,
        ..Default::default()
    };
    let counted = s.list_page(&q2, 100).unwrap();
    assert_eq!(
        counted,
        ListPage {
            ids: newest_first[..2].to_vec(),
            total: 5,
            total_is_lower_bound: false,
            positions: counted.positions.clone(),
        },
        "the page and every match counted"
    );
    let capped = s.list_page(&q2, 4).unwrap();
    assert_eq!((capped.total, capped.total_is_lower_bound), (4, true));
    assert_eq!(capped.ids, newest_first[..2].to_vec());
    // Two deliveries fail; one of them long ago (by the time filter's reckoning).
    step(s.as_ref(), ids[1].1, DeliveryEvent::GaveUp);
    let cut = now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    step(s.as_ref(), ids[3].1, DeliveryEvent::GaveUp);
    let failed = |since| {
        s.list(&ListQuery {
            state: Some(DeliveryState::Failed),
            recipient_ods: Some(ods.clone()),
            since_ms: since,
            ..Default::default()
        })
        .unwrap()
        .0
    };
    assert_eq!(failed(None), vec![ids[3].0, ids[1].0]);
    assert_eq!(failed(Some(cut + 1)), vec![ids[3].0]);
    let all_failed_recent = s
        .list(&ListQuery {
            state: Some(DeliveryState::Failed),
            since_ms: Some(cut + 1),
            sender_ods: Some(sender.clone()),
            ..Default::default()
        })
        .unwrap()
        .0;
    assert_eq!(all_failed_recent, vec![ids[3].0]);
    let by_recipient = s
        .list(&ListQuery {
            recipient_ods: Some(ods.clone()),
            ..Default::default()
        })
        .unwrap()
        .0;
    assert_eq!(by_recipient.len(), 5);
    assert_eq!(by_recipient[0], ids[3].0, "most recently changed first");
    let old = s
        .deliveries_in_state(DeliveryState::Failed, cut + 1, 100)
        .unwrap();
    assert!(old.contains(&ids[1].1) && !old.contains(&ids[3].1));
    let recent = s
        .list(&ListQuery {
            since_ms: Some(cut),
            ..Default::default()
        })
        .unwrap()
        .0;
    assert!(!recent.contains(&ids[0].0), "received before the cut");
}

/// Paging through a listing ordered by change (a state or recipient filter) gives every
/// message once, in the order of the listing taken whole, however the changes reordered them.
pub async fn pages_follow_the_listing_order(f: &dyn StoreFactory) {
    let s = f.open().await;
    let tag = new_id().simple().to_string()[24..].to_uppercase();
    let (sender, ods, other) = (format!("S{tag}"), format!("R{tag}"), format!("Q{tag}"));
    let mut ids = Vec::new();
    for i in 0..14 {
        // Some go to both practices: one message, two deliveries in the same state.
        let to: Vec<&str> = match i % 3 {
            0 => vec![&ods, &other],
            _ => vec![&ods],
        };
        let new = sample(&sender, &format!("P{i}"), &to);
        ids.push((new.message.id, new.deliveries.clone()));
        s.submit(new).await.unwrap();
    }
    // Changes in another order than receipt: the oldest messages change last.
    for (n, (_, deliveries)) in ids.iter().enumerate().rev() {
        for d in deliveries {
            let e = match n % 4 {
                0 => continue,
                1 => DeliveryEvent::TransportAccepted,
                _ => DeliveryEvent::GaveUp,
            };
            step(s.as_ref(), d.id, e);
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let queries = [
        ListQuery {
            recipient_ods: Some(ods.clone()),
            ..Default::default()
        },
        ListQuery {
            state: Some(DeliveryState::Failed),
            ..Default::default()
        },
        ListQuery {
            state: Some(DeliveryState::Failed),
            recipient_ods: Some(ods.clone()),
            ..Default::default()
        },
        ListQuery {
            sender_ods: Some(sender.clone()),
            ..Default::default()
        },
        ListQuery::default(),
    ];
    let ours: Vec<Uuid> = ids.iter().map(|(m, _)| *m).collect();
    for q in queries {
        let whole: Vec<Uuid> = s
            .list(&ListQuery {
                limit: 10_000,
                ..q.clone()
            })
            .unwrap()
            .0
            .into_iter()
            .filter(|id| ours.contains(id))
            .collect();
        assert!(whole.len() >= 5, "{q:?}: {whole:?}");
        let mut paged: Vec<Uuid> = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .list_page(
                    &ListQuery {
                        limit: 3,
                        after,
                        ..q.clone()
                    },
                    0,
                )
                .unwrap();
            assert_eq!(page.ids.len(), page.positions.len());
            paged.extend(page.ids.iter().filter(|id| ours.contains(id)).copied());
            if page.total <= page.ids.len() as u64 {
                break;
            }
            after = page.positions.last().copied();
        }
        assert_eq!(paged, whole, "pages of three, {q:?}");
    }
}

pub async fn unmatched_acks_are_kept(f: &dyn StoreFactory) {
    let s = f.open().await;
    let ack = UnmatchedAck {
        at_ms: now_ms(),
        source: format!("/drop/acks/{}.ack", new_id()),
        problem: "no delivery".into(),
        kept_at: "/drop/acks/rejected/x.ack".into(),
    };
    s.record_unmatched_ack(ack.clone()).unwrap();
    assert!(s.unmatched_acks(100).unwrap().contains(&ack));
}

pub async fn flushed_writes_survive_reopen(f: &dyn StoreFactory) {
    let new = sample("RX1", &new_id().to_string(), &["A81001"]);
    let (mid, did) = (new.message.id, new.deliveries[0].id);
    {
        let s = f.open().await;
        s.submit(new.clone()).await.unwrap();
        step(s.as_ref(), did, DeliveryEvent::TransportAccepted);
        s.flush().await.unwrap();
    }
    let s = f.open().await;
    assert_eq!(s.message(mid).unwrap().unwrap(), new.message);
    assert_eq!(s.delivery(did).unwrap().unwrap().state, DeliveryState::Sent);
    assert_eq!(
        s.find_by_local_id("RX1", &new.message.local_id).unwrap(),
        Some(mid)
    );
}
