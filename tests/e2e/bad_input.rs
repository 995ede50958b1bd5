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

#[tokio::test]
async fn a_reused_local_id_is_a_duplicate_only_for_the_same_document() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let first = sub
        .submit_document(letter("EPR-SAME", &["A81001", "A81002"]))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.duplicate);
    // The same document to the same recipients (in any order): the original receipt.
    let again = sub
        .submit_document(letter("EPR-SAME", &["A81002", "A81001"]))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.deliveries.len(), first.deliveries.len());
    // A corrected letter, or the letter to other recipients, under the same local id: refused,
    // naming the original, never dropped silently.
    let mut corrected = letter("EPR-SAME", &["A81001", "A81002"]);
    corrected.payload = b"%PDF-1.4\n% discharge summary, corrected dose\n".to_vec();
    let mut elsewhere = letter("EPR-SAME", &["A81001", "A81004"]);
    elsewhere.title = "Discharge summary (copy)".into();
    for (req, what) in [(corrected, "content"), (elsewhere, "recipients")] {
        let err = sub.submit_document(req).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{what}: {err:?}");
        let m = err.message();
        assert!(
            m.starts_with("local_id: ")
                && m.contains(&first.message_id)
                && m.contains(&format!("with different {what}")),
            "{what}: {m:?}"
        );
        assert_eq!(
            err.metadata()
                .get("edthub-original-message-id")
                .and_then(|v| v.to_str().ok()),
            Some(first.message_id.as_str())
        );
    }
    assert_eq!(hub.cli_json(&["stats"])["messages"], 1);
}

/// One SMTP transaction (plain, registered sender) mailing `pdf` as the document with
/// `Message-ID: <message_id>`; the reply to the end of DATA.
fn mail_once(addr: &str, message_id: &str, pdf: &[u8]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    let mut reply = || {
        let mut last = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "connection closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                last.push_str(line.trim_end());
                return last;
            }
        }
    };
    let b64 = edt_transforms::itk3::base64_encode(pdf);
    let message = format!(
        "From: <letters@trust.nhs.uk>\r\nTo: <A81001@hub.test>\r\n\
         Subject: Discharge summary [nhs:9434765919] [type:discharge-summary]\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
         --XX\r\nContent-Type: text/plain\r\n\r\nLetter attached.\r\n\
         --XX\r\nContent-Type: application/pdf\r\n\
         Content-Disposition: attachment; filename=\"letter.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--XX--\r\n.\r\n"
    );
    assert!(reply().starts_with("220"));
    for (command, code) in [
        ("EHLO trust.nhs.uk", "250"),
        ("MAIL FROM:<letters@trust.nhs.uk>", "250"),
        ("RCPT TO:<A81001@hub.test>", "250"),
        ("DATA", "354"),
    ] {
        write!(w, "{command}\r\n").unwrap();
        let got = reply();
        assert!(got.starts_with(code), "{command}: {got}");
    }
    w.write_all(message.as_bytes()).unwrap();
    let end = reply();
    write!(w, "QUIT\r\n").unwrap();
    end
}

#[tokio::test]
async fn a_reused_message_id_by_mail_is_refused_for_another_document() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        dir.path(),
        &format!(
            "{FAST}\n[smtp]\nlisten = \"127.0.0.1:0\"\ndomain = \"hub.test\"\n\n\
             [[smtp.senders]]\naddress = \"letters@trust.nhs.uk\"\nsender_ods = \"RX1\"\n"
        ),
    );
    let smtp = hub.smtp.clone().expect("an SMTP listener");
    let letter = b"%PDF-1.4\n% mailed letter\n";
    let first = mail_once(&smtp, "letter-1@trust.nhs.uk", letter);
    assert!(first.starts_with("250 "), "{first}");
    let id = first
        .split("queued as ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let again = mail_once(&smtp, "letter-1@trust.nhs.uk", letter);
    assert!(
        again.starts_with("250 ") && again.contains(&id) && again.contains("already received"),
        "{again}"
    );
    let changed = mail_once(
        &smtp,
        "letter-1@trust.nhs.uk",
        b"%PDF-1.4\n% mailed letter, corrected\n",
    );
    assert!(
        changed.starts_with("554 ")
            && changed.contains(&id)
            && changed.contains("different content"),
        "{changed}"
    );
    assert_eq!(hub.cli_json(&["stats"])["messages"], 1);
}

#[tokio::test]
async fn a_data_disk_down_to_its_reserve_refuses_new_documents_and_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    // A reserve no disk has: every document would eat into it.
    let hub = Hub::start(
        dir.path(),
        &format!("{FAST}\n[limits]\nmin_free_disk_mb = 1000000000000\n"),
    );
    let (code, body) = hub.http_get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("MiB kept in reserve"), "{body}");
    let err = hub
        .submission()
        .await
        .submit_document(letter("EPR-FULL", &["A81001"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("limits.min_free_disk_mb"),
        "names the setting: {:?}",
        err.message()
    );
    let stats = hub.cli_json(&["stats"]);
    assert_eq!(stats["messages"], 0, "nothing was stored");
}

#[tokio::test]
async fn a_log_that_cannot_be_written_never_fails_a_request() {
    // Every log line fails to write (ENOSPC), as under a full disk.
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_logging_to(dir.path(), FAST, std::path::Path::new("/dev/full"));
    let mut sub = hub.submission().await;
    let ok = sub
        .submit_document(letter("EPR-LOGFULL", &["A81001"]))
        .await
        .expect("a good document is receipted")
        .into_inner();
    assert!(!ok.duplicate);
    let mut bad = letter("EPR-LOGFULL-2", &["A81001"]);
    bad.nhs_number = "9434765918".into();
    let err = sub.submit_document(bad).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "a clear refusal, not a broken call: {err:?}"
    );
    hub.wait_all_sent([ok.message_id], 30).await;
    let (code, metrics) = hub.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("edthub_log_lines_lost_total"),
        "lost log lines are counted"
    );
}
