//! The hub on the RabbitMQ bus: delivery end to end, and a broker outage mid-load.
//! Needs the local RabbitMQ (`.ci/run` starts it); fails when it is missing.

use edt_tests::{drop_indexes, eventually, letter, Hub, FAST};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PRACTICES: [&str; 3] = ["A81001", "A81002", "A81004"];

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl is required for the broker fault test");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn delete_queues(prefix: &str) {
    let out = Command::new("rabbitmqctl")
        .args(["list_queues", "name", "--quiet", "--no-table-headers"])
        .output()
        .expect("rabbitmqctl");
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let name = name.trim();
        if name.starts_with(prefix) {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_queue", name])
                .output();
        }
    }
}

/// Restarts the broker's app even when the test fails half-way.
struct BrokerGuard;

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_rabbitmq_nothing_receipted_is_lost_when_the_broker_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("edthub-e2e-{}.", std::process::id());
    let hub = Hub::start(
        dir.path(),
        &format!("bus = \"amqp\"\n\n[amqp]\nqueue_prefix = \"{prefix}\"\nrelays = 2\n\n{FAST}"),
    );
    let _guard = BrokerGuard;
    assert_eq!(hub.http_get("/readyz").0, 200);

    // Delivered through the broker, and acknowledged.
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("AMQP-1", &["A81005"]))
        .await
        .unwrap()
        .into_inner();
    let folder = hub.drop_folder("A81005");
    let idx = eventually(20, "delivery through RabbitMQ", || {
        let f = folder.clone();
        async move { drop_indexes(&f).into_iter().next() }
    })
    .await;
    assert_eq!(idx["message_id"], r.message_id);
    let stats = hub.cli_json(&["stats"]);
    assert_eq!(stats["deliveries_by_state"]["sent"], 1);

    // Load, with the broker stopped and started again in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, counter) = (stop.clone(), counter.clone());
        let mut sub = hub.submission().await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let to = PRACTICES[i % PRACTICES.len()];
                match sub
                    .submit_document(letter(&format!("AMQP-LOAD-{i}"), &[to]))
                    .await
                {
                    Ok(r) => got.push((r.into_inner().message_id, to.to_string())),
                    Err(e) => panic!("a submission was refused while the outbox had room: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            got
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    rabbitmqctl(&["stop_app"]);
    eventually(30, "/readyz to report the broker gone", || {
        let code = hub.http_get("/readyz").0;
        async move { (code == 503).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rabbitmqctl(&["start_app"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let mut receipted: BTreeMap<String, String> = BTreeMap::new();
    for t in tasks {
        receipted.extend(t.await.unwrap());
    }
    assert!(receipted.len() > 50, "too little load: {}", receipted.len());

    // Everything receipted arrives, once.
    hub.wait_all_sent(receipted.keys().cloned(), 120).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for ods in PRACTICES {
        for idx in drop_indexes(&hub.drop_folder(ods)) {
            *seen
                .entry(idx["message_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for (id, to) in &receipted {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "message {id} to {to} delivered {:?} times",
            seen.get(id)
        );
    }
    eventually(30, "/readyz to recover", || {
        let code = hub.http_get("/readyz").0;
        async move { (code == 200).then_some(()) }
    })
    .await;
    drop(hub);
    delete_queues(&prefix);
}
