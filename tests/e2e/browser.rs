//! The console in a real browser: headless Chromium (Debian's, driven by its chromedriver
//! through Python's selenium) signs in, finds the failed message, replays it and sees it
//! delivered; screenshots of the overview and a practice page at 1280×800 are written under
//! `target/console-screenshots/` for review.

use crate::console::{bearer, break_folder, identities, wait_state};
use edt_proto::v1;
use edt_tests::{letter, state, Hub, FAST};

#[tokio::test]
async fn a_person_replays_a_failed_message_in_the_browser() {
    for tool in ["chromium", "chromedriver"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "{tool} is not installed: tests/run-all installs chromium and chromium-driver"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &format!("{FAST}\n{}", identities()));
    let broken = break_folder(&hub, "A81002");
    let mut sub = hub.submission().await;
    let mut ids = Vec::new();
    // A day's traffic for the charts: most to A81001 (some filed), one that fails.
    for i in 0..12 {
        let to = if i == 5 { "A81002" } else { "A81001" };
        let mut l = letter(&format!("BROWSER-{i}"), &[to]);
        l.title = format!("Discharge summary {i}");
        let r = sub
            .submit_document(bearer(l, "tok-rx1"))
            .await
            .unwrap()
            .into_inner();
        ids.push((r.message_id, to));
    }
    for (id, to) in &ids {
        let want = if *to == "A81002" { "failed" } else { "sent" };
        wait_state(&hub, id, want).await;
    }
    // A81001 files most of them.
    let folder = hub.drop_folder("A81001");
    for (n, idx) in std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .enumerate()
    {
        if n % 4 == 3 {
            continue;
        }
        let stem = idx
            .path()
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        std::fs::write(
            folder.join("acks").join(format!("{stem}.ack")),
            r#"{"status":"accepted"}"#,
        )
        .unwrap();
    }
    // The share is back; the person at the console takes it from here.
    std::fs::remove_file(&broken).unwrap();
    std::fs::create_dir_all(broken.join("acks")).unwrap();

    let shots = edt_tests::workspace().join("target/console-screenshots");
    let out = std::process::Command::new(edt_tests::peers_python())
        .arg(edt_tests::workspace().join("tests/peers/console_browser.py"))
        .arg(format!("http://{}", hub.http))
        .arg("tok-ops")
        .arg(&broken)
        .arg("A81001")
        .arg(&shots)
        .output()
        .expect("run the browser");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser session failed: {}\n{stdout}\nhub log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        hub.log()
    );
    let failed_id = &ids[5].0;
    assert!(
        stdout.contains(&format!("\"replayed\": \"{failed_id}\"")),
        "{stdout}"
    );
    assert!(stdout.contains("\"viewport\": [1280, 800]"), "{stdout}");
    for name in ["overview.png", "practice.png"] {
        let png = std::fs::read(shots.join(name)).expect("a screenshot");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        let (w, h) = (
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            u32::from_be_bytes(png[20..24].try_into().unwrap()),
        );
        assert_eq!((w, h), (1280, 800), "{name}");
    }
    // Recorded as the CLI's replay would be.
    let mut admin = hub.admin().await;
    let d = admin
        .get_message(bearer(
            v1::GetMessageRequest {
                message_id: failed_id.clone(),
            },
            "tok-ops",
        ))
        .await
        .unwrap()
        .into_inner();
    let replayed = d
        .timeline
        .iter()
        .find(|e| e.event == "replayed")
        .expect("a replayed event");
    assert_eq!(replayed.actor, "ops:night-ops");
    assert!(
        replayed.reason.ends_with("drop share remounted"),
        "{}",
        replayed.reason
    );
    assert_eq!(state(d.status.unwrap().state), "delivered");
}
