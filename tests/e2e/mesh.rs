//! MESH against NHS Digital's own sandbox (PyPI `mesh-sandbox`, run with uvicorn), with the GP
//! side played by NHS England's own client (PyPI `Mesh-Client`): documents out, ITK3 responses
//! and MESH reports back, and the delivery states they lead to.

use edt_proto::v1;
use edt_tests::{free_port, peers_python as python, workspace, Hub, FAST};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const HUB_MAILBOX: &str = "RX1EDT001";
pub(crate) const KEY: &str = "TestKey";

/// The MESH sandbox on a port, with the hub's and the practices' mailboxes.
pub(crate) struct Sandbox {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Sandbox {
    pub(crate) fn start(dir: &Path) -> Sandbox {
        let mut s = Sandbox {
            child: None,
            port: free_port(),
            log: dir.join("mesh-sandbox.log"),
        };
        s.run();
        s
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        // The sandbox reads its mailboxes and workflows from its package's data folder.
        let out = Command::new(python())
            .args([
                "-c",
                "import mesh_sandbox, os; print(os.path.join(os.path.dirname(mesh_sandbox.__file__), 'store', 'data'))",
            ])
            .output()
            .expect("python");
        let data = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            data.is_dir(),
            "mesh-sandbox is not installed in the peers' venv"
        );
        for f in ["mailboxes.jsonl", "workflows.jsonl"] {
            let tmp = data.join(format!(".{f}.{}.{}", std::process::id(), self.port));
            std::fs::copy(
                workspace().join("deploy/compose/mesh-sandbox").join(f),
                &tmp,
            )
            .unwrap();
            std::fs::rename(&tmp, data.join(f)).unwrap();
        }
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(python())
            .args([
                "-m",
                "uvicorn",
                "mesh_sandbox.api:app",
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &self.port.to_string()])
            .env("SHARED_KEY", KEY)
            .env("AUTH_MODE", "full")
            .env("STORE_MODE", "memory")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the MESH sandbox");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(self.port, "/health").is_none() {
            assert!(
                Instant::now() < deadline,
                "the MESH sandbox did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Acts as a GP system's mailbox: downloads and acknowledges everything waiting.
    pub(crate) fn receive(&self, mailbox: &str, out: &Path) -> Vec<serde_json::Value> {
        std::fs::create_dir_all(out).unwrap();
        let o = self.gp(mailbox, &["receive", "--out", &out.display().to_string()]);
        serde_json::from_slice::<Vec<serde_json::Value>>(&o).unwrap()
    }

    /// Sends files from a GP system's mailbox.
    fn send(&self, mailbox: &str, to: &str, workflow: &str, files: &[PathBuf]) {
        let mut args = vec![
            "send".to_string(),
            "--to".into(),
            to.into(),
            "--workflow".into(),
            workflow.into(),
        ];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.gp(mailbox, &args);
    }

    fn gp(&self, mailbox: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new(python())
            .arg(workspace().join("tests/peers/mesh_gp.py"))
            .args(["--url", &self.url(), "--mailbox", mailbox, "--key", KEY])
            .args(args)
            .stderr(Stdio::piped())
            .output()
            .expect("run the GP's MESH client");
        assert!(
            out.status.success(),
            "mesh_gp.py {args:?} failed: {}\n{}\nsandbox log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        out.stdout
    }

    /// Acts as a GP system: downloads everything waiting, validates each ITK3 message with the
    /// independent validator (failing the test if one is invalid), acknowledges it at MESH, and
    /// answers with an ITK3 response per code on the `_ACK` workflow.
    fn respond(&self, mailbox: &str, out: &Path, codes: &str) -> Vec<serde_json::Value> {
        std::fs::create_dir_all(out).unwrap();
        let o = self.gp(
            mailbox,
            &[
                "respond",
                "--out",
                &out.display().to_string(),
                "--codes",
                codes,
            ],
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&o).unwrap()
    }

    /// Puts a MESH REPORT about `linked` into the hub's inbox (the sandbox's admin API).
    fn report(&self, linked: &str, code: &str, description: &str) {
        let body = serde_json::json!({
            "mailbox_id": HUB_MAILBOX,
            "code": code,
            "description": description,
            "workflow_id": "TOC_FHIR_IP_DISCH",
            "linked_message_id": linked,
            "status": "undeliverable",
        })
        .to_string();
        let status = http(self.port, "POST", "/messageexchange/admin/report", &body)
            .expect("sandbox admin API");
        assert!(status.starts_with("HTTP/1.1 2"), "{status}");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

fn http(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    Some(r)
}

fn http_get(port: u16, path: &str) -> Option<String> {
    http(port, "GET", path, "").filter(|r| r.starts_with("HTTP/1.1 200"))
}

/// A hub whose practices A81001 and A81002 receive by MESH (A81002 in `a81002_format`, its
/// mailbox found by MESH's endpoint lookup; A81001 as ITK3), and A81004's endpoint is a
/// mailbox MESH does not know.
fn mesh_hub(dir: &Path, sandbox: &Sandbox, base: &str, extra: &str, a81002_format: &str) -> Hub {
    let hub = Hub::start(
        dir,
        &format!(
            "{base}\n[limits]\nmax_payload_bytes = 41943040\n\n[mesh]\nurl = \"{}\"\nmailbox = \"{HUB_MAILBOX}\"\n\
             password = \"password\"\nshared_key = \"{KEY}\"\npoll_ms = 300000\n{extra}\n",
            sandbox.url()
        ),
    );
    let toml = dir.join("directory.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    for (ods, kind, format) in [
        (
            "A81001",
            "kind = \"mesh\"\nmailbox = \"A81001GP001\"",
            "itk3",
        ),
        // No mailbox: MESH's endpoint lookup finds it for the workflow.
        ("A81002", "kind = \"mesh\"", a81002_format),
        (
            "A81004",
            "kind = \"mesh\"\nmailbox = \"NOSUCHBOX1\"",
            "itk3",
        ),
    ] {
        let lower = ods.to_ascii_lowercase();
        let from = format!("[endpoints.{lower}-drop]\nkind = \"file\"\npath = \"drop/{ods}\"");
        assert!(text.contains(&from), "sample directory changed: {from}");
        text = text.replace(&from, &format!("[endpoints.{lower}-drop]\n{kind}"));
        let rule = format!("endpoint = \"{lower}-drop\"\n");
        text = text.replace(&rule, &format!("{rule}format = \"{format}\"\n"));
    }
    std::fs::write(&toml, text).unwrap();
    hub.cli_json(&["directory", "reload"]);
    hub
}

/// A discharge summary as the trust's EPR sends it: an ITK3 message (FHIR XML).
fn discharge_summary(n: usize, pdf: &[u8]) -> Vec<u8> {
    edt_tests::itk3_message(n, "Discharge summary", pdf, true)
}

fn submission(local_id: &str, to: &str, payload: Vec<u8>) -> v1::SubmitDocumentRequest {
    v1::SubmitDocumentRequest {
        sender_ods: "RX1".into(),
        recipient_ods: vec![to.into()],
        document_type: v1::DocumentType::DischargeSummary as i32,
        content_type: "application/fhir+xml".into(),
        payload,
        local_id: local_id.into(),
        nhs_number: String::new(),
        file_name: String::new(),
        title: "Discharge summary".into(),
    }
}

/// An ITK3 response from practice `ods` to the message `original` with `code`, as a file.
fn response(dir: &Path, original: &str, code: u16, ods: &str) -> PathBuf {
    use edt_transforms::itk3::{render_response, ResponseCode, ResponseParams, ResponseTo};
    let code = *ResponseCode::ALL
        .iter()
        .find(|c| c.code() == code)
        .expect("a known response code");
    let id = edt_tests_id();
    let tree = render_response(
        &ResponseTo {
            message_id: Some(original.to_string()),
            sender_reference: None,
        },
        code,
        &ResponseParams {
            bundle_id: id.clone(),
            bundle_identifier: format!("{id}-b"),
            message_id: format!("{id}-m"),
            timestamp: "2026-11-25T10:00:00+00:00".into(),
            sender_ods: edt_transforms::OdsCode::parse(ods).unwrap(),
            source_endpoint: Some(format!("{ods}GP001")),
            diagnostics: (code.code() == 30002).then(|| "Patient not registered here".into()),
        },
    );
    let path = dir.join(format!("response-{}.xml", code.code()));
    std::fs::write(&path, edt_transforms::fhir::to_xml(&tree)).unwrap();
    path
}

fn edt_tests_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn delivery_of(hub: &Hub, message_id: &str) -> serde_json::Value {
    hub.cli_json(&["messages", "show", message_id])["deliveries"][0].clone()
}

async fn wait_state(hub: &Hub, message_id: &str, want: &str, secs: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let d = delivery_of(hub, message_id);
        if d["state"] == want {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "delivery never became {want}: {d}\nhub log:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn poll(hub: &Hub) -> serde_json::Value {
    hub.cli_json(&["mesh", "poll"])
}

#[tokio::test]
async fn the_ack_loop_runs_against_the_mesh_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(dir.path());
    let hub = mesh_hub(dir.path(), &sandbox, FAST, "", "itk3");
    let mut sub = hub.submission().await;

    // A discharge summary to A81001 arrives in its mailbox as an ITK3 message on the
    // discharge workflow, its MessageHeader id the delivery's id.
    let doc = discharge_summary(1, b"%PDF-1.4 discharge");
    let r = sub
        .submit_document(submission("MESH-1", "A81001", doc))
        .await
        .unwrap()
        .into_inner();
    let sent = wait_state(&hub, &r.message_id, "sent", 30).await;
    let delivery = sent["delivery_id"].as_str().unwrap().to_string();
    let inbox = dir.path().join("gp-a81001");
    let got = sandbox.receive("A81001GP001", &inbox);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["workflow"], "TOC_FHIR_IP_DISCH");
    assert_eq!(got[0]["from"], HUB_MAILBOX);
    assert_eq!(got[0]["local_id"], delivery.as_str());
    let body = std::fs::read(got[0]["file"].as_str().unwrap()).unwrap();
    let m = edt_transforms::itk3::read_message(&body, edt_transforms::itk3::Format::Xml)
        .expect("a valid ITK3 message");
    assert_eq!(m.message_id, delivery);
    assert_eq!(m.event, "ITK003D", "the discharge summary event");
    assert_eq!(
        m.receiver_ods
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>(),
        vec!["A81001"]
    );

    // The GP system answers on the _ACK workflow: the business response first, then the
    // infrastructure one (both orders are handled).
    sandbox.send(
        "A81001GP001",
        HUB_MAILBOX,
        "TOC_FHIR_IP_DISCH_ACK",
        &[
            response(dir.path(), &delivery, 30001, "A81001"),
            response(dir.path(), &delivery, 20013, "A81001"),
        ],
    );
    let p = poll(&hub);
    assert_eq!(p["seen"], 2, "{p}");
    assert_eq!(p["applied"], 2, "{p}");
    let d = delivery_of(&hub, &r.message_id);
    assert_eq!(d["state"], "accepted", "{d}");
    assert_eq!(d["ack_code"], "30001");
    let events = hub.timeline_events(&r.message_id);
    for e in [
        "transport-accepted",
        "business-accept",
        "late-infrastructure-ack",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} not in {events:?}");
    }
    let timeline = hub.cli_json(&["messages", "show", &r.message_id])["timeline"].to_string();
    assert!(timeline.contains("mesh:A81001GP001"), "who: {timeline}");
    assert!(
        timeline.contains("sent to MESH mailbox A81001GP001"),
        "{timeline}"
    );
    assert_eq!(
        poll(&hub)["seen"],
        0,
        "acknowledged messages leave the inbox"
    );

    // A rejection from A81002: 30002 with its text.
    let r2 = sub
        .submit_document(submission(
            "MESH-2",
            "A81002",
            discharge_summary(2, b"%PDF-1.4 two"),
        ))
        .await
        .unwrap()
        .into_inner();
    let sent = wait_state(&hub, &r2.message_id, "sent", 30).await;
    let delivery2 = sent["delivery_id"].as_str().unwrap().to_string();
    assert_eq!(
        sandbox
            .receive("A81002GP001", &dir.path().join("gp-a81002"))
            .len(),
        1
    );
    sandbox.send(
        "A81002GP001",
        HUB_MAILBOX,
        "TOC_FHIR_IP_DISCH_ACK",
        &[
            response(dir.path(), &delivery2, 20013, "A81002"),
            response(dir.path(), &delivery2, 30002, "A81002"),
        ],
    );
    poll(&hub);
    let d = delivery_of(&hub, &r2.message_id);
    assert_eq!(d["state"], "rejected", "{d}");
    assert_eq!(d["ack_code"], "30002");
    assert!(
        d["ack_reason"]
            .as_str()
            .unwrap()
            .contains("Patient not registered here"),
        "{d}"
    );

    // A mailbox MESH does not know: refused at once (417, code 12), the delivery fails.
    let r3 = sub
        .submit_document(submission(
            "MESH-3",
            "A81004",
            discharge_summary(3, b"%PDF-1.4 three"),
        ))
        .await
        .unwrap()
        .into_inner();
    let d = wait_state(&hub, &r3.message_id, "failed", 30).await;
    assert!(
        d["last_error"].as_str().unwrap().contains("417"),
        "MESH's own words: {d}"
    );

    // A REPORT after MESH took a message (e.g. never collected): failed with the reason.
    let r4 = sub
        .submit_document(submission(
            "MESH-4",
            "A81001",
            discharge_summary(4, b"%PDF-1.4 four"),
        ))
        .await
        .unwrap()
        .into_inner();
    wait_state(&hub, &r4.message_id, "sent", 30).await;
    let shown = hub.cli_json(&["messages", "show", &r4.message_id]);
    let mesh_id = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| {
            e["reason"]
                .as_str()
                .and_then(|r| r.split(" as message ").nth(1))
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        })
        .expect("the MESH message id in the timeline");
    sandbox.report(
        &mesh_id,
        "14",
        "Message not collected by recipient after 5 days",
    );
    let p = poll(&hub);
    assert_eq!(p["applied"], 1, "{p}");
    let d = delivery_of(&hub, &r4.message_id);
    assert_eq!(d["state"], "failed", "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains("not collected"),
        "{d}"
    );

    // Unreadable or unmatched responses are kept and listed, never dropped.
    let junk = dir.path().join("junk.xml");
    std::fs::write(&junk, "<not-a-response/>").unwrap();
    let stranger = response(
        dir.path(),
        "01a21400-0000-7000-8000-000000000000",
        20013,
        "A81001",
    );
    sandbox.send(
        "A81001GP001",
        HUB_MAILBOX,
        "TOC_FHIR_IP_DISCH_ACK",
        &[junk, stranger],
    );
    let p = poll(&hub);
    assert_eq!(p["unmatched"], 2, "{p}");
    let listed = hub.cli_json(&["acks", "unmatched"]);
    let acks = listed["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 2, "{listed}");
    for a in acks {
        assert!(
            Path::new(a["kept_at"].as_str().unwrap()).exists(),
            "kept: {a}"
        );
    }
    assert!(listed.to_string().contains("not a readable ITK3 response"));
    assert!(listed.to_string().contains("does not know"));
}

#[tokio::test]
async fn sandbox_outage_is_retried_and_large_documents_go_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::start(dir.path());
    let hub = mesh_hub(
        dir.path(),
        &sandbox,
        "[delivery]\nmax_attempts = 30\ninitial_backoff_ms = 200\nmax_backoff_ms = 1000\nworkers = 4\n",
        "chunk_bytes = 4194304\n",
        "original",
    );
    let mut sub = hub.submission().await;

    // MESH away: the delivery retries, then goes once MESH is back.
    sandbox.stop();
    let r = sub
        .submit_document(submission(
            "OUTAGE-1",
            "A81001",
            discharge_summary(7, b"%PDF-1.4 outage"),
        ))
        .await
        .unwrap()
        .into_inner();
    let d = wait_state(&hub, &r.message_id, "retrying", 30).await;
    assert!(!d["last_error"].as_str().unwrap().is_empty(), "{d}");
    sandbox.run();
    wait_state(&hub, &r.message_id, "sent", 60).await;
    assert_eq!(
        sandbox
            .receive("A81001GP001", &dir.path().join("gp1"))
            .len(),
        1
    );

    // 30 MB: sent in 4 MiB gzipped chunks, reassembled byte for byte at the practice.
    let mut big = b"%PDF-1.4\n".to_vec();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while big.len() < 30 * 1024 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    // A PDF, to a practice that takes documents as they are sent.
    let mut req = submission("BIG-1", "A81002", big.clone());
    req.content_type = "application/pdf".into();
    req.nhs_number = "9434765919".into();
    req.file_name = "big.pdf".into();
    let r = sub.submit_document(req).await.unwrap().into_inner();
    wait_state(&hub, &r.message_id, "sent", 120).await;
    let timeline = hub.cli_json(&["messages", "show", &r.message_id])["timeline"].to_string();
    assert!(timeline.contains("8 chunks"), "{timeline}");
    let got = sandbox.receive("A81002GP001", &dir.path().join("gp2"));
    assert_eq!(got.len(), 1);
    let body = std::fs::read(got[0]["file"].as_str().unwrap()).unwrap();
    assert_eq!(body.len(), big.len());
    assert!(body == big, "reassembled byte for byte");
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace().join("tests/fixtures").join(name)).expect("fixture")
}

#[tokio::test]
async fn gp_systems_validate_file_and_answer_what_the_hub_sends() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(dir.path());
    // A81001 takes Transfer of Care as ITK3; A81002 takes GP Connect Send Document.
    let hub = mesh_hub(dir.path(), &sandbox, FAST, "", "gp-connect");
    let mut sub = hub.submission().await;

    let toc = submission("GP-TOC", "A81001", fixture("itk003d-discharge.xml"));
    let mut pdf = submission("GP-PDF", "A81002", fixture("letter.pdf"));
    pdf.content_type = "application/pdf".into();
    pdf.nhs_number = "9434765919".into();
    pdf.file_name = "letter.pdf".into();
    let mut itk007c = submission("GP-007C", "A81002", fixture("itk007c-send-document.xml"));
    itk007c.document_type = v1::DocumentType::GenericDocument as i32;
    let mut ids = Vec::new();
    for req in [toc, pdf, itk007c] {
        let r = sub.submit_document(req).await.unwrap().into_inner();
        ids.push(r.message_id);
    }
    let mut deliveries = Vec::new();
    for id in &ids {
        let d = wait_state(&hub, id, "sent", 30).await;
        deliveries.push(d["delivery_id"].as_str().unwrap().to_string());
    }

    // Each practice's system downloads, validates, acknowledges and answers 20013 then 30001.
    let mut got = sandbox.respond("A81001GP001", &dir.path().join("gp1"), "20013,30001");
    got.extend(sandbox.respond("A81002GP001", &dir.path().join("gp2"), "20013,30001"));
    assert_eq!(got.len(), 3, "{got:#?}");
    let mut seen: Vec<(String, String, String)> = got
        .iter()
        .map(|g| {
            assert_eq!(g["errors"], serde_json::json!([]), "{g}");
            assert_eq!(g["from"], HUB_MAILBOX);
            assert_eq!(
                g["source_endpoint"], HUB_MAILBOX,
                "the hub's mailbox is the source"
            );
            (
                g["message_id"].as_str().unwrap().to_string(),
                g["event"].as_str().unwrap().to_string(),
                g["workflow"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        (
            deliveries[0].clone(),
            "ITK003D".to_string(),
            "TOC_FHIR_IP_DISCH".to_string(),
        ),
        (
            deliveries[1].clone(),
            "ITK007C".into(),
            "GPFED_CONSULT_REPORT".into(),
        ),
        (
            deliveries[2].clone(),
            "ITK007C".into(),
            "GPFED_CONSULT_REPORT".into(),
        ),
    ];
    want.sort();
    assert_eq!(seen, want, "each message headed with its delivery's id");

    let p = poll(&hub);
    assert_eq!(p["applied"], 6, "{p}");
    assert_eq!(p["unmatched"], 0, "{p}");
    for id in &ids {
        let d = delivery_of(&hub, id);
        assert_eq!(d["state"], "accepted", "{d}");
        assert_eq!(d["ack_code"], "30001");
        let timeline = hub.cli_json(&["messages", "show", id])["timeline"].to_string();
        assert!(
            timeline.contains("by ITK3 response over MESH"),
            "the channel is named: {timeline}"
        );
    }

    // A patient the practice does not know: 30002, rejected with the GP system's words.
    let r = sub
        .submit_document(submission(
            "GP-TOC-2",
            "A81001",
            fixture("itk003d-discharge.xml"),
        ))
        .await
        .unwrap()
        .into_inner();
    wait_state(&hub, &r.message_id, "sent", 30).await;
    let got = sandbox.respond("A81001GP001", &dir.path().join("gp3"), "20013,30002");
    assert_eq!(got.len(), 1);
    poll(&hub);
    let d = delivery_of(&hub, &r.message_id);
    assert_eq!(d["state"], "rejected", "{d}");
    assert_eq!(d["ack_code"], "30002");
    assert!(
        d["ack_reason"].as_str().unwrap().contains("not known"),
        "{d}"
    );
    let listed = hub.cli_json(&["acks", "unmatched"]);
    assert_eq!(listed["acks"], serde_json::json!([]), "{listed}");
}
