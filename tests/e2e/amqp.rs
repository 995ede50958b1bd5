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

/// Every receipted message (id → recipient) is in the practices' drop folders exactly once.
fn assert_each_delivered_once(hub: &Hub, receipted: &BTreeMap<String, String>) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for ods in PRACTICES {
        for idx in drop_indexes(&hub.drop_folder(ods)) {
            *seen
                .entry(idx["message_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for (id, to) in receipted {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "message {id} to {to} delivered {:?} times",
            seen.get(id)
        );
    }
    let files: usize = seen.values().sum();
    eprintln!(
        "receipted {}, delivered {}, lost 0, duplicates 0, files {files} ({} for documents \
         stored at a kill whose receipt never went out)",
        receipted.len(),
        receipted.len(),
        seen.len() - receipted.len()
    );
}

/// The tests here share one broker, and one of them stops it: one at a time.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Restarts the broker's app even when the test fails half-way.
struct BrokerGuard;

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_rabbitmq_nothing_receipted_is_lost_when_the_broker_goes_away() {
    let _serial = BROKER.lock().await;
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
    assert_each_delivered_once(&hub, &receipted);
    eventually(30, "/readyz to recover", || {
        let code = hub.http_get("/readyz").0;
        async move { (code == 200).then_some(()) }
    })
    .await;
    drop(hub);
    delete_queues(&prefix);
}

/// Two nodes on one broker, sharing the directory and its drop folders. Node b polls acks
/// rarely, so acks for its deliveries are picked up by node a and passed on.
fn two_nodes(root: &std::path::Path, prefix: &str) -> (Hub, std::path::PathBuf) {
    let common = format!(
        "bus = \"amqp\"\n\n[amqp]\nqueue_prefix = \"{prefix}\"\nrelays = 2\nprefetch = 8\n\n[delivery]\nmax_attempts = 3\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\nworkers = 4\n\n"
    );
    let a = Hub::start(
        &root.join("a"),
        &format!("node = \"a\"\n{common}[acks]\npoll_ms = 100\n"),
    );
    let b_dir = root.join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b_config = b_dir.join("edthub-test.toml");
    std::fs::write(
        &b_config,
        edt_tests::test_config(
            &b_dir,
            &format!(
                "node = \"b\"\ndirectory = {:?}\n{common}[acks]\npoll_ms = 600000\n",
                root.join("a/directory.toml").display().to_string()
            ),
        ),
    )
    .unwrap();
    (a, b_config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_work_and_lose_nothing_when_one_is_killed() {
    let _serial = BROKER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("edthub-e2e-2n-{}.", std::process::id());
    let (a, b_config) = two_nodes(dir.path(), &prefix);
    let b_dir = dir.path().join("b");
    let mut b = Hub::start_with(&b_dir, &b_config);

    // Work is shared: each node delivers some of the other's documents, and the outcome is
    // recorded on the node that received the document.
    let mut receipted: BTreeMap<String, String> = BTreeMap::new();
    let mut by_node: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (n, hub) in [&a, &b].into_iter().enumerate() {
        let mut sub = hub.submission().await;
        for i in 0..120 {
            let to = PRACTICES[i % PRACTICES.len()];
            let r = sub
                .submit_document(letter(&format!("2N-{n}-{i}"), &[to]))
                .await
                .unwrap()
                .into_inner();
            receipted.insert(r.message_id.clone(), to.to_string());
            by_node[n].push(r.message_id);
        }
    }
    a.wait_all_sent(by_node[0].clone(), 60).await;
    b.wait_all_sent(by_node[1].clone(), 60).await;
    for (name, hub) in [("a", &a), ("b", &b)] {
        assert!(
            hub.log().contains("delivery attempt for another node"),
            "node {name} delivered none of the other node's documents:\n{}",
            hub.log()
        );
        assert!(
            hub.log().contains("attempt by another node recorded"),
            "node {name} recorded no attempt made by the other node"
        );
    }
    // The timeline says which node delivered it.
    let remote = by_node[1]
        .iter()
        .find_map(|id| {
            let shown = b.cli_json(&["messages", "show", id]);
            shown["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["reason"].as_str().unwrap_or("").contains("(by node a)"))
                .then(|| id.clone())
        })
        .expect("a message of node b delivered by node a, said so in its timeline");
    assert!(!remote.is_empty());

    // The CLI works across both nodes: lists merge, and an id finds its own node.
    let listed = edt_tests::cli_json_across(&[&a, &b], &["messages", "list", "--limit", "1000"]);
    let ids: std::collections::HashSet<String> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect();
    for id in receipted.keys() {
        assert!(ids.contains(id), "{id} missing from the merged list");
    }
    assert_eq!(
        listed["total"].as_u64(),
        Some(ids.len() as u64),
        "the total is summed over the nodes"
    );
    let b_msg = &by_node[1][0];
    let shown = edt_tests::cli_json_across(&[&a, &b], &["messages", "show", b_msg]);
    assert_eq!(&shown["message_id"], b_msg.as_str());

    // An ack for node b's delivery, picked up by node a, reaches node b.
    let delivery = shown["deliveries"][0]["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    let to = shown["deliveries"][0]["recipient_ods"].as_str().unwrap();
    std::fs::write(
        a.drop_folder(to)
            .join("acks")
            .join(format!("{delivery}.ack")),
        br#"{"status":"accepted"}"#,
    )
    .unwrap();
    eventually(30, "node b to record the ack node a picked up", || {
        let shown = b.cli_json(&["messages", "show", b_msg]);
        async move { (shown["deliveries"][0]["state"] == "accepted").then_some(shown) }
    })
    .await;
    let events = b.cli_json(&["messages", "show", b_msg]);
    assert!(
        events["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "ack-file via a"),
        "the timeline names the node that picked the ack up: {events}"
    );

    // kill -9 node b under load on both nodes, then start it again.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let spawn_load = |hub_addr: String, tag: &'static str| {
        let (stop, counter) = (stop.clone(), counter.clone());
        tokio::spawn(async move {
            let mut got = Vec::new();
            let Ok(ch) = tonic::transport::Channel::from_shared(hub_addr)
                .unwrap()
                .connect()
                .await
            else {
                return got;
            };
            let mut sub =
                edt_proto::v1::document_submission_client::DocumentSubmissionClient::new(ch);
            while !stop.load(Ordering::Relaxed) {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let to = PRACTICES[i % PRACTICES.len()];
                match sub
                    .submit_document(letter(&format!("2N-LOAD-{tag}-{i}"), &[to]))
                    .await
                {
                    Ok(r) => got.push((tag, r.into_inner().message_id, to.to_string())),
                    // The node was killed: only what was receipted counts.
                    Err(_) => break,
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            got
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..2 {
        tasks.push(spawn_load(a.grpc.clone(), "a"));
        tasks.push(spawn_load(b.grpc.clone(), "b"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let b = Hub::start_with(&b_dir, &b_config);
    for _ in 0..2 {
        tasks.push(spawn_load(b.grpc.clone(), "b"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut load: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for t in tasks {
        for (tag, id, to) in t.await.unwrap() {
            load[usize::from(tag == "b")].push(id.clone());
            receipted.insert(id, to);
        }
    }
    assert!(
        load[0].len() > 20 && load[1].len() > 20,
        "too little load: {} on a, {} on b",
        load[0].len(),
        load[1].len()
    );
    a.wait_all_sent(load[0].clone(), 120).await;
    b.wait_all_sent(load[1].clone(), 120).await;
    assert_each_delivered_once(&a, &receipted);
    // (A document stored at the moment of the kill, before its receipt went out, may be
    // delivered too: its sender never got a receipt and would submit it again, deduplicated
    // by its local id.)
    drop(a);
    drop(b);
    delete_queues(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_created_from_the_definitions_file_are_the_ones_the_hub_declares() {
    let _serial = BROKER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("edthub-e2e-defs-{}.", std::process::id());
    let config = dir.path().join("edthub-test.toml");
    std::fs::write(
        &config,
        edt_tests::test_config(
            dir.path(),
            &format!(
                "node = \"defs\"\nbus = \"amqp\"\n\n[amqp]\nqueue_prefix = \"{prefix}\"\n\n{FAST}"
            ),
        ),
    )
    .unwrap();
    // An operator pre-creates the topology from the generated definitions...
    let out = Command::new(edt_tests::binary())
        .args(["amqp", "definitions", "--node", "defs", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let defs = dir.path().join("definitions.json");
    std::fs::write(&defs, &out.stdout).unwrap();
    rabbitmqctl(&["import_definitions", defs.to_str().unwrap()]);
    let listed = Command::new("rabbitmqctl")
        .args(["list_queues", "name", "--quiet", "--no-table-headers"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&format!("{prefix}deliver.dead")),
        "{listed}"
    );

    // ...and the hub, declaring the same queues with the same arguments, works on them (a
    // difference in any argument would make the broker refuse the declaration).
    let hub = Hub::start_with(dir.path(), &config);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("DEFS-1", &["A81002"]))
        .await
        .unwrap()
        .into_inner();
    hub.wait_all_sent([r.message_id], 30).await;
    assert!(!hub.log().contains("PRECONDITION_FAILED"), "{}", hub.log());
    drop(hub);
    delete_queues(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_refuses_with_unavailable_and_stores_nothing() {
    let _serial = BROKER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("edthub-e2e-full-{}.", std::process::id());
    let hub = Hub::start(
        dir.path(),
        &format!("bus = \"amqp\"\n\n[amqp]\nqueue_prefix = \"{prefix}\"\nmax_outbox = 5\n\n{FAST}"),
    );
    let _guard = BrokerGuard;
    let mut sub = hub.submission().await;
    rabbitmqctl(&["stop_app"]);
    let mut receipted = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        match sub
            .submit_document(letter(&format!("FULL-{i}"), &["A81001"]))
            .await
        {
            Ok(r) => receipted.push(r.into_inner().message_id),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (i, e) = refused.expect("a full outbox refuses submissions");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    assert!(e.message().contains("amqp.max_outbox = 5"), "{e}");
    assert!(
        receipted.len() >= 5,
        "the outbox held {} first",
        receipted.len()
    );
    // Nothing of the refused document was stored.
    let listed = hub.cli_json(&["messages", "list", "--limit", "1000"]);
    assert_eq!(
        listed["messages"].as_array().unwrap().len(),
        receipted.len()
    );
    rabbitmqctl(&["start_app"]);
    hub.wait_all_sent(receipted.clone(), 60).await;
    // Room again: the refused document is accepted when sent again.
    let r = eventually(30, "submissions to be accepted again", || {
        let mut sub = sub.clone();
        async move {
            sub.submit_document(letter(&format!("FULL-{i}"), &["A81001"]))
                .await
                .ok()
        }
    })
    .await;
    hub.wait_all_sent([r.into_inner().message_id], 30).await;
    drop(hub);
    delete_queues(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_its_database_says_so_and_keeps_what_arrives_for_it() {
    let _serial = BROKER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("edthub-e2e-lost-{}.", std::process::id());
    let common =
        format!("bus = \"amqp\"\n\n[amqp]\nqueue_prefix = \"{prefix}\"\nrelays = 2\n\n{FAST}");
    let a_dir = dir.path().join("a");
    let a_extra = format!("node = \"lost\"\n{common}");
    let mut a = Hub::start(&a_dir, &a_extra);
    let mut sub = a.submission().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = sub
            .submit_document(letter(&format!("LOST-{i}"), &["A81001"]))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.message_id);
    }
    a.wait_all_sent(ids.clone(), 60).await;
    let deliveries: Vec<String> = ids
        .iter()
        .map(|id| {
            a.cli_json(&["messages", "show", id])["deliveries"][0]["delivery_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // A normal restart says nothing.
    a.stop();
    let mut a = Hub::start(&a_dir, &a_extra);
    assert!(
        !a.log().contains("never used its home queue"),
        "a restart with its database is not a lost history:\n{}",
        a.log()
    );
    // The node dies and its database goes with it; it comes back empty under the same name,
    // with its ack polling off, so that another node picks the acks up and sends them home.
    a.kill();
    std::fs::rename(a_dir.join("db"), dir.path().join("db.lost")).unwrap();
    std::fs::rename(a_dir.join("payloads"), dir.path().join("payloads.lost")).unwrap();
    let a = Hub::start(
        &a_dir,
        &format!("{a_extra}\n[acks]\npoll_ms = 600000\n").replace("[acks]\npoll_ms = 100\n", ""),
    );
    let log = a.log();
    assert!(
        log.contains("never used its home queue") && log.contains("data folder was lost"),
        "the empty node says it lost its history:\n{log}"
    );
    let (code, ready) = a.http_get("/readyz");
    assert_eq!(code, 200, "it still takes work: {ready}");
    assert!(
        ready.contains("warning: node lost starts with a database"),
        "{ready}"
    );
    let stats = a.cli_json(&["stats"]);
    assert_eq!(
        stats["warnings"].as_array().map(Vec::len),
        Some(1),
        "{stats}"
    );

    // Another node on the same drop folders picks up the practice's acks for the lost
    // deliveries and sends them to the lost node's home queue.
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b_config = b_dir.join("edthub-test.toml");
    std::fs::write(
        &b_config,
        edt_tests::test_config(
            &b_dir,
            &format!(
                "node = \"other\"\ndirectory = {:?}\n{common}",
                a_dir.join("directory.toml").display().to_string()
            ),
        ),
    )
    .unwrap();
    let b = Hub::start_with(&b_dir, &b_config);
    let acks = a.drop_folder("A81001").join("acks");
    std::fs::create_dir_all(&acks).unwrap();
    for d in &deliveries {
        std::fs::write(acks.join(format!("{d}.ack")), r#"{"status":"accepted"}"#).unwrap();
    }
    let stats = eventually(60, "the lost node to set the acks aside", || async {
        let s = a.cli_json(&["stats"]);
        (s["unmatched_acks"] == 4).then_some(s)
    })
    .await;
    assert_eq!(stats["home_dead_letters"], 4, "{stats}");
    let listed = a.cli_json(&["acks", "unmatched"]);
    for d in &deliveries {
        assert!(
            listed["acks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["source"].as_str().unwrap_or("").contains(d.as_str())),
            "the set-aside ack of {d} is listed: {listed}"
        );
    }
    drop(b);
    drop(a);
    delete_queues(&prefix);
}

/// A counter's value in a hub's `/metrics` (0 when absent).
fn counter(hub: &Hub, name: &str) -> f64 {
    hub.http_get("/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sender_failing_over_with_the_same_local_id_gets_the_first_nodes_receipt() {
    let _serial = BROKER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("edthub-e2e-idem-{}.", std::process::id());
    let (a, b_config) = two_nodes(dir.path(), &prefix);
    let b = Hub::start_with(&dir.path().join("b"), &b_config);
    // Claims made before a node first subscribes are not kept for it; once subscribed, the
    // broker keeps them for it even while it is down.
    eventually(30, "node b to subscribe to the claims", || async {
        b.log()
            .contains("receiving the cluster's local-id claims")
            .then_some(())
    })
    .await;
    let first = a
        .submission()
        .await
        .submit_document(letter("FAILOVER-1", &["A81001"]))
        .await
        .unwrap()
        .into_inner();
    a.wait_all_sent([first.message_id.clone()], 60).await;
    // Node b hears of node a's claim on the local id.
    eventually(30, "node b to record node a's claim", || async {
        (counter(&b, "edthub_claims_recorded_total") >= 1.0).then_some(())
    })
    .await;
    // The sender times out on node a and sends the same letter to node b.
    let mut sub_b = b.submission().await;
    let again = sub_b
        .submit_document(letter("FAILOVER-1", &["A81001"]))
        .await
        .expect("the same letter again is receipted")
        .into_inner();
    assert!(again.duplicate, "{again:?}");
    assert_eq!(
        again.message_id, first.message_id,
        "node a's message, not a second"
    );
    assert_eq!(again.deliveries.len(), first.deliveries.len());
    assert_eq!(
        again.deliveries[0].delivery_id,
        first.deliveries[0].delivery_id
    );
    // The same local id with other content is refused, naming the original.
    let mut changed = letter("FAILOVER-1", &["A81001"]);
    changed.payload = b"%PDF-1.4\n% a corrected discharge summary\n".to_vec();
    let err = sub_b.submit_document(changed).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains(&first.message_id), "{err:?}");
    // Node b stored nothing, and the practice has the letter once.
    assert_eq!(b.cli_json(&["stats"])["messages"], 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let copies = drop_indexes(&a.drop_folder("A81001"))
        .iter()
        .filter(|i| i["message_id"] == first.message_id.as_str())
        .count();
    assert_eq!(copies, 1, "the practice got the letter once");
    // Claims travel in batches: a burst of letters costs fewer broker messages than letters.
    let sub_a = a.submission().await;
    let burst: Vec<_> = (0..60)
        .map(|i| {
            let mut s = sub_a.clone();
            tokio::spawn(async move {
                s.submit_document(letter(&format!("BURST-{i}"), &["A81002"]))
                    .await
                    .unwrap()
                    .into_inner()
                    .message_id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in burst {
        ids.push(t.await.unwrap());
    }
    a.wait_all_sent(ids, 60).await;
    eventually(30, "node b to record the burst's claims", || async {
        (counter(&b, "edthub_claims_recorded_total") >= 61.0).then_some(())
    })
    .await;
    let broadcasts = counter(&a, "edthub_claims_broadcasts_total");
    let sent = counter(&a, "edthub_claims_sent_total");
    eprintln!("claims: {sent} in {broadcasts} broker messages");
    assert_eq!(sent, 61.0);
    assert!(
        broadcasts < sent,
        "{sent} claims in {broadcasts} broker messages"
    );
    drop(b);
    drop(a);
    delete_queues(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_polling_one_drop_folder_apply_every_ack_once_and_set_none_aside() {
    let _serial = BROKER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("edthub-e2e-acks-{}.", std::process::id());
    let (a, b_config) = two_nodes(dir.path(), &prefix);
    // Both nodes poll the practices' ack folders, often.
    std::fs::write(
        &b_config,
        std::fs::read_to_string(&b_config)
            .unwrap()
            .replace("poll_ms = 600000", "poll_ms = 50"),
    )
    .unwrap();
    let b = Hub::start_with(&dir.path().join("b"), &b_config);
    let mut ids = Vec::new();
    for (n, hub) in [&a, &b].into_iter().enumerate() {
        let mut sub = hub.submission().await;
        for i in 0..60 {
            let to = PRACTICES[i % PRACTICES.len()];
            ids.push(
                sub.submit_document(letter(&format!("ACKS-{n}-{i}"), &[to]))
                    .await
                    .unwrap()
                    .into_inner()
                    .message_id,
            );
        }
    }
    a.wait_all_sent(ids[..60].to_vec(), 60).await;
    b.wait_all_sent(ids[60..].to_vec(), 60).await;
    // The practices acknowledge everything at once.
    let mut acked = 0;
    for ods in PRACTICES {
        let folder = a.drop_folder(ods);
        std::fs::create_dir_all(folder.join("acks")).unwrap();
        for idx in drop_indexes(&folder) {
            let d = idx["delivery_id"].as_str().unwrap();
            std::fs::write(
                folder.join("acks").join(format!("{d}.ack")),
                r#"{"status":"accepted"}"#,
            )
            .unwrap();
            acked += 1;
        }
    }
    assert_eq!(acked, 120);
    let all = [&a, &b];
    eventually(60, "every delivery accepted", || async {
        let listed = edt_tests::cli_json_across(&all, &["messages", "list", "--state", "accepted"]);
        (listed["total"].as_u64() == Some(120)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, hub) in [("a", &a), ("b", &b)] {
        let stats = hub.cli_json(&["stats"]);
        assert_eq!(
            stats["unmatched_acks"],
            0,
            "node {name} set aside acks the other node was applying: {}",
            hub.cli_json(&["acks", "unmatched"])
        );
    }
    for ods in PRACTICES {
        let left: Vec<_> = std::fs::read_dir(a.drop_folder(ods).join("acks"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            left.iter().all(|n| !n.ends_with(".ack")),
            "acks left in {ods}: {left:?}"
        );
    }
    eprintln!("shared ack folders: receipted 120, delivered 120, acks 120 applied, set aside 0");
    drop(b);
    drop(a);
    delete_queues(&prefix);
}
