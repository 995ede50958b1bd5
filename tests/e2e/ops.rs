//! What ops and monitoring see: HTTP health and metrics, gRPC health and reflection, CLI exit
//! codes, the admin token, and a clean stop.

use edt_tests::{letter, Hub, FAST};
use std::process::Command;

#[tokio::test]
async fn health_readiness_and_metrics_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    assert_eq!(hub.http_get("/healthz"), (200, "ok\n".to_string()));
    let (code, body) = hub.http_get("/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("ready\nstorage: ok\nbus: ok\ndisk: "),
        "{body}"
    );
    let mut sub = hub.submission().await;
    sub.submit_document(letter("EPR-M", &["A81001"]))
        .await
        .unwrap();
    let (code, body) = hub.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("edthub_ingest_total{channel=\"grpc\"} 1"),
        "{body}"
    );
    assert!(body.contains("edthub_queue_depth"), "{body}");
    assert_eq!(hub.http_get("/nope").0, 404);
}

#[tokio::test]
async fn grpc_health_and_reflection_serve_stock_tools() {
    use tokio_stream::StreamExt;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut health = HealthClient::new(hub.channel().await);
    for service in ["", "edt.hub.v1.DocumentSubmission"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "{service:?} is SERVING");
    }
    let mut refl = ServerReflectionClient::new(hub.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let first = resp.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected reflection answer {first:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "edt.hub.v1.DocumentSubmission",
        "edt.hub.v1.Tracking",
        "edt.hub.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}

#[tokio::test]
async fn reflection_v1alpha_serves_a_stock_python_client() {
    // grpcio-reflection (like older grpcurl, grpcui and Postman) asks only
    // grpc.reflection.v1alpha.ServerReflection.
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let out = Command::new(edt_tests::peers_python())
        .arg(edt_tests::workspace().join("tests/peers/grpc_reflect.py"))
        .arg(hub.grpc.trim_start_matches("http://"))
        .arg("edt.hub.v1.DocumentSubmission")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the stock client could not reflect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<_> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for want in [
        "edt.hub.v1.DocumentSubmission",
        "edt.hub.v1.ReceiverDelivery",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&want), "{want} missing from {services:?}");
    }
    let submit = &v["methods"]["SubmitDocument"];
    assert_eq!(submit["input"], "edt.hub.v1.SubmitDocumentRequest");
    let fields = submit["fields"].as_array().unwrap();
    for f in ["sender_ods", "recipient_ods", "payload", "local_id"] {
        assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
    }
}

#[tokio::test]
async fn cli_exit_codes_mean_something() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let not_found = hub.cli(&["messages", "show", "0190e3a5-0000-7000-8000-000000000000"]);
    assert_eq!(not_found.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("not found"));
    let bad_state = hub.cli(&["messages", "list", "--state", "lost"]);
    assert_eq!(bad_state.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_state.stderr).contains("unknown state"));
    let usage = hub.cli(&["messages", "frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    let unreachable = Command::new(edt_tests::binary())
        .args(["stats", "--hub", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the hub"));
}

#[tokio::test]
async fn admin_api_needs_the_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &format!("admin_token = \"s3cret\"\n{FAST}"));
    let anonymous = hub.cli(&["stats"]);
    assert_eq!(
        anonymous.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    let wrong = Command::new(edt_tests::binary())
        .args(["stats"])
        .env("EDTHUB_ADDR", &hub.grpc)
        .env("EDTHUB_TOKEN", "guess")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(4));
    let right = Command::new(edt_tests::binary())
        .args(["stats", "--json"])
        .env("EDTHUB_ADDR", &hub.grpc)
        .env("EDTHUB_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    // Submission is not an admin call.
    let mut sub = hub.submission().await;
    sub.submit_document(letter("EPR-T", &["A81001"]))
        .await
        .unwrap();
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-STOP", &["A81001"]))
        .await
        .unwrap()
        .into_inner();
    hub.stop();
    let hub = Hub::start_with(dir.path(), &hub.config.clone());
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    assert_eq!(shown["message_id"], r.message_id);
}

#[tokio::test]
async fn completions_and_the_manual_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(edt_tests::binary())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for word in ["messages", "replay", "overdue", "unmatched"] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = std::process::Command::new(edt_tests::binary())
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.contains(".TH edthub 1"),
        "{}",
        &page[..page.len().min(200)]
    );
    assert!(page.contains("replay"));
}

/// Logs name messages by id; patient identifiers and payloads stay out of them at info level.
#[tokio::test]
async fn logs_carry_ids_but_no_patient_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let mut req = letter("LOG-1", &["A81001", "A81003"]);
    req.title = "Discharge summary for JOHN SMITH".into();
    let r = sub.submit_document(req).await.unwrap().into_inner();
    edt_tests::eventually(10, "the delivery sent", || {
        let hub = &hub;
        let id = r.message_id.clone();
        async move {
            let s = hub.cli_json(&["messages", "show", &id]);
            s["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["state"] == "sent")
                .then_some(())
        }
    })
    .await;
    let log = hub.log();
    assert!(
        log.contains(&r.message_id) || log.contains(&r.deliveries[0].delivery_id),
        "ids are logged:\n{log}"
    );
    for secret in [
        "9434765919",
        "943 476 5919",
        "JOHN SMITH",
        "discharge summary LOG-1",
    ] {
        assert!(
            !log.contains(secret),
            "{secret:?} appears in the log:\n{log}"
        );
    }
}

/// `stats` gives the hub process's own CPU time and memory, which `bench` turns into
/// `hub_cpu_ms_per_doc`: CPU time that grows with the work done.
#[tokio::test]
async fn stats_give_the_hubs_own_cpu_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let before = hub.cli_json(&["stats"]);
    let cpu = |s: &serde_json::Value| s["cpu_ms"].as_u64().expect("cpu_ms");
    // Starting up (loading the national practice file) alone takes CPU.
    assert!(cpu(&before) > 0, "{before}");
    assert!(
        before["resident_bytes"].as_u64().unwrap() > 1_000_000,
        "{before}"
    );
    let mut sub = hub.submission().await;
    for n in 0..100 {
        sub.submit_document(letter(&format!("CPU-{n}"), &["A81001"]))
            .await
            .unwrap();
    }
    let after = hub.cli_json(&["stats"]);
    assert!(cpu(&after) > cpu(&before), "{before} then {after}");
    let shown = hub.cli(&["stats"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("CPU time since start"),
        "{shown:?}"
    );
}

#[tokio::test]
async fn list_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut req = letter(&format!("LIST-{n}"), &["A81001"]);
        if n % 2 == 1 {
            req.document_type = edt_proto::v1::DocumentType::OutpatientLetter as i32;
            req.title = format!("Clinic letter {n}");
        }
        if n == 4 {
            req.nhs_number = "4010232137".into();
        }
        ids.push(
            sub.submit_document(req)
                .await
                .unwrap()
                .into_inner()
                .message_id,
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let listed = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["messages", "list"];
        a.extend_from_slice(args);
        hub.cli_json(&a)["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap().to_string())
            .collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed(&[]), newest_first);
    assert_eq!(
        listed(&["--type", "outpatient-letter"]),
        vec![ids[3].clone(), ids[1].clone()]
    );
    assert_eq!(
        listed(&["--nhs-number", "401 023 2137"]),
        vec![ids[4].clone()]
    );
    assert_eq!(
        listed(&["--search", "CLINIC LETTER 3"]),
        vec![ids[3].clone()]
    );
    assert_eq!(listed(&["--search", "LIST-2"]), vec![ids[2].clone()]);
    assert_eq!(listed(&["--channel", "grpc"]).len(), 5);
    assert!(listed(&["--channel", "smtp"]).is_empty());
    // Pages of two, newest first, each continuing where the last stopped.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["messages", "list", "--limit", "2"];
        let a;
        if let Some(x) = &after {
            a = x.clone();
            args.extend(["--after", a.as_str()]);
        }
        let page = hub.cli_json(&args);
        assert_eq!(
            page["total"].as_u64(),
            Some((newest_first.len() - seen.len()) as u64),
            "the total counts every match from this page on: {page}"
        );
        seen.extend(
            page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["message_id"].as_str().unwrap().to_string()),
        );
        match page["next_after"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    let text = String::from_utf8(hub.cli(&["messages", "list", "--limit", "2"]).stdout).unwrap();
    assert!(
        text.contains(&format!(
            "2 of {} matching messages shown",
            newest_first.len()
        )),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour into a pipe: {text:?}");
    // On a terminal (a pseudo-terminal from script(1)) the table is styled, unless NO_COLOR.
    let on_terminal = |no_color: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", "\"$EDTHUB\" messages list --limit 2", "/dev/null"])
            .env("EDTHUB", edt_tests::binary())
            .env("EDTHUB_ADDR", &hub.grpc)
            .env("NO_COLOR", no_color)
            .output()
            .expect("script(1) runs (util-linux)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let styled = on_terminal("");
    assert!(styled.contains("\x1b[1m"), "bold headers: {styled:?}");
    assert!(styled.contains("matching messages shown"), "{styled:?}");
    assert!(
        !on_terminal("1").contains("\x1b["),
        "NO_COLOR turns colour off"
    );
    // Bad filters are refused, naming the flag.
    let out = hub.cli(&["messages", "list", "--channel", "fax"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("channel"));
}

#[tokio::test]
async fn audit_export_as_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("AUDIT-1", &["A81001"]))
        .await
        .unwrap()
        .into_inner();
    hub.wait_all_sent([r.message_id.clone()], 20).await;
    let d = &r.deliveries[0].delivery_id;
    let out = hub.cli(&["cancel", d, "--reason", "wrong patient, \"per ward\""]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = hub.cli(&["audit", "export", "--since", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("at,message_id,delivery_id,event,from,to,actor,reason")
    );
    let cancel = csv
        .lines()
        .find(|l| l.contains(",cancel,"))
        .unwrap_or_else(|| panic!("no cancel in:\n{csv}"));
    assert!(
        cancel.contains(&r.message_id) && cancel.contains(d.as_str()),
        "{cancel}"
    );
    assert!(
        cancel.ends_with(",\"wrong patient, \"\"per ward\"\"\""),
        "quoted as CSV: {cancel}"
    );
    let timeline = hub.timeline_events(&r.message_id);
    let json = hub.cli_json(&["audit", "export", "--since", "1h", "--format", "json"]);
    let events = json["events"].as_array().unwrap();
    assert_eq!(events.len(), timeline.len(), "{json}");
    assert!(events
        .windows(2)
        .all(|w| w[0]["at"].as_str() <= w[1]["at"].as_str()));
    let c = events.iter().find(|e| e["event"] == "cancel").unwrap();
    assert!(c["actor"].as_str().unwrap().starts_with("ops"), "{c}");
    // Nothing before an hour ago.
    let old = hub.cli_json(&[
        "audit", "export", "--since", "3h", "--until", "2h", "--format", "json",
    ]);
    assert!(old["events"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_large_replay_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    // A81003 closed in 2017: every document for it is unroutable, and replayable.
    for n in 0..21 {
        sub.submit_document(letter(&format!("BULK-{n}"), &["A81003"]))
            .await
            .unwrap();
    }
    let out = hub.cli(&["replay", "--state", "unroutable", "--reason", "ODS fixed"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("21 messages match: add --yes"), "{err}");
    assert_eq!(
        hub.cli_json(&[
            "messages",
            "list",
            "--state",
            "unroutable",
            "--limit",
            "100"
        ])["messages"]
            .as_array()
            .unwrap()
            .len(),
        21,
        "nothing was replayed"
    );
    let out = hub.cli(&[
        "replay",
        "--state",
        "unroutable",
        "--reason",
        "ODS fixed",
        "--yes",
        "--json",
    ]);
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        done["replayed"].as_u64().unwrap() + done["skipped"].as_u64().unwrap(),
        21,
        "{done}"
    );
}

#[tokio::test]
async fn purge_removes_payloads_of_finished_messages_only() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let accepted = sub
        .submit_document(letter("PURGE-1", &["A81001"]))
        .await
        .unwrap()
        .into_inner();
    let unroutable = sub
        .submit_document(letter("PURGE-2", &["A81003"]))
        .await
        .unwrap()
        .into_inner();
    let waiting = sub
        .submit_document(letter("PURGE-3", &["A81002"]))
        .await
        .unwrap()
        .into_inner();
    hub.wait_all_sent(
        [accepted.message_id.clone(), waiting.message_id.clone()],
        20,
    )
    .await;
    accept_by_ack(&hub, "A81001", &accepted).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    let plan = hub.cli_json(&["purge", "--older-than", "1s", "--dry-run"]);
    assert_eq!(plan["messages"], 2, "{plan}");
    assert_eq!(plan["kept_not_final"], 1, "{plan}");
    let mut planned: Vec<String> = plan["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    planned.sort();
    let mut expected = vec![accepted.message_id.clone(), unroutable.message_id.clone()];
    expected.sort();
    assert_eq!(planned, expected);
    let original = dir.path().join("original.pdf");
    let keep = fetch_original(&hub, &accepted.message_id, &original);
    assert!(keep.status.success(), "a dry run removes nothing");

    // Payloads are appended to segment files under the data directory.
    let before = segments_in(&hub.data_dir);
    assert_eq!(before.len(), 1, "one segment for all three: {before:?}");
    let done = hub.cli_json(&["purge", "--older-than", "1s", "--reason", "retention test"]);
    assert_eq!(done["messages"], 2, "{done}");
    assert_eq!(done["bytes"], plan["bytes"]);
    assert_eq!(
        segments_in(&hub.data_dir),
        before,
        "the segment still holds the unfinished message's payload"
    );
    let gone = fetch_original(&hub, &accepted.message_id, &original);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("no longer held"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    // Metadata and the timeline stay, with who purged and why.
    let shown = hub.cli_json(&["messages", "show", &accepted.message_id]);
    assert_eq!(shown["local_id"], "PURGE-1");
    let purged = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "payload-purged")
        .expect("recorded");
    assert_eq!(purged["reason"], "retention test");
    assert!(purged["actor"].as_str().unwrap().starts_with("ops"));
    // The unfinished one still has its bytes; a second purge finds nothing new.
    let kept = fetch_original(&hub, &waiting.message_id, &original);
    assert!(kept.status.success());
    assert_eq!(
        hub.cli_json(&["purge", "--older-than", "1s"])["messages"],
        0
    );

    // Once the last one is filed too, and the segment takes no more payloads (a hub that
    // starts again writes to a new one), the purge removes the segment whole.
    accept_by_ack(&hub, "A81002", &waiting).await;
    let mut hub = hub;
    hub.stop();
    let hub = Hub::start(dir.path(), FAST);
    let done = hub.cli_json(&["purge", "--older-than", "1s"]);
    assert_eq!(done["messages"], 1, "{done}");
    assert!(
        segments_in(&hub.data_dir).is_empty(),
        "{:?}",
        segments_in(&hub.data_dir)
    );
    let kept = fetch_original(&hub, &waiting.message_id, &original);
    assert!(!kept.status.success(), "purged with its segment");
}

/// The practice files an acceptance for the receipt's first delivery; waits until it is
/// recorded.
async fn accept_by_ack(hub: &Hub, ods: &str, receipt: &edt_proto::v1::SubmitDocumentResponse) {
    let did = &receipt.deliveries[0].delivery_id;
    std::fs::write(
        hub.drop_folder(ods).join("acks").join(format!("{did}.ack")),
        r#"{"status":"accepted"}"#,
    )
    .unwrap();
    edt_tests::eventually(10, "the acceptance", || {
        let id = receipt.message_id.clone();
        async move {
            (hub.cli_json(&["messages", "show", &id])["deliveries"][0]["state"] == "accepted")
                .then_some(())
        }
    })
    .await;
}

/// `messages show ID --original PATH`.
fn fetch_original(hub: &Hub, id: &str, path: &std::path::Path) -> std::process::Output {
    hub.cli(&["messages", "show", id, "--original", path.to_str().unwrap()])
}

fn segments_in(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(data_dir.join("payloads").join("log"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect()
}

#[tokio::test]
async fn purge_goes_through_every_batch() {
    // More than one batch (1,000) of finished messages: one purge takes them all.
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let n = 1_050;
    for i in 0..n {
        // A81003 is closed: unroutable, final at once.
        sub.submit_document(letter(&format!("BATCH-{i}"), &["A81003"]))
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let plan = hub.cli_json(&["purge", "--older-than", "1s", "--dry-run"]);
    assert_eq!(plan["messages"], n, "{}", plan["messages"]);
    assert_eq!(
        plan["message_ids"].as_array().unwrap().len(),
        1000,
        "ids are capped"
    );
    let text = String::from_utf8(
        hub.cli(&["purge", "--older-than", "1s", "--dry-run"])
            .stdout,
    )
    .unwrap();
    assert!(
        text.contains("... and 50 more"),
        "{}",
        &text[text.len() - 200..]
    );
    let done = hub.cli_json(&["purge", "--older-than", "1s"]);
    assert_eq!(done["messages"], n);
    assert_eq!(
        hub.cli_json(&["purge", "--older-than", "1s"])["messages"],
        0
    );
}

#[tokio::test]
async fn stats_show_the_last_hour_and_day_by_sender_and_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    for (n, to) in [["A81001"], ["A81003"], ["A81001"]].iter().enumerate() {
        sub.submit_document(letter(&format!("STATS-{n}"), to))
            .await
            .unwrap();
    }
    let mut other = letter("STATS-R1K", &["A81002"]);
    other.sender_ods = "R1K".into();
    sub.submit_document(other).await.unwrap();
    let s = hub.cli_json(&["stats"]);
    // The hub reports its own resident memory, as the kernel sees it.
    let status = std::fs::read_to_string(format!("/proc/{}/status", hub.pid().unwrap())).unwrap();
    let kernel_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let reported = s["resident_bytes"].as_f64().unwrap() / 1024.0;
    assert!(
        (0.5..2.0).contains(&(reported / kernel_kib)),
        "reported {reported} KiB, kernel says {kernel_kib} KiB"
    );
    assert_eq!(s["received_last_hour"], 4, "{s}");
    assert_eq!(s["received_last_day"], 4, "{s}");
    let find = |list: &str, ods: &str| {
        s[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["ods_code"] == ods)
            .unwrap_or_else(|| panic!("{ods} not in {list}: {s}"))
            .clone()
    };
    assert_eq!(s["senders"][0]["ods_code"], "RX1", "busiest first");
    assert_eq!(find("senders", "RX1")["last_day"], 3);
    assert_eq!(
        find("senders", "RX1")["need_attention"],
        1,
        "A81003 is unroutable"
    );
    assert_eq!(find("senders", "R1K")["last_hour"], 1);
    assert_eq!(find("recipients", "A81001")["last_day"], 2);
    assert_eq!(find("recipients", "A81003")["need_attention"], 1);
    let text = hub.cli(&["stats"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("SENDER") && text.contains("RECIPIENT"),
        "{text}"
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // As with `edthub ... | head` once head has had enough: every write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(edt_tests::binary())
        .args(["completions", "bash"])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {out:?}");
}

#[tokio::test]
async fn listen_and_connect_addresses_take_host_names() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(edt_tests::binary())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--grpc-addr",
            "localhost:0",
            "--http-addr",
            "localhost:0",
            "--smtp-addr",
            "localhost:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    let (Some(grpc), Some(smtp)) = (field("grpc="), field("smtp=")) else {
        let _ = child.kill();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        panic!("the hub did not start on localhost: {line:?} {err}");
    };
    assert!(smtp != "off", "{line}");
    // The CLI reaches it by name, with and without a scheme.
    let port = grpc.rsplit(':').next().unwrap().to_string();
    for hub in [
        format!("http://localhost:{port}"),
        format!("localhost:{port}"),
    ] {
        let out = Command::new(edt_tests::binary())
            .args(["stats", "--json", "--hub", &hub])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "--hub {hub}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    // A name that is not HOST:PORT is a usage error naming the form.
    let out = Command::new(edt_tests::binary())
        .args(["serve", "--grpc-addr", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn logs_off_a_terminal_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    sub.submit_document(letter("EPR-LOG", &["A81001"]))
        .await
        .unwrap();
    hub.wait_all_sent(
        hub.cli_json(&["messages", "list"])["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap().to_string()),
        20,
    )
    .await;
    let log = hub.log();
    assert!(log.contains("hub ready"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a log written to a file: {log:?}"
    );
}

#[tokio::test]
async fn impossible_days_are_refused_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    for (args, words) in [
        (
            vec!["messages", "list", "--since", "2026-02-31"],
            "February 2026 has no day 31",
        ),
        (
            vec!["messages", "list", "--since", "1d", "--until", "2026-04-31"],
            "--until: \"2026-04-31\": April 2026 has no day 31",
        ),
        (
            vec!["messages", "list", "--since", "2026-02-30T10:00:00Z"],
            "February 2026 has no day 30",
        ),
        (
            vec!["audit", "export", "--since", "2025-02-29"],
            "February 2025 has no day 29",
        ),
    ] {
        let out = hub.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
    // A real day is taken: from its midnight, UTC.
    let listed = hub.cli_json(&["messages", "list", "--since", "2024-02-29"]);
    assert!(listed["messages"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_message_is_shown_by_any_of_its_delivery_ids() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-SHOW", &["A81001", "A81002"]))
        .await
        .unwrap()
        .into_inner();
    for d in &r.deliveries {
        let shown = hub.cli_json(&["messages", "show", &d.delivery_id]);
        assert_eq!(shown["message_id"], r.message_id);
        assert_eq!(shown["asked_for_delivery"], d.delivery_id);
        assert_eq!(shown["all_deliveries"].as_array().unwrap().len(), 2);
        let out = hub.cli(&["messages", "show", &d.delivery_id]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Message   {}", r.message_id)),
            "{text}"
        );
    }
    // An id that is neither says so.
    let out = hub.cli(&["messages", "show", "0190c0de-0000-7000-8000-000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no message or delivery"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the README tells receivers: a stock client's 4 MiB receive limit fails on a 5 MiB
/// letter, and grpcio's `grpc.max_receive_message_length` lets it through.
#[tokio::test]
async fn a_stock_receiver_needs_the_receive_limit_the_readme_gives() {
    const TOKEN: &str = "practice-a81001-secret";
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let toml = dir.path().join("directory.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let from = "[endpoints.a81001-drop]\nkind = \"file\"\npath = \"drop/A81001\"";
    assert!(text.contains(from));
    let to = format!(
        "[endpoints.a81001-drop]\nkind = \"grpc\"\ntoken_sha256 = \"{}\"",
        edt_transforms::sha256_hex(TOKEN.as_bytes())
    );
    std::fs::write(&toml, text.replace(from, &to)).unwrap();
    hub.cli_json(&["directory", "reload"]);
    let mut req = letter("EPR-5MIB", &["A81001"]);
    req.payload.resize(5 * 1024 * 1024, b' ');
    let r = hub
        .submission()
        .await
        .submit_document(req)
        .await
        .unwrap()
        .into_inner();
    hub.wait_all_sent([r.message_id], 20).await;
    let pull = |limit: Option<&str>| {
        let mut c = Command::new(edt_tests::peers_python());
        c.arg(edt_tests::workspace().join("tests/peers/grpc_pull.py"))
            .arg(hub.grpc.trim_start_matches("http://"))
            .arg(TOKEN);
        c.args(limit);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let stock = pull(None);
    assert_eq!(stock["code"], "RESOURCE_EXHAUSTED", "{stock}");
    let readme = std::fs::read_to_string(edt_tests::workspace().join("README.md")).unwrap();
    assert!(readme.contains("grpc.max_receive_message_length"));
    assert!(readme.contains("maxInboundMessageSize"));
    let raised = pull(Some(&(32 * 1024 * 1024).to_string()));
    assert_eq!(raised["payload_bytes"], 5 * 1024 * 1024, "{raised}");
}
