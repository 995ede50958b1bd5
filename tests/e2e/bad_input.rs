//! Bad input gets a specific error and leaves nothing stored; unknown recipients are kept as
//! `unroutable` and replayable once the directory knows them.

use edt_proto::v1;
use edt_tests::{drop_indexes, eventually, letter, state, Hub, FAST};
use tonic::Code;

#[tokio::test]
async fn invalid_submissions_name_the_field_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        dir.path(),
        &format!("{FAST}\n[limits]\nmax_payload_bytes = 1024\n"),
    );
    let mut sub = hub.submission().await;
    type Mutate = fn(&mut v1::SubmitDocumentRequest);
    let cases: [(Mutate, &str); 10] = [
        (|r| r.sender_ods.clear(), "sender_ods"),
        (
            |r| r.sender_ods = "RX9".into(),
            "RX9 is not a registered sender",
        ),
        (|r| r.recipient_ods = vec!["A8#001".into()], "recipient_ods"),
        (
            |r| r.recipient_ods.clear(),
            "recipient_ods: at least one recipient",
        ),
        (|r| r.document_type = 0, "document_type"),
        (|r| r.content_type = "pdf".into(), "content_type"),
        (
            |r| r.payload = vec![b'x'; 1025],
            "payload: is 1025 bytes; the limit is 1024",
        ),
        (|r| r.local_id.clear(), "local_id"),
        (
            |r| r.nhs_number = "9434765918".into(),
            "nhs_number: fails the Modulus 11 check",
        ),
        (|r| r.file_name = "../../etc/passwd".into(), "file_name"),
    ];
    for (mutate, words) in cases {
        let mut req = letter("EPR-BAD", &["A81001"]);
        mutate(&mut req);
        let err = sub.submit_document(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{words}: {err:?}");
        assert!(
            err.message().contains(words),
            "{:?} should contain {words:?}",
            err.message()
        );
    }
    let listed = hub.cli_json(&["messages", "list"]);
    assert!(
        listed["messages"].as_array().unwrap().is_empty(),
        "nothing was stored"
    );
    let stats = hub.cli_json(&["stats"]);
    assert_eq!(stats["messages"], 0);
    assert!(drop_indexes(&hub.drop_folder("A81001")).is_empty());
    // The same local id is still free: no half-stored dedupe entry.
    let ok = sub
        .submit_document(letter("EPR-BAD", &["A81001"]))
        .await
        .unwrap()
        .into_inner();
    assert!(!ok.duplicate);
}

#[tokio::test]
async fn unknown_recipient_is_unroutable_until_the_directory_knows_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-UNR", &["A81001", "X12345"]))
        .await
        .unwrap()
        .into_inner();
    let states: Vec<_> = r.deliveries.iter().map(|d| state(d.state)).collect();
    assert_eq!(states, ["pending", "unroutable"]);
    assert_eq!(r.deliveries[1].last_error, "not in the directory");
    let listed = hub.cli_json(&["messages", "list", "--state", "unroutable"]);
    assert_eq!(listed["messages"][0]["message_id"], r.message_id);

    // A replay before the directory is fixed says why nothing happened.
    let out = hub.cli(&["replay", &r.message_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("still unroutable"));

    // Ops adds the practice and restarts the hub.
    hub.stop();
    let directory = dir.path().join("directory.toml");
    let mut text = std::fs::read_to_string(&directory).unwrap();
    text.push_str(
        "\n[endpoints.x12345-drop]\nkind = \"file\"\npath = \"drop/X12345\"\n\n\
         [organisations.X12345]\nname = \"Newly Added Practice\"\nendpoint = \"x12345-drop\"\n",
    );
    std::fs::write(&directory, text).unwrap();
    std::fs::create_dir_all(dir.path().join("drop/X12345/acks")).unwrap();
    let hub = Hub::start_with(dir.path(), &hub.config.clone());

    let out = hub.cli(&["replay", &r.message_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folder = hub.drop_folder("X12345");
    let idx = eventually(10, "delivery to the newly added practice", || {
        let f = folder.clone();
        async move { drop_indexes(&f).into_iter().next() }
    })
    .await;
    assert_eq!(idx["message_id"], r.message_id);
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    assert_eq!(shown["all_deliveries"].as_array().unwrap().len(), 3);
    let a = drop_indexes(&hub.drop_folder("A81001"));
    assert_eq!(a.len(), 1, "the routable recipient was not delivered twice");
}

#[tokio::test]
async fn oversize_submissions_name_the_payload_limit_or_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 256 * 1024;
    let hub = Hub::start(
        dir.path(),
        &format!("{FAST}\n[limits]\nmax_payload_bytes = {limit}\n"),
    );
    let mut sub = hub.submission().await;
    // Just over the limit, past the room left for the other fields, and several times over:
    // the sender is told which field and what the limit is.
    for (i, size) in [limit + 1, limit + 100 * 1024, 3 * limit, 4 * limit]
        .into_iter()
        .enumerate()
    {
        let mut req = letter(&format!("EPR-BIG-{i}"), &["A81001"]);
        req.payload = vec![b'x'; size];
        let err = sub.submit_document(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{size} bytes: {err:?}");
        assert!(
            err.message().starts_with("payload: ")
                && err
                    .message()
                    .contains(&format!("the limit is {limit} bytes")),
            "{size} bytes: {:?}",
            err.message()
        );
    }
    // Far beyond it: refused as too much, without reading it.
    let mut req = letter("EPR-HUGE", &["A81001"]);
    req.payload = vec![b'x'; 20 * limit];
    let err = sub.submit_document(req).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("payload limit of {limit} bytes")),
        "{:?}",
        err.message()
    );
    // The connection is still good, and nothing was stored.
    let ok = sub
        .submit_document(letter("EPR-BIG-0", &["A81001"]))
        .await
        .unwrap()
        .into_inner();
    assert!(!ok.duplicate);
    assert_eq!(hub.cli_json(&["stats"])["messages"], 1);
}
