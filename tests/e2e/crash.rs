//! Crash safety: `kill -9` the hub mid-load, several times; every document that got a receipt
//! is delivered, exactly once, to its drop folder.

use edt_tests::{drop_indexes, letter, Hub, FAST};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PRACTICES: [&str; 5] = ["A81001", "A81002", "A81006", "A81004", "A81005"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_nothing_that_was_receipted() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), FAST);
    let config = hub.config.clone();
    let counter = Arc::new(AtomicUsize::new(0));
    // message id -> (recipient, payload sha256)
    let mut receipted: HashMap<String, (String, String)> = HashMap::new();
    for round in 0..3u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (stop, counter) = (stop.clone(), counter.clone());
            let mut sub = hub.submission().await;
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    let to = PRACTICES[i % PRACTICES.len()];
                    let mut req = letter(&format!("CRASH-{i}"), &[to]);
                    req.payload =
                        format!("%PDF-1.4\n{}\n", "x".repeat(2000 + i % 5000)).into_bytes();
                    let sha = edt_transforms::sha256_hex(&req.payload);
                    match sub.submit_document(req).await {
                        Ok(r) => got.push((r.into_inner().message_id, (to.to_string(), sha))),
                        // The hub died under us: this submission got no receipt.
                        Err(_) => break,
                    }
                }
                got
            }));
        }
        tokio::time::sleep(Duration::from_millis(800 + 300 * round)).await;
        hub.kill();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            receipted.extend(t.await.unwrap());
        }
        let t0 = std::time::Instant::now();
        hub = Hub::start_with(dir.path(), &config);
        eprintln!(
            "crash round {round}: {} receipted so far; restart took {:?}",
            receipted.len(),
            t0.elapsed()
        );
    }
    assert!(
        receipted.len() > 50,
        "too little load to mean anything: {}",
        receipted.len()
    );

    // Every receipted document reaches its practice.
    let waiting = std::time::Instant::now();
    hub.wait_all_sent(receipted.keys().cloned(), 300).await;
    eprintln!(
        "all {} receipted documents sent {:?} after the last restart",
        receipted.len(),
        waiting.elapsed()
    );

    // Exactly once per message in the drop folders, complete and unaltered.
    let mut by_message: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for ods in PRACTICES {
        let folder = hub.drop_folder(ods);
        for idx in drop_indexes(&folder) {
            let doc = folder.join(idx["document_file"].as_str().unwrap());
            let bytes = std::fs::read(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
            assert_eq!(
                edt_transforms::sha256_hex(&bytes),
                idx["payload_sha256"].as_str().unwrap(),
                "{} is complete",
                doc.display()
            );
            assert_eq!(idx["recipient_ods"], ods);
            by_message
                .entry(idx["message_id"].as_str().unwrap().to_string())
                .or_default()
                .push(idx);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".edthub-tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left in {}",
            folder.display()
        );
    }
    for (id, (to, sha)) in &receipted {
        let found = by_message
            .get(id)
            .unwrap_or_else(|| panic!("receipted message {id} never reached {to}"));
        assert_eq!(
            found.len(),
            1,
            "message {id} delivered {} times",
            found.len()
        );
        assert_eq!(found[0]["recipient_ods"], to.as_str());
        assert_eq!(found[0]["payload_sha256"], sha.as_str());
    }
    for (id, found) in &by_message {
        assert_eq!(
            found.len(),
            1,
            "message {id} delivered {} times",
            found.len()
        );
    }
}
