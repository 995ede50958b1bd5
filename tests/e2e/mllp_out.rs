//! Results end to end: in by MLLP from the laboratory, out to the practice as HL7 v2 over
//! MLLP to a results system (python-hl7's own MLLP server, `tests/peers/mllp_receiver.py`),
//! and as a FHIR R4 pathology report over MESH (NHS Digital's sandbox, NHS England's
//! Mesh-Client as the GP system), each acknowledged.

use crate::formats::{assert_valid, fixture};
use crate::mesh::{Sandbox, HUB_MAILBOX, KEY};
use crate::mllp::{mllp_config, oru, Conn};
use edt_tests::{free_port, peers_python, workspace, Hub};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Points practice `ods`'s rule at a new endpoint (`kind` and its settings) in `format`.
fn route(hub: &Hub, ods: &str, endpoint: &str, format: &str) {
    let toml = hub.data_dir.join("directory.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    let lower = ods.to_ascii_lowercase();
    let from = format!("[endpoints.{lower}-drop]\nkind = \"file\"\npath = \"drop/{ods}\"");
    assert!(text.contains(&from), "sample directory changed: {from}");
    text = text.replace(&from, &format!("[endpoints.{lower}-drop]\n{endpoint}"));
    let rule = format!("endpoint = \"{lower}-drop\"\n");
    text = text.replace(&rule, &format!("{rule}format = \"{format}\"\n"));
    std::fs::write(&toml, text).unwrap();
    hub.cli_json(&["directory", "reload"]);
}

struct Receiver {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Receiver {
    fn start(port: u16, out: &Path, answers: &str) -> Receiver {
        std::fs::create_dir_all(out).unwrap();
        let mut child = Command::new(peers_python())
            .arg(workspace().join("tests/peers/mllp_receiver.py"))
            .args(["--port", &port.to_string(), "--answers", answers, "--out"])
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the MLLP receiver");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("receiver up");
        assert_eq!(first, "listening");
        Receiver { child, lines }
    }

    /// The next message the receiver got: {"n", "control_id", "answer"}.
    fn next(&self) -> serde_json::Value {
        let l = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a message at the receiver");
        serde_json::from_str(&l).unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_state(hub: &Hub, message_id: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = hub.cli_json(&["messages", "show", message_id])["deliveries"][0].clone();
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

fn stored_id(hub: &Hub, local_id: &str) -> String {
    let list = hub.cli_json(&["messages", "list", "--search", local_id]);
    list["messages"][0]["message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{local_id} not stored: {list}"))
        .to_string()
}

#[tokio::test]
async fn results_in_by_mllp_and_out_to_a_results_system_by_mllp() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let got = tmp.path().join("received");
    let receiver = Receiver::start(port, &got, "AA,AE,none,AA");
    let hub = Hub::start(tmp.path(), &mllp_config(""));
    route(
        &hub,
        "A81001",
        &format!("kind = \"mllp\"\naddress = \"127.0.0.1:{port}\"\ntimeout_secs = 5"),
        "hl7v2",
    );
    let mut lab = Conn::open(hub.mllp.as_ref().unwrap());

    // Accepted by the results system: sent, its control id the transport id.
    let first = oru("RX1", "OUT-1", "9434765919", "");
    assert_eq!(lab.exchange(&first).code(), "AA");
    let id = stored_id(&hub, "RX1/OUT-1");
    let d = wait_state(&hub, &id, "sent").await;
    let seen = receiver.next();
    assert_eq!(seen["control_id"], "OUT-1");
    assert_eq!(seen["answer"], "AA");
    assert_eq!(
        std::fs::read_to_string(got.join("0.hl7"))
            .unwrap()
            .trim_end(),
        first.trim_end(),
        "the result as the laboratory sent it"
    );
    let shown = hub.cli_json(&["messages", "show", &id]).to_string();
    assert!(shown.contains("answered AA"), "{shown}\n{d}");

    // Refused by the results system: rejected, with its ERR text.
    assert_eq!(
        lab.exchange(&oru("RX1", "OUT-2", "9434765919", "")).code(),
        "AA"
    );
    let id = stored_id(&hub, "RX1/OUT-2");
    let d = wait_state(&hub, &id, "rejected").await;
    assert_eq!(receiver.next()["answer"], "AE");
    let shown = hub.cli_json(&["messages", "show", &id]).to_string();
    assert!(
        shown.contains("Patient not known to this practice"),
        "{shown}"
    );
    assert!(d.to_string().contains("AE"), "{d}");

    // No answer: retried, then accepted.
    assert_eq!(
        lab.exchange(&oru("RX1", "OUT-3", "9434765919", "")).code(),
        "AA"
    );
    let id = stored_id(&hub, "RX1/OUT-3");
    assert_eq!(receiver.next()["answer"], "none");
    let d = wait_state(&hub, &id, "sent").await;
    assert_eq!(receiver.next()["answer"], "AA");
    assert!(d["attempts"].as_u64().unwrap_or(0) >= 2, "{d}");
}

#[tokio::test]
async fn results_in_by_mllp_and_out_as_fhir_pathology_over_mesh() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(tmp.path());
    let hub = Hub::start(
        tmp.path(),
        &format!(
            "{}\n[mesh]\nurl = \"{}\"\nmailbox = \"{HUB_MAILBOX}\"\npassword = \"password\"\n\
             shared_key = \"{KEY}\"\npoll_ms = 300000\n",
            mllp_config(""),
            sandbox.url()
        ),
    );
    route(
        &hub,
        "A81001",
        "kind = \"mesh\"\nmailbox = \"A81001GP001\"\nworkflow = \"PATH_TEST_RESULTS_FHIR\"",
        "fhir-pathology",
    );
    // Route explain says what the practice will get.
    let explained = hub.cli(&[
        "route",
        "explain",
        "--to",
        "A81001",
        "--type",
        "order-result",
    ]);
    let explained = String::from_utf8_lossy(&explained.stdout).to_string();
    assert!(explained.contains("fhir-pathology"), "{explained}");
    assert!(
        explained.contains("A81001 gets a FHIR R4 pathology test report bundle (JSON)"),
        "{explained}"
    );
    let fbc = String::from_utf8(fixture("oru-r01-fbc.hl7")).unwrap();
    let mut lab = Conn::open(hub.mllp.as_ref().unwrap());
    // MSH-15 AL: the accept acknowledgement.
    let ack = lab.exchange(&fbc);
    assert_eq!(ack.code(), "CA", "{}", ack.raw);
    assert_eq!(ack.acknowledges(), "RX1-LAB-FBC-0001");
    let id = stored_id(&hub, "RX1/RX1-LAB-FBC-0001");
    wait_state(&hub, &id, "sent").await;

    // The practice's GP system downloads and acknowledges it at MESH.
    let out = tmp.path().join("gp");
    let got = sandbox.receive("A81001GP001", &out);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["workflow"], "PATH_TEST_RESULTS_FHIR");
    let file = out.join(got[0]["id"].as_str().unwrap());
    let verdicts = assert_valid("fhir-pathology", std::slice::from_ref(&file));
    assert_eq!(verdicts[0]["resources"]["Observation"], 11, "{verdicts:?}");
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(bundle["type"], "document");
    assert!(bundle.to_string().contains("9434765919"));
    // Nothing left in the mailbox: it was acknowledged.
    assert!(sandbox.receive("A81001GP001", &out).is_empty());
}

#[tokio::test]
async fn results_in_by_mllp_and_out_by_mail_as_a_readable_table_with_the_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = edt_tests::certificate(dir.path());
    let port = free_port();
    let sink = crate::smtp::start_sink(dir.path(), &cert, &key, port);
    let relay = format!(
        "[smtp.relay]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"starttls\"\n\
         username = \"edthub\"\npassword = \"relay-secret\"\nfrom = \"edthub@nhs.net\"\n\
         ca_file = {:?}\n",
        ca.display().to_string()
    );
    let hub = Hub::start(dir.path(), &format!("{}\n{relay}", mllp_config("")));
    route(
        &hub,
        "A81001",
        "kind = \"email\"\naddress = \"gp.a81001@nhs.net\"",
        "original",
    );
    let result = fixture("oru-r01-uk-pdf.hl7");
    let mut lab = Conn::open(hub.mllp.as_ref().unwrap());
    assert_eq!(
        lab.exchange(std::str::from_utf8(&result).unwrap()).code(),
        "CA"
    );
    let id = stored_id(&hub, "RX1/RX1-LAB-000042");
    wait_state(&hub, &id, "sent").await;
    let eml = sink.out.join("1.eml");
    let read = crate::smtp::python_reads(&eml);
    let text = read["text"].as_str().unwrap();
    for cell in [
        "NHS number: 9434765919",
        "Full blood count",
        "Haemoglobin",
        "135",
        "g/L",
        "130-170",
    ] {
        assert!(text.contains(cell), "{cell} missing: {text}");
    }
    let html = read["html"].as_str().unwrap();
    assert!(html.contains("<th align=\"left\">Range</th>"), "{html}");
    let attachments = read["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2, "{read}");
    assert_eq!(
        attachments[0]["sha256"],
        edt_transforms::sha256_hex(&result).as_str(),
        "the result as sent"
    );
    assert_eq!(attachments[1]["content_type"], "application/pdf");
    assert_eq!(
        attachments[1]["sha256"],
        edt_transforms::sha256_hex(&fixture("letter.pdf")).as_str(),
        "the PDF the result carries"
    );
}
