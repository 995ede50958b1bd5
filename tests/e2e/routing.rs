//! Routing against the national practice file: explain, organisation lookup, successors,
//! reloads (on request and on file change) and refused directories.

use edt_tests::{drop_indexes, eventually, letter, state, Hub, FAST};

#[tokio::test]
async fn route_explain_and_directory_show() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let e = hub.cli_json(&[
        "route",
        "explain",
        "--to",
        "A81001",
        "--to",
        "A81003",
        "--to",
        "V81999",
        "--type",
        "discharge-summary",
    ]);
    assert_eq!(e["routes"][0]["recipient_ods"], "A81001");
    assert_eq!(e["routes"][0]["endpoint"], "a81001-drop");
    assert_eq!(e["routes"][0]["rule"], "A81001 drop folder");
    assert_eq!(e["routes"].as_array().unwrap().len(), 1);
    assert_eq!(
        e["unroutable"][0]["reason"],
        "A81003 is closed since 2017-10-31 and has no successor"
    );
    assert!(e["unroutable"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("trace with PDS"));
    let trace = e["trace"].to_string();
    assert!(
        trace.contains("skipped rule \\\"every other practice\\\""),
        "{trace}"
    );
    // Any active practice in England routes, through the catch-all.
    let other = hub.cli_json(&[
        "route",
        "explain",
        "--to",
        "B82005",
        "--type",
        "order-result",
    ]);
    assert_eq!(other["routes"][0]["endpoint"], "other-practices");
    let text = hub.cli(&["route", "explain", "--to", "A81001"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("matched rule \"A81001 drop folder\""));

    let o = hub.cli_json(&["directory", "show", "A81001"]);
    assert_eq!(o["name"], "THE DENSHAM SURGERY");
    assert_eq!(o["status"], "active");
    assert_eq!(o["commissioner"], "00K");
    assert_eq!(o["supplier"], "TPP");
    assert_eq!(o["prescribing_setting"], 4);
    assert_eq!(o["source"], "practice-file");
    assert_eq!(
        o["routes_by_type"].as_array().unwrap().len(),
        6,
        "one route per document type"
    );
    let missing = hub.cli(&["directory", "show", "QQQ999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not in the directory"));
}

#[tokio::test]
async fn a_closed_practice_is_reached_through_its_successor_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-CLOSED", &["A81003"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(r.deliveries[0].state), "unroutable");
    assert!(r.deliveries[0].last_error.contains("closed"));

    // The merger is recorded; ops reloads and replays.
    std::fs::write(
        dir.path().join("successors.csv"),
        "old,new,effective\nA81003,A81006,2017-11-01\n",
    )
    .unwrap();
    let toml = dir.path().join("directory.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace(
            "# successors = \"successors.csv\"",
            "successors = \"successors.csv\"",
        ),
    )
    .unwrap();
    hub.cli_json(&["directory", "reload"]);
    let shown = hub.cli_json(&["directory", "show", "A81003"]);
    assert_eq!(shown["successor"], "A81006");
    let out = hub.cli(&["replay", &r.message_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folder = hub.drop_folder("A81006");
    let idx = eventually(10, "delivery to the successor", || {
        let f = folder.clone();
        async move { drop_indexes(&f).into_iter().next() }
    })
    .await;
    assert_eq!(idx["message_id"], r.message_id);
    assert_eq!(idx["recipient_ods"], "A81006");
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    let created = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "created")
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(
        created
            .iter()
            .any(|r| r.contains("A81003: merged into A81006 on 2017-11-01")),
        "{created:?}"
    );
}

#[tokio::test]
async fn a_broken_directory_is_refused_whole_and_the_old_one_keeps_routing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let practices = dir.path().join("epraccur.csv");
    let good = std::fs::read_to_string(&practices).unwrap();
    let broken = good.replacen("\"A81002\",", "\"A81002\",\"extra\",", 1);
    std::fs::write(&practices, broken).unwrap();
    let out = hub.cli(&["directory", "reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("epraccur.csv line 2") && err.contains("expected 27 columns, found 28"),
        "{err}"
    );
    assert!(err.contains("previous one stays in use"), "{err}");
    // Routing goes on with the directory loaded before.
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-STILL", &["A81002"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(r.deliveries[0].state), "pending");
    let e = hub.cli_json(&["route", "explain", "--to", "A81002"]);
    assert_eq!(e["routes"][0]["endpoint"], "a81002-drop");
}

#[tokio::test]
async fn the_directory_reloads_when_its_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &format!("directory_check_ms = 200\n{FAST}"));
    let before = hub.cli_json(&["route", "explain", "--to", "X12345"]);
    assert!(before["routes"].as_array().unwrap().is_empty());
    let toml = dir.path().join("directory.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[organisations.X12345]\nname = \"Riverside Care Home\"\nendpoint = \"other-practices\"\n");
    std::fs::write(&toml, text).unwrap();
    eventually(10, "the change to be picked up", || {
        let e = hub.cli_json(&["route", "explain", "--to", "X12345"]);
        async move { (e["routes"][0]["endpoint"] == "other-practices").then_some(()) }
    })
    .await;
    // A broken edit is refused and logged, and routing carries on with the last good file.
    std::fs::write(&toml, "this is not toml [").unwrap();
    eventually(10, "the refusal to be logged", || {
        let log = hub.log();
        async move { log.contains("directory reload refused").then_some(()) }
    })
    .await;
    let still = hub.cli_json(&["route", "explain", "--to", "X12345"]);
    assert_eq!(still["routes"][0]["endpoint"], "other-practices");
}
