//! When a drop folder cannot be written: retries with backoff, `failed`, and the ops path back.

use edt_proto::v1;
use edt_tests::{drop_indexes, eventually, letter, state, Hub, FAST};
use tonic::Code;

async fn wait_state(hub: &Hub, id: &str, want: &str) -> v1::MessageStatus {
    let t = hub.tracking().await;
    eventually(20, &format!("message {id} to be {want}"), || {
        let mut t = t.clone();
        let id = id.to_string();
        let want = want.to_string();
        async move {
            let s = t
                .get_message(v1::GetMessageRequest { message_id: id })
                .await
                .unwrap()
                .into_inner();
            (state(s.state) == want).then_some(s)
        }
    })
    .await
}

/// Replaces a practice's drop folder with a plain file, so nothing can be written there
/// (root ignores permission bits, a file in the way it cannot).
fn break_folder(hub: &Hub, ods: &str) -> std::path::PathBuf {
    let folder = hub.drop_folder(ods);
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::write(&folder, b"not a folder").unwrap();
    folder
}

fn fix_folder(folder: &std::path::Path) {
    std::fs::remove_file(folder).unwrap();
    std::fs::create_dir_all(folder.join("acks")).unwrap();
}

#[tokio::test]
async fn unwritable_folder_retries_then_fails_and_replay_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let folder = break_folder(&hub, "A81002");
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-FAIL", &["A81002"]))
        .await
        .unwrap()
        .into_inner();
    let failed = wait_state(&hub, &r.message_id, "failed").await;
    let d = &failed.deliveries[0];
    assert_eq!(d.attempts, 3, "max_attempts = 3");
    assert!(d.last_error.contains("not a directory"), "{}", d.last_error);

    // The timeline shows the backoff.
    let events = hub.timeline_events(&r.message_id);
    assert_eq!(
        events,
        [
            "received",
            "created",
            "retry-scheduled",
            "retry-scheduled",
            "gave-up"
        ]
    );

    // Ops finds it ...
    let listed = hub.cli_json(&["messages", "list", "--state", "failed"]);
    let ids: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [r.message_id.as_str()]);
    let scoped = hub.cli_json(&[
        "messages",
        "list",
        "--state",
        "failed",
        "--recipient",
        "A81002",
        "--since",
        "2h",
    ]);
    assert_eq!(scoped["messages"].as_array().unwrap().len(), 1);
    let other = hub.cli_json(&[
        "messages",
        "list",
        "--state",
        "failed",
        "--recipient",
        "A81001",
    ]);
    assert!(other["messages"].as_array().unwrap().is_empty());
    let table = hub.cli(&["messages", "list", "--state", "failed"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&r.message_id) && text.contains("A81002 failed (3 attempts)"),
        "{text}"
    );

    // ... fixes the folder and replays.
    fix_folder(&folder);
    let out = hub.cli(&["replay", &r.message_id, "--reason", "share remounted"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 replayed"));
    let sent = wait_state(&hub, &r.message_id, "sent").await;
    let new = &sent.deliveries[0];
    assert_eq!(
        new.replay_of, d.delivery_id,
        "the replay links to the original"
    );
    let idx = drop_indexes(&folder);
    assert_eq!(idx.len(), 1);
    assert_eq!(idx[0]["message_id"], r.message_id);

    // History is kept: the original is still failed, and points at its replay.
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    let all = shown["all_deliveries"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["state"], "failed");
    assert_eq!(all[0]["superseded_by"], new.delivery_id);
    assert!(shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "replayed"
            && e["reason"].as_str().unwrap().contains("share remounted")));
    let failed_now = hub.cli_json(&["messages", "list", "--state", "failed"]);
    assert!(failed_now["messages"].as_array().unwrap().is_empty());

    // Replaying a message with nothing to replay is a failure for scripts.
    let again = hub.cli(&["replay", &r.message_id]);
    assert_eq!(again.status.code(), Some(1));
}

#[tokio::test]
async fn replay_by_filter_with_dry_run_first() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let folder = break_folder(&hub, "A81006");
    let mut sub = hub.submission().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = sub
            .submit_document(letter(&format!("EPR-F{i}"), &["A81006"]))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.message_id);
    }
    for id in &ids {
        wait_state(&hub, id, "failed").await;
    }
    fix_folder(&folder);
    let plan = hub.cli_json(&["replay", "--state", "failed", "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["replayed"], 3);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        drop_indexes(&folder).is_empty(),
        "a dry run delivers nothing"
    );
    let still = hub.cli_json(&["messages", "list", "--state", "failed"]);
    assert_eq!(still["messages"].as_array().unwrap().len(), 3);

    let done = hub.cli_json(&["replay", "--state", "failed", "--recipient", "A81006"]);
    assert_eq!(done["replayed"], 3);
    for id in &ids {
        wait_state(&hub, id, "sent").await;
    }
    assert_eq!(drop_indexes(&folder).len(), 3);
}

#[tokio::test]
async fn ops_can_cancel_a_delivery_that_is_retrying() {
    let dir = tempfile::tempdir().unwrap();
    // Slow retries so the delivery stays in `retrying` while ops acts.
    let hub = Hub::start(
        dir.path(),
        "[delivery]\nmax_attempts = 5\ninitial_backoff_ms = 60000\nmax_backoff_ms = 60000\n",
    );
    break_folder(&hub, "A81004");
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-CANCEL", &["A81004"]))
        .await
        .unwrap()
        .into_inner();
    let s = wait_state(&hub, &r.message_id, "retrying").await;
    let did = &s.deliveries[0].delivery_id;
    assert!(s.deliveries[0].next_attempt_at.is_some());
    let out = hub.cli_json(&["cancel", did, "--reason", "sent by post instead"]);
    assert_eq!(out["state"], "cancelled");
    let s = wait_state(&hub, &r.message_id, "cancelled").await;
    assert!(s.complete);
    // A final delivery cannot be cancelled again.
    let again = hub.cli(&["cancel", did]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("cancelled"));
}

/// Silence becomes `overdue`: no acknowledgement at all within the infrastructure SLA, or no
/// business acknowledgement within the business SLA; both listed and counted for ops.
#[tokio::test]
async fn silence_past_the_slas_is_overdue_listed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let fast = FAST.replace(
        "[acks]\npoll_ms = 100\n",
        "[acks]\npoll_ms = 100\nsla_secs = 4\ninfrastructure_sla_secs = 1\nsla_check_secs = 1\n",
    );
    assert_ne!(fast, FAST);
    let hub = Hub::start(dir.path(), &fast);
    let mut sub = hub.submission().await;
    let silent = sub
        .submit_document(letter("SLA-1", &["A81001"]))
        .await
        .unwrap()
        .into_inner();
    let delivered = sub
        .submit_document(letter("SLA-2", &["A81002"]))
        .await
        .unwrap()
        .into_inner();
    // A81002's system says it has the document, and then nothing more.
    let folder = hub.drop_folder("A81002");
    let idx = eventually(10, "the index file", || {
        let f = folder.clone();
        async move { drop_indexes(&f).into_iter().next() }
    })
    .await;
    let did = idx["delivery_id"].as_str().unwrap().to_string();
    std::fs::write(
        folder.join("acks").join(format!("{did}.ack")),
        r#"{"status":"delivered"}"#,
    )
    .unwrap();
    wait_state(&hub, &delivered.message_id, "delivered").await;

    wait_state(&hub, &silent.message_id, "overdue").await;
    let shown = hub.cli_json(&["messages", "show", &silent.message_id]);
    assert!(
        shown["timeline"]
            .to_string()
            .contains("no infrastructure acknowledgement within 1 s"),
        "{shown}"
    );
    wait_state(&hub, &delivered.message_id, "overdue").await;
    let shown = hub.cli_json(&["messages", "show", &delivered.message_id]);
    assert!(
        shown["timeline"]
            .to_string()
            .contains("no business acknowledgement within 4 s"),
        "{shown}"
    );
    let listed = hub.cli_json(&["messages", "list", "--state", "overdue"]);
    assert_eq!(
        hub.cli_json(&["overdue"])["messages"],
        listed["messages"],
        "edthub overdue lists the same"
    );
    let ids: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&silent.message_id.as_str()) && ids.contains(&delivered.message_id.as_str()),
        "{ids:?}"
    );
    eventually(10, "the overdue gauge", || {
        let hub = &hub;
        async move {
            let (_, body) = hub.http_get("/metrics");
            body.lines()
                .any(|l| l.starts_with("edthub_deliveries_overdue") && l.ends_with(" 2"))
                .then_some(())
        }
    })
    .await;
    // A late acceptance still counts.
    std::fs::write(
        folder.join("acks").join(format!("{did}.ack")),
        r#"{"status":"accepted"}"#,
    )
    .unwrap();
    wait_state(&hub, &delivered.message_id, "accepted").await;
}

#[tokio::test]
async fn a_shutdown_stuck_on_a_delivery_ends_within_its_limit() {
    // A MESH server that takes connections and never answers: a delivery to it (and the
    // inbox poll) would hold a shutdown for the whole request timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(
        dir.path(),
        &format!(
            "shutdown_timeout_secs = 2\n{FAST}\n[mesh]\nurl = \"{url}\"\nmailbox = \"RX1EDT001\"\n\
             password = \"p\"\nshared_key = \"k\"\ntimeout_secs = 600\n"
        ),
    );
    let toml = dir.path().join("directory.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let from = "[endpoints.a81001-drop]\nkind = \"file\"\npath = \"drop/A81001\"";
    assert!(text.contains(from), "sample directory changed");
    std::fs::write(
        &toml,
        text.replace(
            from,
            "[endpoints.a81001-drop]\nkind = \"mesh\"\nmailbox = \"A81001GP001\"",
        ),
    )
    .unwrap();
    hub.cli_json(&["directory", "reload"]);
    let id = hub
        .submission()
        .await
        .submit_document(letter("EPR-STUCK", &["A81001"]))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(!id.is_empty());
    // Time for a worker to hand the delivery to the MESH server, which never answers.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let status = hub.terminate(25).expect("the hub was running");
    assert_eq!(status.code(), Some(1), "{}", hub.log());
    let log = hub.log();
    assert!(
        log.contains("shutdown did not finish within 2 s; exiting without waiting for"),
        "says what it abandoned: {log}"
    );
}

#[tokio::test]
async fn a_backlog_at_its_limit_pushes_back_on_senders() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        dir.path(),
        "[delivery]\nmax_attempts = 50\ninitial_backoff_ms = 60000\nmax_backoff_ms = 60000\n\
         workers = 4\n\n[limits]\nmax_backlog = 1\n",
    );
    // A delivery that waits: its folder cannot be written, and the next try is a minute off.
    break_folder(&hub, "A81001");
    let mut sub = hub.submission().await;
    let first = sub
        .submit_document(letter("EPR-BACKLOG-1", &["A81001"]))
        .await
        .expect("the first is taken")
        .into_inner();
    wait_state(&hub, &first.message_id, "retrying").await;
    let err = sub
        .submit_document(letter("EPR-BACKLOG-2", &["A81002"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("limits.max_backlog = 1"),
        "{:?}",
        err.message()
    );
    assert_eq!(
        err.metadata()
            .get("retry-after-ms")
            .map(|v| v.to_str().unwrap()),
        Some("10000"),
        "a retry hint"
    );
    assert_eq!(hub.cli_json(&["stats"])["messages"], 1, "nothing stored");
    let (_, metrics) = hub.http_get("/metrics");
    assert!(
        metrics.contains("edthub_backlog 1"),
        "the backlog is published"
    );
}

/// A tmpfs of `mb` MiB mounted on a fresh folder, unmounted on drop. Mounting needs root
/// (`.ci/run` runs as root); without it the test fails and says so.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mb: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn free_kib(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["-k", "--output=avail"])
            .arg(self.path())
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df's free space")
    }

    /// Fills the disk until `leave_kib` KiB are free.
    fn fill(&self, leave_kib: u64) -> std::path::PathBuf {
        let ballast = self.path().join("ballast");
        let kib = self.free_kib().saturating_sub(leave_kib);
        std::fs::write(&ballast, vec![0u8; (kib * 1024) as usize]).expect("write the ballast");
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_stops_intake_and_the_hub_takes_work_again_once_space_returns() {
    let logs = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(24);
    let data = disk.path().join("data");
    let config = logs.path().join("edthub.toml");
    // No reserve: the database itself meets the full disk, as when another program fills it.
    // Retries long enough to outlast the outage.
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\n\
             [delivery]\nmax_attempts = 200\ninitial_backoff_ms = 100\nmax_backoff_ms = 500\n\
             workers = 4\n[limits]\nmin_free_disk_mb = 0\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let hub = Hub::start_with(logs.path(), &config);
    let mut sub = hub.submission().await;
    let mut receipted = Vec::new();
    for i in 0..3 {
        let r = sub
            .submit_document(letter(&format!("EPR-DISK-{i}"), &["A81001"]))
            .await
            .expect("room on the disk")
            .into_inner();
        receipted.push(r.message_id);
    }
    let ballast = disk.fill(100);
    // Documents until the disk refuses them: each either receipted or refused UNAVAILABLE.
    let mut refused = 0;
    for i in 0..40 {
        match sub
            .submit_document(letter(&format!("EPR-FULL-{i}"), &["A81001"]))
            .await
        {
            Ok(r) => receipted.push(r.into_inner().message_id),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "a full disk refuses documents");
    // The deliveries retrying into the full drop folder make the database write: it meets
    // the full disk, and readiness says so.
    let report = eventually(60, "/readyz to report the failing store", || async {
        let (code, body) = hub.http_get("/readyz");
        (code == 503 && body.contains("storage: failing")).then_some(body)
    })
    .await;
    assert!(report.contains("No space left on device"), "{report}");
    let err = sub
        .submit_document(letter("EPR-WHILE-FAILING", &["A81001"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    std::fs::remove_file(&ballast).unwrap();
    // Space is back: the hub reopens its database and takes work, without a restart.
    eventually(60, "/readyz to recover", || async {
        (hub.try_http_get("/readyz").ok()?.0 == 200).then_some(())
    })
    .await;
    let mut sub = hub.submission().await;
    let after = sub
        .submit_document(letter("EPR-AFTER", &["A81001"]))
        .await
        .expect("the hub takes work again")
        .into_inner();
    receipted.push(after.message_id);
    let log = hub.log();
    assert!(
        log.contains("reopening the database") && log.contains("the node is open again"),
        "the failed engine was reopened: {log}"
    );
    // Nothing receipted was lost: every document reaches the practice's folder.
    hub.wait_all_sent(receipted.clone(), 120).await;
    let indexes = drop_indexes(&data.join("drop").join("A81001"));
    let mut ids: Vec<String> = indexes
        .iter()
        .map(|v| v["message_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let files = ids.len();
    ids.sort();
    ids.dedup();
    for id in &receipted {
        assert!(ids.contains(id), "receipted {id} is in the drop folder");
    }
    eprintln!(
        "full disk: receipted {}, refused {refused}, delivered {}, lost 0, duplicates {}",
        receipted.len(),
        ids.len(),
        files - ids.len()
    );
}
