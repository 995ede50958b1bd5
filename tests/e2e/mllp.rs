//! HL7 v2 over MLLP into the hub: python-hl7's stock `mllp_send` and raw socket dialogues
//! against the real listener. Each answer is read as a sender reads it: MSA-1, MSA-2 and the
//! ERR segment; what was stored is checked with the CLI and the practice's drop folder.

use edt_tests::{certificate, eventually, peers_python, Hub, FAST};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub const SENDERS: &str = "[[mllp.senders]]\nfacility = \"RX1\"\nsender_ods = \"RX1\"\n\n\
     [[mllp.senders]]\nfacility = \"RX1-ICE\"\napplication = \"ICE\"\nsender_ods = \"RX1\"\n\
     recipient = \"A81002\"\n";

pub fn mllp_config(extra: &str) -> String {
    format!("{FAST}\n[mllp]\nlisten = \"127.0.0.1:0\"\n{extra}\n{SENDERS}")
}

/// An ORU^R01 from facility `facility` with control id `control`, for patient `nhs` at
/// practice A81001; `msh15` is the accept acknowledgement type (empty: original mode).
pub fn oru(facility: &str, control: &str, nhs: &str, msh15: &str) -> String {
    [
        format!("MSH|^~\\&|WINPATH|{facility}|EDTHUB|A81001|20261125093000||ORU^R01^ORU_R01|{control}|P|2.5|||{msh15}"),
        format!("PID|1||100321^^^RX1^MR~{nhs}^^^NHS^NH||SAMPLE^ALEX||19700101|U"),
        "PD1|||THE DENSHAM SURGERY^^^^^^^^^A81001".into(),
        "OBR|1|ORD-1|LAB-1|UE^Urea and electrolytes^L|||20261125080000||||||||||||||||||F".into(),
        "OBX|1|NM|NA^Sodium^L||140|mmol/L|133-146||||F".into(),
        "OBX|2|NM|K^Potassium^L||5.9|mmol/L|3.5-5.3|H|||F".into(),
    ]
    .join("\r")
        + "\r"
}

pub fn framed(message: &str) -> Vec<u8> {
    let mut v = vec![0x0b];
    v.extend_from_slice(message.as_bytes());
    v.extend_from_slice(&[0x1c, 0x0d]);
    v
}

/// One acknowledgement, read the way a sender reads it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub raw: String,
}

impl Ack {
    fn segment(&self, name: &str) -> Vec<String> {
        self.raw
            .split('\r')
            .find(|s| s.starts_with(name))
            .map(|s| s.split('|').map(str::to_string).collect())
            .unwrap_or_default()
    }
    /// MSA-1.
    pub fn code(&self) -> String {
        self.segment("MSA").get(1).cloned().unwrap_or_default()
    }
    /// MSA-2: the control id acknowledged.
    pub fn acknowledges(&self) -> String {
        self.segment("MSA").get(2).cloned().unwrap_or_default()
    }
    /// ERR-2 (segment^sequence^field) and ERR-8 (text).
    pub fn error(&self) -> (String, String) {
        let err = self.segment("ERR");
        (
            err.get(2).cloned().unwrap_or_default(),
            err.get(8).cloned().unwrap_or_default(),
        )
    }
}

/// The acknowledgements in a stream of MLLP frames.
pub fn acks_in(bytes: &[u8]) -> Vec<Ack> {
    let text = String::from_utf8_lossy(bytes);
    text.split('\x1c')
        .filter_map(|f| f.split_once('\x0b').map(|(_, m)| m))
        .map(|m| Ack { raw: m.to_string() })
        .collect()
}

/// A raw MLLP connection.
pub struct Conn {
    tcp: TcpStream,
    pending: Vec<u8>,
}

impl Conn {
    pub fn open(addr: &str) -> Conn {
        let tcp = TcpStream::connect(addr).expect("connect to the MLLP listener");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn {
            tcp,
            pending: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).unwrap();
    }

    /// Reads one whole frame (up to 0x1C 0x0D).
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let frame: Vec<u8> = self.pending.drain(..end + 2).collect();
                return Some(frame);
            }
            let mut buf = [0u8; 8192];
            match self.tcp.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                // The hub went away (killed): no answer.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading an answer: {e}"),
            }
        }
    }

    pub fn ack(&mut self) -> Ack {
        let frame = self
            .read_frame()
            .expect("an answer before the connection closed");
        acks_in(&frame)
            .pop()
            .expect("an acknowledgement in the frame")
    }

    /// Sends one message and reads its acknowledgement.
    pub fn exchange(&mut self, message: &str) -> Ack {
        self.send_raw(&framed(message));
        self.ack()
    }

    /// True once the hub has closed the connection (after reading whatever it still sends).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.tcp.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Sends every message in `file` with python-hl7's `mllp_send` (one connection, one message
/// after another); returns its acknowledgements in order.
pub fn mllp_send(addr: &str, file: &Path) -> Vec<Ack> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let exe = peers_python().with_file_name("mllp_send");
    let out = Command::new(&exe)
        .args(["--loose", "-p", port, "-f"])
        .arg(file)
        .arg(host)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    assert!(
        out.status.success(),
        "mllp_send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    acks_in(&out.stdout)
}

fn stored(hub: &Hub) -> Vec<serde_json::Value> {
    hub.cli_json(&["messages", "list", "--channel", "mllp", "--limit", "10000"])["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_stock_client_gets_aa_ae_and_ar_and_a_resend_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), &mllp_config(""));
    let addr = hub.mllp.clone().expect("MLLP listener");
    let good = oru("RX1", "LAB-0001", "9434765919", "");
    let messages = [
        good.clone(),
        // Resent as it was: the same answer, stored once.
        good.clone(),
        // NHS number failing Modulus 11.
        oru("RX1", "LAB-0002", "9434765918", ""),
        // A facility not in mllp.senders.
        oru("ELSEWHERE", "LAB-0003", "9434765919", ""),
        // Not a result.
        oru("RX1", "LAB-0004", "9434765919", "").replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"),
        // Another result reusing LAB-0001 from the same facility.
        oru("RX1", "LAB-0001", "9434765919", "").replace("140", "141"),
        // Version 3.
        oru("RX1", "LAB-0005", "9434765919", "").replace("|P|2.5|", "|P|3.0|"),
        // No practice anywhere.
        oru("RX1", "LAB-0006", "9434765919", "")
            .replace("PD1|||THE DENSHAM SURGERY^^^^^^^^^A81001\r", ""),
    ];
    // mllp_send --loose reads messages separated by new lines, segments by CR.
    let file = tmp.path().join("results.hl7");
    std::fs::write(&file, messages.join("\n")).unwrap();
    let acks = mllp_send(&addr, &file);
    assert_eq!(
        acks.len(),
        messages.len(),
        "one answer per message: {acks:#?}"
    );

    assert_eq!(acks[0].code(), "AA", "{}", acks[0].raw);
    assert_eq!(acks[0].acknowledges(), "LAB-0001");
    assert_eq!(
        acks[1].raw, acks[0].raw,
        "a resend gets the original answer"
    );

    assert_eq!(acks[2].code(), "AE", "{}", acks[2].raw);
    let (at, text) = acks[2].error();
    assert!(at.starts_with("PID^1^3"), "ERR-2 names PID-3: {at}");
    assert!(
        text.contains("Modulus 11") || text.contains("check digit"),
        "{text}"
    );

    assert_eq!(acks[3].code(), "AR", "{}", acks[3].raw);
    let (at, text) = acks[3].error();
    assert!(at.starts_with("MSH^1^4"), "{at}");
    assert!(text.contains("ELSEWHERE"), "{text}");

    assert_eq!(acks[4].code(), "AR");
    assert!(acks[4].error().0.starts_with("MSH^1^9"));
    // ERR-8 is escaped text: the `^` of ADT^A01 is `\S\`.
    assert!(acks[4].error().1.contains("ADT\\S\\A01"), "{}", acks[4].raw);

    assert_eq!(acks[5].code(), "AR", "{}", acks[5].raw);
    assert!(acks[5].error().0.starts_with("MSH^1^10"));

    assert_eq!(acks[6].code(), "AR");
    assert!(acks[6].error().0.starts_with("MSH^1^12"));

    assert_eq!(acks[7].code(), "AE");
    assert!(acks[7].error().0.starts_with("PD1^1^3"), "{}", acks[7].raw);

    // Every answer is a well-formed HL7 v2 ACK to a strict parser the hub did not write.
    let files: Vec<_> = acks
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let p = tmp.path().join(format!("ack-{i}.hl7"));
            std::fs::write(&p, a.raw.trim_end_matches('\r')).unwrap();
            p
        })
        .collect();
    crate::formats::assert_valid("hl7v2", &files);

    // Exactly one result stored, and delivered to the practice's drop folder as sent.
    let list = stored(&hub);
    assert_eq!(list.len(), 1, "{list:#?}");
    let id = list[0]["message_id"].as_str().unwrap().to_string();
    hub.wait_all_sent([id.clone()], 60).await;
    let folder = hub.drop_folder("A81001");
    let delivered = eventually(30, "the result in the drop folder", || {
        let folder = folder.clone();
        async move {
            std::fs::read_dir(&folder)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "hl7"))
        }
    })
    .await;
    assert_eq!(std::fs::read_to_string(&delivered).unwrap(), good);
    // The practice has no results system: a readable report lies beside the result.
    let report = std::fs::read_to_string(delivered.with_extension("report.html")).unwrap();
    for cell in [
        "Potassium",
        "5.9",
        "mmol/L",
        "3.5-5.3",
        "<td>H</td>",
        "9434765919",
    ] {
        assert!(
            report.contains(cell),
            "{cell} missing from the report: {report}"
        );
    }

    // A result carrying its PDF (OBX type ED): the PDF lies beside it too.
    let pdf_result = String::from_utf8(crate::formats::fixture("oru-r01-uk-pdf.hl7")).unwrap();
    let mut c = Conn::open(&addr);
    assert_eq!(c.exchange(&pdf_result).code(), "CA", "MSH-15 is AL");
    let pdf = eventually(30, "the result's PDF in the drop folder", || {
        let folder = folder.clone();
        async move {
            std::fs::read_dir(&folder)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".report.pdf"))
        }
    })
    .await;
    assert_eq!(
        std::fs::read(pdf).unwrap(),
        crate::formats::fixture("letter.pdf")
    );
    let shown = hub.cli_json(&["messages", "show", &id]);
    assert_eq!(shown["nhs_number"], "9434765919", "{shown:#}");
    assert_eq!(shown["channel"], "mllp", "{shown:#}");
}

#[tokio::test]
async fn batches_broken_frames_oversize_and_accept_acknowledgements() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), &mllp_config("max_message_bytes = 4096\n"));
    let addr = hub.mllp.clone().unwrap();
    let mut c = Conn::open(&addr);

    // A batch of two results and one bad one: a batch of three answers.
    let batch = format!(
        "FHS|^~\\&|WINPATH|RX1|||20261125093000|||FILE-1\rBHS|^~\\&|WINPATH|RX1|||20261125093000|||BATCH-1\r{}{}{}BTS|3\rFTS|1\r",
        oru("RX1", "B-1", "9434765919", ""),
        oru("RX1", "B-2", "9434765919", ""),
        oru("RX1", "B-3", "1234567890", ""),
    );
    c.send_raw(&framed(&batch));
    let answer = String::from_utf8(c.read_frame().unwrap()).unwrap();
    assert!(
        answer.starts_with("\x0bFHS|^~\\&|EDTHUB|EDTHUB|WINPATH|RX1|"),
        "{answer:?}"
    );
    assert!(
        answer.contains("||||BATCH-1\r"),
        "BHS-11 names the batch: {answer:?}"
    );
    let msas: Vec<&str> = answer
        .split('\r')
        .filter(|s| s.starts_with("MSA"))
        .collect();
    assert_eq!(msas.len(), 3, "{answer:?}");
    assert!(msas[0].starts_with("MSA|AA|B-1"));
    assert!(msas[1].starts_with("MSA|AA|B-2"));
    assert!(msas[2].starts_with("MSA|AE|B-3"));
    assert!(
        answer.contains("BTS|3\r") && answer.contains("FTS|1\r"),
        "{answer:?}"
    );

    // Two messages in one frame with no batch header: each answered in its own frame.
    c.send_raw(&framed(&format!(
        "{}{}",
        oru("RX1", "P-1", "9434765919", ""),
        oru("RX1", "P-2", "9434765919", "")
    )));
    assert_eq!(c.ack().acknowledges(), "P-1");
    assert_eq!(c.ack().acknowledges(), "P-2");

    // Noise between frames is skipped; a frame cut short by a new start block is refused and
    // the next one read.
    let mut bytes = b"\r\nnoise".to_vec();
    bytes.extend_from_slice(b"\x0bMSH|^~\\&|WINPATH|RX1|cut short");
    bytes.extend(framed(&oru("RX1", "F-1", "9434765919", "")));
    c.send_raw(&bytes);
    let broken = c.ack();
    assert_eq!(broken.code(), "AR");
    assert!(broken.error().1.contains("broken frame"), "{}", broken.raw);
    assert_eq!(c.ack().code(), "AA");

    // Too large: refused, discarded, and the connection still works.
    let mut big = oru("RX1", "BIG-1", "9434765919", "");
    big.push_str(&format!("NTE|1||{}\r", "x".repeat(5000)));
    let refused = c.exchange(&big);
    assert_eq!(refused.code(), "AR");
    assert!(refused.error().1.contains("4096"), "{}", refused.raw);
    assert_eq!(
        c.exchange(&oru("RX1", "AFTER-BIG", "9434765919", ""))
            .code(),
        "AA"
    );

    // Not HL7 at all.
    let junk = c.exchange("this is not HL7");
    assert_eq!(junk.code(), "AR");

    // MSH-15 asks for accept acknowledgements: CA / CE; NE gets no answer (the next answer
    // on the connection is the next message's), ER answers only errors.
    assert_eq!(
        c.exchange(&oru("RX1", "E-1", "9434765919", "AL")).code(),
        "CA"
    );
    assert_eq!(
        c.exchange(&oru("RX1", "E-2", "9434765918", "AL")).code(),
        "CE"
    );
    assert_eq!(
        c.exchange(&oru("RX1-ICE", "E-3", "9434765919", "AL"))
            .code(),
        "CR"
    );
    c.send_raw(&framed(&oru("RX1", "E-4", "9434765919", "NE")));
    c.send_raw(&framed(&oru("RX1", "E-5", "9434765919", "ER")));
    c.send_raw(&framed(&oru("RX1", "E-6", "9434765918", "ER")));
    let next = c.ack();
    assert_eq!(
        (next.code(), next.acknowledges()),
        ("CE".into(), "E-6".into())
    );

    // The ICE application is allowed at RX1-ICE; another application there is not.
    let ice = oru("RX1-ICE", "I-1", "9434765919", "").replace("|WINPATH|", "|ICE|");
    assert_eq!(c.exchange(&ice).code(), "AA");
    // ICE's results that name no practice go where mllp.senders says.
    let unaddressed = oru("RX1-ICE", "I-2", "9434765919", "")
        .replace("|WINPATH|", "|ICE|")
        .replace("PD1|||THE DENSHAM SURGERY^^^^^^^^^A81001\r", "");
    assert_eq!(c.exchange(&unaddressed).code(), "AA");

    let list = stored(&hub);
    let mut locals: Vec<String> = list
        .iter()
        .map(|m| m["local_id"].as_str().unwrap_or_default().to_string())
        .collect();
    locals.sort();
    assert_eq!(
        locals,
        [
            "RX1-ICE/I-1",
            "RX1-ICE/I-2",
            "RX1/AFTER-BIG",
            "RX1/B-1",
            "RX1/B-2",
            "RX1/E-1",
            "RX1/E-4",
            "RX1/E-5",
            "RX1/F-1",
            "RX1/P-1",
            "RX1/P-2"
        ],
        "{list:#?}"
    );
    let i2 = list
        .iter()
        .find(|m| m["local_id"] == "RX1-ICE/I-2")
        .unwrap();
    assert_eq!(i2["recipients"], serde_json::json!(["A81002"]));
}

#[tokio::test]
async fn slow_and_idle_senders_and_too_many_connections_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        tmp.path(),
        &mllp_config("read_timeout_secs = 1\nidle_timeout_secs = 2\nmax_connections = 2\n"),
    );
    let addr = hub.mllp.clone().unwrap();

    // A message started and never finished: refused, and the connection closed.
    let mut slow = Conn::open(&addr);
    slow.send_raw(b"\x0bMSH|^~\\&|WINPATH|RX1|EDTHUB|A81001|2026");
    let refused = slow.ack();
    assert_eq!(refused.code(), "AR");
    assert!(
        refused.error().1.contains("not completed"),
        "{}",
        refused.raw
    );
    assert!(slow.closed());

    // A connection that says nothing is closed.
    let mut idle = Conn::open(&addr);
    assert!(idle.closed());

    // Two connections held open: a third is told why and closed.
    let mut a = Conn::open(&addr);
    let mut b = Conn::open(&addr);
    assert_eq!(
        a.exchange(&oru("RX1", "C-1", "9434765919", "")).code(),
        "AA"
    );
    assert_eq!(
        b.exchange(&oru("RX1", "C-2", "9434765919", "")).code(),
        "AA"
    );
    let mut third = Conn::open(&addr);
    let told = third.ack();
    assert_eq!(told.code(), "AR");
    assert!(
        told.error().1.contains("too many connections"),
        "{}",
        told.raw
    );
    drop((a, b));

    // The listener lives on.
    let mut again = eventually(30, "a connection once the others closed", || {
        let addr = addr.clone();
        async move {
            let mut c = Conn::open(&addr);
            let ack = c.exchange(&oru("RX1", "C-3", "9434765919", ""));
            (ack.code() == "AA").then_some(c)
        }
    })
    .await;
    assert_eq!(
        again.exchange(&oru("RX1", "C-3", "9434765919", "")).code(),
        "AA"
    );
}

#[tokio::test]
async fn over_tls_with_the_grpc_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(tmp.path());
    let hub = Hub::start(
        tmp.path(),
        &mllp_config(&format!(
            "tls = true\n\n[tls]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )),
    );
    let addr = hub.mllp.clone().unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    // Python's ssl module, verifying the hub's certificate against the test CA.
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"\x0b" + sys.stdin.buffer.read() + b"\x1c\r")
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        sys.stdout.buffer.write(data)
"#;
    let mut child = Command::new(peers_python())
        .args(["-c", script, host, port])
        .arg(&ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(oru("RX1", "TLS-1", "9434765919", "").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acks = acks_in(&out.stdout);
    assert_eq!(acks.len(), 1, "{:?}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(acks[0].code(), "AA");
    assert_eq!(acks[0].acknowledges(), "TLS-1");

    // Plain MLLP on the TLS port gets no answer.
    let mut plain = Conn::open(&addr);
    plain.send_raw(&framed(&oru("RX1", "PLAIN-1", "9434765919", "")));
    assert!(plain.read_frame().is_none_or(|f| acks_in(&f).is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_no_acknowledged_result() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(tmp.path(), &mllp_config(""));
    let config = hub.config.clone();
    let counter = Arc::new(AtomicUsize::new(0));
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..2u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = hub.mllp.clone().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (stop, counter, addr) = (stop.clone(), counter.clone(), addr.clone());
            tasks.push(std::thread::spawn(move || {
                let mut got = Vec::new();
                let Ok(tcp) = TcpStream::connect(&addr) else {
                    return got;
                };
                tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut c = Conn {
                    tcp,
                    pending: Vec::new(),
                };
                while !stop.load(Ordering::Relaxed) {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    let control = format!("CRASH-{i}");
                    if c.tcp
                        .write_all(&framed(&oru("RX1", &control, "9434765919", "")))
                        .is_err()
                    {
                        break;
                    }
                    // The hub died under us: no answer, so nothing was promised.
                    let Some(frame) = c.read_frame() else { break };
                    if let Some(a) = acks_in(&frame).pop() {
                        if a.code() == "AA" {
                            got.push(control);
                        }
                    }
                }
                got
            }));
        }
        tokio::time::sleep(Duration::from_millis(1000 + 500 * round)).await;
        hub.kill();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            acknowledged.extend(t.join().unwrap());
        }
        hub = Hub::start_with(tmp.path(), &config);
    }
    assert!(
        acknowledged.len() > 20,
        "too little load to mean anything: {}",
        acknowledged.len()
    );
    let list = stored(&hub);
    let stored_ids: std::collections::HashSet<String> = list
        .iter()
        .map(|m| m["local_id"].as_str().unwrap_or_default().to_string())
        .collect();
    for control in &acknowledged {
        assert!(
            stored_ids.contains(&format!("RX1/{control}")),
            "{control} was acknowledged AA but is not stored ({} stored, {} acknowledged)",
            stored_ids.len(),
            acknowledged.len()
        );
    }
}

/// `bench --mllp` follows each result over gRPC: with no hub to follow, it says so before it
/// sends anything, rather than after the whole run.
#[test]
fn the_mllp_bench_with_no_hub_to_follow_sends_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mllp = listener.local_addr().unwrap().to_string();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hub = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut bench = Command::new(edt_tests::binary())
        .args(["bench", "--mllp", &mllp, "--hub", &hub, "--docs", "10"])
        .args(["--connections", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = bench.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            bench.kill().unwrap();
            panic!("bench --mllp waited on the MLLP listener with no hub to follow");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    bench
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("--hub") && stderr.contains(&hub),
        "{stderr}"
    );
    assert!(
        listener.accept().is_err(),
        "the bench connected to the MLLP listener"
    );
}
