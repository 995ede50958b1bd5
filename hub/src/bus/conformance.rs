//! The conformance suite every [`Bus`] implementation must pass, written against the trait
//! only. An implementation's test module provides a [`BusFactory`] that opens (and, after the
//! previous handle is dropped, reopens) the same underlying queues, configured with a delivery
//! limit of [`MAX_DELIVERIES`], and calls [`run_all`].
//!
//! Each case uses its own queue name, so the suite also runs against a shared broker.

use super::{Bus, Requeued};
use futures::future::BoxFuture;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The delivery limit the factory must configure.
pub const MAX_DELIVERIES: u32 = 3;

/// Opens the bus under test; a second call after dropping the first handle is a restart.
pub trait BusFactory: Sync {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Bus>>;
}

const WAIT: Duration = Duration::from_secs(10);

fn queue(case: &str) -> String {
    format!("conf-{case}-{}", crate::track::new_id().simple())
}

async fn recv(bus: &Arc<dyn Bus>, q: &str) -> super::BusItem {
    tokio::time::timeout(WAIT, bus.receive(q))
        .await
        .unwrap_or_else(|_| panic!("nothing received from {q} within {WAIT:?}"))
        .expect("receive")
}

async fn nothing_within(bus: &Arc<dyn Bus>, q: &str, d: Duration) {
    if let Ok(item) = tokio::time::timeout(d, bus.receive(q)).await {
        panic!("expected nothing on {q}, got {:?}", item.map(|i| i.body));
    }
}

/// Runs every case.
pub async fn run_all(f: &dyn BusFactory) {
    fifo_and_ack(f).await;
    unacked_items_come_back_after_restart(f).await;
    acked_items_stay_gone_after_restart(f).await;
    waiting_items_survive_restart(f).await;
    retry_later_waits_then_redelivers(f).await;
    delayed_publish_waits(f).await;
    delivery_limit_dead_letters(f).await;
    explicit_dead_letter(f).await;
    concurrent_consumers_share_without_duplicates(f).await;
    waiting_consumers_all_take_part_in_a_burst(f).await;
}

pub async fn fifo_and_ack(f: &dyn BusFactory) {
    let bus = f.open().await;
    let q = queue("fifo");
    for i in 0..5u8 {
        bus.publish(&q, vec![i], Duration::ZERO).await.unwrap();
    }
    assert_eq!(bus.depth(&q).await.unwrap(), 5);
    for i in 0..5u8 {
        let item = recv(&bus, &q).await;
        assert_eq!(item.body, vec![i], "items come out in publish order");
        assert_eq!(item.deliveries, 1);
        assert!(!item.redelivered());
        bus.ack(&item).await.unwrap();
    }
    assert_eq!(bus.depth(&q).await.unwrap(), 0);
    nothing_within(&bus, &q, Duration::from_millis(200)).await;
}

pub async fn unacked_items_come_back_after_restart(f: &dyn BusFactory) {
    let q = queue("unacked");
    {
        let bus = f.open().await;
        bus.publish(&q, b"letter".to_vec(), Duration::ZERO)
            .await
            .unwrap();
        let item = recv(&bus, &q).await;
        assert_eq!(item.body, b"letter");
        // No ack: the consumer "dies" with the node.
    }
    let bus = f.open().await;
    let item = recv(&bus, &q).await;
    assert_eq!(item.body, b"letter");
    assert!(item.redelivered(), "second hand-out is marked redelivered");
    bus.ack(&item).await.unwrap();
    nothing_within(&bus, &q, Duration::from_millis(200)).await;
}

pub async fn acked_items_stay_gone_after_restart(f: &dyn BusFactory) {
    let q = queue("acked");
    {
        let bus = f.open().await;
        bus.publish(&q, b"a".to_vec(), Duration::ZERO)
            .await
            .unwrap();
        bus.publish(&q, b"b".to_vec(), Duration::ZERO)
            .await
            .unwrap();
        let a = recv(&bus, &q).await;
        bus.ack(&a).await.unwrap();
        // Make the ack durable the way a consumer would: by a later durable write.
        bus.publish(&q, b"c".to_vec(), Duration::ZERO)
            .await
            .unwrap();
    }
    let bus = f.open().await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let i = recv(&bus, &q).await;
        got.push(i.body.clone());
        bus.ack(&i).await.unwrap();
    }
    assert_eq!(got, vec![b"b".to_vec(), b"c".to_vec()]);
    nothing_within(&bus, &q, Duration::from_millis(200)).await;
}

pub async fn waiting_items_survive_restart(f: &dyn BusFactory) {
    let q = queue("survive");
    {
        let bus = f.open().await;
        for i in 0..20u8 {
            bus.publish(&q, vec![i], Duration::ZERO).await.unwrap();
        }
    }
    let bus = f.open().await;
    for i in 0..20u8 {
        let item = recv(&bus, &q).await;
        assert_eq!(item.body, vec![i]);
        bus.ack(&item).await.unwrap();
    }
}

pub async fn retry_later_waits_then_redelivers(f: &dyn BusFactory) {
    let bus = f.open().await;
    let q = queue("retry");
    bus.publish(&q, b"r".to_vec(), Duration::ZERO)
        .await
        .unwrap();
    let item = recv(&bus, &q).await;
    let t0 = Instant::now();
    assert_eq!(
        bus.retry_later(&item, Duration::from_millis(400))
            .await
            .unwrap(),
        Requeued::Later
    );
    let again = recv(&bus, &q).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "handed out again after {:?}, before its delay",
        t0.elapsed()
    );
    assert_eq!(again.body, b"r");
    assert_eq!(again.deliveries, 2);
    bus.ack(&again).await.unwrap();
}

pub async fn delayed_publish_waits(f: &dyn BusFactory) {
    let bus = f.open().await;
    let q = queue("delayed");
    bus.publish(&q, b"later".to_vec(), Duration::from_millis(500))
        .await
        .unwrap();
    bus.publish(&q, b"now".to_vec(), Duration::ZERO)
        .await
        .unwrap();
    let first = recv(&bus, &q).await;
    assert_eq!(first.body, b"now", "a due item overtakes a delayed one");
    bus.ack(&first).await.unwrap();
    let t0 = Instant::now();
    let second = recv(&bus, &q).await;
    assert_eq!(second.body, b"later");
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "delay not honoured"
    );
    bus.ack(&second).await.unwrap();
}

pub async fn delivery_limit_dead_letters(f: &dyn BusFactory) {
    let bus = f.open().await;
    let q = queue("limit");
    bus.publish(&q, b"poison".to_vec(), Duration::ZERO)
        .await
        .unwrap();
    for n in 1..=MAX_DELIVERIES {
        let item = recv(&bus, &q).await;
        assert_eq!(item.deliveries, n);
        let r = bus.retry_later(&item, Duration::ZERO).await.unwrap();
        if n < MAX_DELIVERIES {
            assert_eq!(r, Requeued::Later);
        } else {
            assert_eq!(r, Requeued::DeadLettered);
        }
    }
    nothing_within(&bus, &q, Duration::from_millis(300)).await;
    let dead = bus.dead_letters(&q).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, b"poison");
    assert_eq!(dead[0].deliveries, MAX_DELIVERIES);
    assert!(dead[0].reason.contains("limit"), "{}", dead[0].reason);
    assert_eq!(bus.depth(&q).await.unwrap(), 0);
}

pub async fn explicit_dead_letter(f: &dyn BusFactory) {
    let bus = f.open().await;
    let q = queue("dead");
    bus.publish(&q, b"bad".to_vec(), Duration::ZERO)
        .await
        .unwrap();
    bus.publish(&q, b"good".to_vec(), Duration::ZERO)
        .await
        .unwrap();
    let bad = recv(&bus, &q).await;
    bus.dead_letter(&bad, "unparseable body").await.unwrap();
    let good = recv(&bus, &q).await;
    assert_eq!(good.body, b"good");
    bus.ack(&good).await.unwrap();
    let dead = bus.dead_letters(&q).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].body.as_slice(), dead[0].reason.as_str()),
        (&b"bad"[..], "unparseable body")
    );
}

pub async fn concurrent_consumers_share_without_duplicates(f: &dyn BusFactory) {
    let bus = f.open().await;
    let q = queue("concurrent");
    let n = 200u32;
    for i in 0..n {
        bus.publish(&q, i.to_be_bytes().to_vec(), Duration::ZERO)
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    let per = n / 4;
    for _ in 0..4 {
        let bus = bus.clone();
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..per {
                let item = recv(&bus, &q).await;
                got.push(u32::from_be_bytes(item.body[..4].try_into().unwrap()));
                bus.ack(&item).await.unwrap();
            }
            got
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        for v in t.await.unwrap() {
            assert!(all.insert(v), "item {v} handed to two consumers");
        }
    }
    assert_eq!(all.len() as u32, n);
    assert_eq!(bus.depth(&q).await.unwrap(), 0);
}

/// Consumers already waiting when a burst of work arrives all take part in it: a wake-up is
/// passed on from one to the next, so the burst is not left to whichever woke first while the
/// others sleep.
pub async fn waiting_consumers_all_take_part_in_a_burst(f: &dyn BusFactory) {
    let bus = f.open().await;
    let q = queue("burst");
    let (consumers, n) = (8usize, 64u32);
    let taken = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let (bus, q, taken, done) = (bus.clone(), q.clone(), taken.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let finished = done.notified();
                tokio::pin!(finished);
                finished.as_mut().enable();
                if taken.load(std::sync::atomic::Ordering::SeqCst) >= n {
                    return got;
                }
                // Waits for work without polling again: only a wake-up brings it.
                let item = tokio::select! {
                    _ = finished => return got,
                    item = bus.receive(&q) => item.expect("receive"),
                };
                if taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n {
                    done.notify_waiters();
                }
                got.push(u32::from_be_bytes(item.body[..4].try_into().unwrap()));
                // Busy with it for a moment, as a delivery is.
                tokio::time::sleep(Duration::from_millis(20)).await;
                bus.ack(&item).await.unwrap();
            }
        }));
    }
    // Every consumer is waiting before the work arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    futures::future::join_all(
        (0..n).map(|i| bus.publish(&q, i.to_be_bytes().to_vec(), Duration::ZERO)),
    )
    .await
    .into_iter()
    .for_each(|r| r.unwrap());
    let mut all = BTreeSet::new();
    let mut idle = 0;
    for t in tasks {
        let got = tokio::time::timeout(WAIT, t)
            .await
            .expect("the burst was handed out")
            .unwrap();
        if got.is_empty() {
            idle += 1;
        }
        for v in got {
            assert!(all.insert(v), "item {v} handed to two consumers");
        }
    }
    assert_eq!(all.len() as u32, n);
    assert_eq!(idle, 0, "consumers left asleep while work waited");
}
