//! SMTP both ways, with stock peers: scripted dialogues and `swaks` / Python `smtplib` against
//! the hub's listener (plain, and STARTTLS + AUTH), and the hub mailing letters to `aiosmtpd`
//! (STARTTLS + AUTH required) as its relay.

use edt_tests::{eventually, free_port, peers_python, workspace, Hub, FAST};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const DOMAIN: &str = "hub.test";
const SENDER: &str = "letters@trust.nhs.uk";
const PASSWORD: &str = "correct horse battery staple";

/// A stock tool the tests need; missing is a failure, not a skip.
fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: tests/run-all installs it (apt-get install {name})"
    );
    Command::new(name)
}

fn smtp_config(extra: &str) -> String {
    format!(
        "{FAST}\n[smtp]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\n{extra}\n\
         [[smtp.senders]]\naddress = \"{SENDER}\"\nsender_ods = \"RX1\"\n"
    )
}

/// A raw SMTP client that checks every reply code.
struct Dialogue {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    transcript: String,
}

impl Dialogue {
    fn open(addr: &str) -> (Self, String) {
        let tcp = TcpStream::connect(addr).expect("connect to the SMTP listener");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut d = Self {
            reader: BufReader::new(tcp.try_clone().unwrap()),
            writer: tcp,
            transcript: String::new(),
        };
        let greeting = d.reply();
        (d, greeting)
    }

    /// One reply, all its lines (joined by `\n`).
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read a reply");
            assert!(n > 0, "connection closed; transcript:\n{}", self.transcript);
            let line = line.trim_end().to_string();
            self.transcript.push_str(&format!("S: {line}\n"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    fn write(&mut self, text: &str) {
        for l in text.lines().take(3) {
            self.transcript.push_str(&format!("C: {l}\n"));
        }
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// Sends a command and checks the reply starts with `code`.
    fn expect(&mut self, command: &str, code: &str) -> String {
        self.write(&format!("{command}\r\n"));
        self.check(code)
    }

    fn check(&mut self, code: &str) -> String {
        let r = self.reply();
        assert!(
            r.starts_with(code),
            "expected {code}, got {r:?}; transcript:\n{}",
            self.transcript
        );
        r
    }

    /// Reads a reply that must start with `code`, then the end of the stream: the hub has
    /// closed the connection.
    fn check_then_closed(&mut self, code: &str) -> String {
        let r = self.check(code);
        let mut rest = String::new();
        let n = self.reader.read_line(&mut rest).unwrap_or(0);
        assert_eq!(
            n, 0,
            "the connection stays open after {r:?}: {rest:?}; transcript:\n{}",
            self.transcript
        );
        r
    }

    /// Sends message data (dot-stuffed) and its end marker; checks the reply.
    fn data(&mut self, message: &str, code: &str) -> String {
        let mut body = String::new();
        for line in message.split("\r\n") {
            if line.starts_with('.') {
                body.push('.');
            }
            body.push_str(line);
            body.push_str("\r\n");
        }
        body.push_str(".\r\n");
        self.write(&body);
        self.check(code)
    }
}

fn b64_lines(bytes: &[u8]) -> String {
    edt_transforms::itk3::base64_encode(bytes)
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A mail carrying the given attachments (content type, file name, bytes).
fn mail(subject: &str, message_id: &str, parts: &[(&str, &str, &[u8])]) -> String {
    let mut m = format!(
        "From: Trust letters <{SENDER}>\r\nTo: A81001@{DOMAIN}\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
         --XX\r\nContent-Type: text/plain\r\n\r\nPlease find the letter attached.\r\n"
    );
    for (ctype, name, bytes) in parts {
        m.push_str(&format!(
            "--XX\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64_lines(bytes)
        ));
    }
    m.push_str("--XX--");
    m
}

fn pdf(tag: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% mailed letter {tag}\n").into_bytes()
}

/// A lab result naming practice A81002 and the patient, as UK labs send it.
const ORU: &str = "MSH|^~\\&|iLABTP|RX1|||202611250930||ORU^R01|LAB-SMTP-1|P|2.4\r\
PID|||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
PD1|||Test Practice^^A81002\r\
OBR|1|||PT^Prothrombin Time INR^HAE\r\
OBX|1|NM|INR^I.N.R.||2.5||||||F\r";

/// A GP Connect Send Document from RX1 wrapping a PDF.
fn send_document() -> Vec<u8> {
    edt_tests::itk3_message(1, "Outpatient letter", &pdf("fhir"), false)
}

/// The message id in a `250 2.0.0 OK: queued as ID` reply.
fn queued_id(text: &str) -> String {
    text.split("queued as ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no message id in {text}"))
        .to_string()
}

/// Waits until a file with exactly `bytes` is in `folder`.
async fn lands_in(folder: PathBuf, bytes: Vec<u8>) {
    eventually(20, "the document in the drop folder", || {
        let (folder, bytes) = (folder.clone(), bytes.clone());
        async move {
            std::fs::read_dir(&folder)
                .ok()?
                .flatten()
                .any(|e| std::fs::read(e.path()).ok().as_deref() == Some(&bytes[..]))
                .then_some(())
        }
    })
    .await
}

fn message_count(hub: &Hub) -> usize {
    hub.cli_json(&["messages", "list"])["messages"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn scripted_dialogue_every_phase_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &smtp_config("max_message_bytes = 65536"));
    let addr = hub.smtp.clone().expect("the SMTP listener is on");
    let (mut s, greeting) = Dialogue::open(&addr);
    assert!(greeting.starts_with("220 hub.test"), "{greeting}");

    // Before EHLO, and commands the hub refuses.
    s.expect(&format!("MAIL FROM:<{SENDER}>"), "503 5.5.1");
    let ehlo = s.expect("EHLO client.example", "250-hub.test");
    for ext in [
        "SIZE 65536",
        "8BITMIME",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(ext), "{ext} not advertised: {ehlo}");
    }
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "no TLS configured: {ehlo}"
    );
    s.expect("VRFY bob", "502 5.5.1");
    s.expect("EXPN staff", "502 5.5.1");
    s.expect("FROB", "500 5.5.1");
    s.expect("STARTTLS", "502 5.5.1");
    s.expect("AUTH PLAIN AGFiYwBkZWY=", "538 5.7.11");
    s.expect("RCPT TO:<A81001@hub.test>", "503 5.5.1");
    s.expect("DATA", "503 5.5.1");

    // The envelope, checked as it arrives.
    let r = s.expect("MAIL FROM:<stranger@example.com>", "550 5.7.1");
    assert!(r.contains("not registered"), "{r}");
    s.expect(&format!("MAIL FROM:<{SENDER}> SIZE=1000000"), "552 5.3.4");
    s.expect(&format!("MAIL FROM:<{SENDER}> SMTPUTF8"), "555 5.5.4");
    let r = s.expect(&format!("MAIL FROM:<{SENDER}> SIZE=2000"), "250 2.1.0");
    assert!(r.contains("RX1"), "{r}");
    s.expect(&format!("MAIL FROM:<{SENDER}>"), "503 5.5.1");
    let r = s.expect("RCPT TO:<A81001@elsewhere.org>", "550 5.7.1");
    assert!(r.contains("Relaying denied"), "{r}");
    let r = s.expect("RCPT TO:<bob.smith@hub.test>", "550 5.1.1");
    assert!(r.contains("bob.smith is not an ODS code"), "{r}");
    let r = s.expect("RCPT TO:<Y99999@hub.test>", "550 5.1.1");
    assert!(r.contains("not an organisation this hub knows"), "{r}");
    let r = s.expect("RCPT TO:<A81003@hub.test>", "550 5.1.1");
    assert!(r.contains("closed since 2017-10-31"), "{r}");
    s.expect("DATA", "554 5.5.1");
    s.expect("RCPT TO:<a81001@HUB.TEST>", "250 2.1.5");
    s.expect("DATA", "354");
    let r = s.data(&mail("No attachment", "m0@trust", &[]), "554 5.6.0");
    assert!(r.contains("no usable attachment"), "{r}");

    // Each refusal after DATA says why and stores nothing.
    let transaction = |s: &mut Dialogue| {
        s.expect("RSET", "250 2.0.0");
        s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
        s.expect("RCPT TO:<A81001@hub.test>", "250");
        s.expect("DATA", "354");
    };
    transaction(&mut s);
    let r = s.data(
        &mail(
            "Letter [nhs:1234567890]",
            "m1@trust",
            &[("application/pdf", "a.pdf", &pdf("1"))],
        ),
        "554 5.6.0",
    );
    assert!(r.contains("nhs_number"), "{r}");
    transaction(&mut s);
    let r = s.data(
        &mail(
            "Two",
            "m2@trust",
            &[
                ("application/pdf", "a.pdf", &pdf("a")),
                ("application/pdf", "b.pdf", &pdf("b")),
            ],
        ),
        "554 5.6.0",
    );
    assert!(r.contains("2 documents attached (a.pdf, b.pdf)"), "{r}");
    transaction(&mut s);
    let r = s.data(
        &format!("Subject: long\r\n\r\n{}", "x".repeat(1200)),
        "500 5.5.2",
    );
    assert!(r.contains("longer than 998"), "{r}");
    transaction(&mut s);
    let big = vec![b'%'; 80_000];
    s.data(
        &mail("Big", "m3@trust", &[("application/pdf", "big.pdf", &big)]),
        "552 5.3.4",
    );
    s.expect("NOOP", "250 2.0.0");
    assert_eq!(message_count(&hub), 0, "nothing refused was stored");

    // Pipelined: one write, replies in order; one message to three practices.
    s.expect("RSET", "250");
    s.write(&format!(
        "MAIL FROM:<{SENDER}>\r\nRCPT TO:<A81001@hub.test>\r\nRCPT TO:<A81002@hub.test>\r\n\
         RCPT TO:<A81004@hub.test>\r\nRCPT TO:<A81001@hub.test>\r\nDATA\r\n"
    ));
    for code in [
        "250 2.1.0",
        "250 2.1.5",
        "250 2.1.5",
        "250 2.1.5",
        "250 2.1.5",
        "354",
    ] {
        s.check(code);
    }
    let letter = pdf("pipelined");
    let r = s.data(
        &mail(
            "Discharge summary [nhs:943 476 5919] [type:discharge-summary]",
            "m4@trust",
            &[("application/pdf", "discharge.pdf", &letter)],
        ),
        "250 2.0.0",
    );
    let id = queued_id(&r);
    s.expect("QUIT", "221 2.0.0");

    let shown = hub.cli_json(&["messages", "show", &id]);
    assert_eq!(shown["channel"], "smtp");
    assert_eq!(shown["nhs_number"], "9434765919");
    assert_eq!(shown["document_type"], "discharge-summary");
    assert_eq!(shown["title"], "Discharge summary");
    assert!(
        shown["local_id"].as_str().unwrap().starts_with("m4@trust#"),
        "{shown}"
    );
    assert_eq!(shown["deliveries"].as_array().unwrap().len(), 3);
    for ods in ["A81001", "A81002", "A81004"] {
        lands_in(hub.drop_folder(ods), letter.clone()).await;
    }
    assert_eq!(message_count(&hub), 1);
}

#[tokio::test]
async fn swaks_and_smtplib_mail_each_format_to_the_practice() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &smtp_config(""));
    let addr = hub.smtp.clone().unwrap();
    let (host, port) = addr.split_once(':').unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();

    // swaks: a PDF with the metadata in the subject, and an HL7 v2 result, pipelined.
    let letter = pdf("swaks");
    std::fs::write(files.join("letter.pdf"), &letter).unwrap();
    std::fs::write(files.join("result.hl7"), ORU).unwrap();
    let swaks = |to: &str, subject: &str, ctype: &str, name: &str| -> Output {
        tool("swaks")
            .args([
                "--server",
                &addr,
                "--from",
                SENDER,
                "--to",
                to,
                "--pipeline",
            ])
            .args(["--header", &format!("Subject: {subject}")])
            .args(["--attach-type", ctype, "--attach-name", name])
            .arg("--attach")
            .arg(format!("@{}", files.join(name).display()))
            .output()
            .expect("run swaks")
    };
    let out = swaks(
        "A81001@hub.test",
        "Clinic letter [nhs:9434765919] [type:outpatient-letter]",
        "application/pdf",
        "letter.pdf",
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "swaks failed:\n{text}");
    let pdf_id = queued_id(&text);
    let out = swaks("A81002@hub.test", "INR result", "text/plain", "result.hl7");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "swaks failed:\n{text}");
    let oru_id = queued_id(&text);

    // Python's smtplib: a FHIR XML Send Document, labelled as generic XML by the mail client.
    let itk = send_document();
    std::fs::write(files.join("letter.xml"), &itk).unwrap();
    let script = format!(
        r#"
import smtplib, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "{SENDER}"
m["To"] = "A81004@{DOMAIN}"
m["Subject"] = "Outpatient letter"
m.set_content("Letter attached.")
m.add_attachment(open(sys.argv[1], "rb").read(), maintype="text", subtype="xml", filename="letter.xml")
with smtplib.SMTP("{host}", {port}) as s:
    refused = s.send_message(m)
    assert not refused, refused
    print(s.noop())
"#
    );
    let out = tool("python3")
        .args(["-c", &script])
        .arg(files.join("letter.xml"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    lands_in(hub.drop_folder("A81001"), letter).await;
    lands_in(hub.drop_folder("A81002"), ORU.as_bytes().to_vec()).await;
    lands_in(hub.drop_folder("A81004"), itk).await;

    let shown = hub.cli_json(&["messages", "show", &pdf_id]);
    assert_eq!(shown["document_type"], "outpatient-letter");
    assert_eq!(shown["content_type"], "application/pdf");
    assert_eq!(shown["file_name"], "letter.pdf");
    let shown = hub.cli_json(&["messages", "show", &oru_id]);
    assert_eq!(shown["document_type"], "order-result");
    assert_eq!(shown["content_type"], "application/hl7-v2");
    assert_eq!(shown["nhs_number"], "9434765919");
    let listed = hub.cli_json(&["messages", "list"]);
    let fhir = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["content_type"] == "application/fhir+xml")
        .expect("the FHIR document is listed");
    assert_eq!(fhir["channel"], "smtp");
    assert_eq!(fhir["recipients"][0], "A81004");
}

#[tokio::test]
async fn starttls_and_auth_are_required_and_work_with_stock_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = edt_tests::certificate(dir.path());
    // The account's password as an Argon2id PHC string, from `edthub hash-password`; a
    // second account still has the old unsalted SHA-256 form, accepted with a warning.
    let mut child = Command::new(edt_tests::binary())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("edthub hash-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    let legacy = edt_transforms::sha256_hex(b"old password");
    let hub = Hub::start(
        dir.path(),
        &smtp_config(&format!(
            "require_tls = true\nrequire_auth = true\ntls_cert = {:?}\ntls_key = {:?}\n\
             [[smtp.users]]\nusername = \"trust\"\npassword_hash = \"{phc}\"\nsender_ods = \"RX1\"\n\
             [[smtp.users]]\nusername = \"legacy\"\npassword_sha256 = \"{legacy}\"\nsender_ods = \"RX1\"\n",
            cert.display().to_string(),
            key.display().to_string()
        )),
    );
    eventually(10, "the deprecation warning", || {
        let log = hub.log();
        async move {
            (log.contains("password_sha256")
                && log.contains("legacy")
                && log.contains("hash-password"))
            .then_some(())
        }
    })
    .await;
    let addr = hub.smtp.clone().unwrap();
    let (host, port) = addr.split_once(':').unwrap();

    // In the clear: STARTTLS offered, AUTH not; nothing accepted.
    let (mut s, _) = Dialogue::open(&addr);
    let ehlo = s.expect("EHLO client.example", "250-");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    s.expect(&format!("MAIL FROM:<{SENDER}>"), "530 5.7.0");
    s.expect("AUTH LOGIN", "538 5.7.11");
    s.expect("QUIT", "221");

    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let letter = pdf("tls");
    std::fs::write(files.join("letter.pdf"), &letter).unwrap();
    let swaks = |password: &str| -> (bool, String) {
        let out = tool("swaks")
            .args(["--server", &addr, "--tls", "--auth", "LOGIN"])
            .args(["--auth-user", "trust", "--auth-password", password])
            .args(["--from", SENDER, "--to", "A81001@hub.test"])
            .args(["--header", "Subject: Letter [nhs:9434765919]"])
            .args([
                "--attach-type",
                "application/pdf",
                "--attach-name",
                "letter.pdf",
            ])
            .arg("--attach")
            .arg(format!("@{}", files.join("letter.pdf").display()))
            .output()
            .expect("run swaks");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, text) = swaks("wrong password");
    assert!(!ok && text.contains("535 5.7.8"), "{text}");
    let (ok, text) = swaks(PASSWORD);
    assert!(ok, "swaks over STARTTLS with AUTH LOGIN failed:\n{text}");
    assert!(text.contains("220 2.0.0 Ready to start TLS"), "{text}");
    let swaks_id = queued_id(&text);

    // smtplib: STARTTLS verifying the hub's certificate, then AUTH PLAIN.
    let second = pdf("smtplib");
    std::fs::write(files.join("second.pdf"), &second).unwrap();
    let script = format!(
        r#"
import smtplib, ssl, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "{SENDER}"
m["To"] = "A81002@{DOMAIN}"
m["Subject"] = "Second letter [nhs:9434765919] [ref:EPR-2]"
m.set_content("Letter attached.")
m.add_attachment(open(sys.argv[2], "rb").read(), maintype="application", subtype="pdf", filename="second.pdf")
context = ssl.create_default_context(cafile=sys.argv[1])
with smtplib.SMTP("{host}", {port}) as s:
    s.starttls(context=context)
    s.login("trust", "{PASSWORD}")
    assert s.user == "trust"
    s.send_message(m)
for user, password, ok in [("legacy", "old password", True), ("legacy", "{PASSWORD}", False), ("nobody", "{PASSWORD}", False)]:
    with smtplib.SMTP("{host}", {port}) as s:
        s.starttls(context=context)
        try:
            s.login(user, password)
            assert ok, (user, password)
        except smtplib.SMTPAuthenticationError as e:
            assert not ok and e.smtp_code == 535, (user, e)
"#
    );
    let out = tool("python3")
        .args(["-c", &script])
        .arg(&ca)
        .arg(files.join("second.pdf"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    lands_in(hub.drop_folder("A81001"), letter).await;
    lands_in(hub.drop_folder("A81002"), second).await;
    let shown = hub.cli_json(&["messages", "show", &swaks_id]);
    let actors: Vec<String> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(actors.iter().any(|a| a == "smtp:trust"), "{actors:?}");
    let listed = hub.cli_json(&["messages", "list"]);
    assert!(listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["local_id"] == "EPR-2"));
}

pub(crate) struct Sink {
    child: std::process::Child,
    pub(crate) out: PathBuf,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Python's `email` package (a parser the hub did not write) reads in a mail the hub
/// wrote: addresses, subject, bodies, attachments and any defects it found.
pub(crate) fn python_reads(eml: &Path) -> serde_json::Value {
    let out = Command::new(peers_python())
        .arg(workspace().join("tests/peers/mail_check.py"))
        .arg(eml)
        .output()
        .expect("run mail_check.py");
    assert!(
        out.status.success(),
        "mail_check.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["defects"], serde_json::json!([]), "{read}");
    read
}

/// Starts aiosmtpd (STARTTLS and AUTH required) writing what it receives to `out`.
pub(crate) fn start_sink(dir: &Path, cert: &Path, key: &Path, port: u16) -> Sink {
    let out = dir.join("received");
    std::fs::create_dir_all(&out).unwrap();
    let mut child = Command::new(peers_python())
        .arg(workspace().join("tests/peers/smtp_sink.py"))
        .args([
            "--port",
            &port.to_string(),
            "--user",
            "edthub",
            "--password",
            "relay-secret",
        ])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start aiosmtpd");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("ready"),
        "aiosmtpd did not start: {line:?}"
    );
    Sink { child, out }
}

#[tokio::test]
async fn email_endpoints_get_a_letter_through_a_stock_smtp_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = edt_tests::certificate(dir.path());
    let port = free_port();
    let sink = start_sink(dir.path(), &cert, &key, port);
    let relay = format!(
        "[smtp.relay]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"starttls\"\n\
         username = \"edthub\"\npassword = \"relay-secret\"\n\
         from = \"Hôpital Général EDT <edthub@nhs.net>\"\n\
         ca_file = {:?}\n",
        ca.display().to_string()
    );
    let hub = Hub::start(dir.path(), &smtp_config(&relay));

    // Three practices read their letters by mail: one inside the secure boundary, one outside,
    // and one whose mailbox the relay refuses.
    let toml = dir.path().join("directory.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    for (ods, address) in [
        ("A81001", "gp.a81001@nhs.net"),
        ("A81002", "surgery@example.org"),
        ("A81004", "refuse@example.org"),
        ("A81005", "busy@example.org"),
    ] {
        let from = format!(
            "[endpoints.{}-drop]\nkind = \"file\"\npath = \"drop/{ods}\"",
            ods.to_ascii_lowercase()
        );
        let to = format!(
            "[endpoints.{}-drop]\nkind = \"email\"\naddress = \"{address}\"",
            ods.to_ascii_lowercase()
        );
        assert!(text.contains(&from), "sample directory changed: {from}");
        text = text.replace(&from, &to);
    }
    std::fs::write(&toml, text).unwrap();
    hub.cli_json(&["directory", "reload"]);

    let mut sub = hub.submission().await;
    let mut req = edt_tests::letter("MAIL-1", &["A81001", "A81002", "A81004", "A81005"]);
    // Non-ASCII names survive: the From display name (RFC 2047, the address kept), the
    // subject, and the attachment's file name (RFC 2231).
    req.title = "Discharge summary — Zoë Müller".into();
    req.file_name = "Entlassbrief Zoë Müller.pdf".into();
    let original = req.payload.clone();
    let r = sub.submit_document(req).await.unwrap().into_inner();
    let by_ods = |ods: &str| {
        r.deliveries
            .iter()
            .find(|d| d.recipient_ods == ods)
            .unwrap()
            .delivery_id
            .clone()
    };

    let count_letters = || {
        std::fs::read_dir(&sink.out)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count_letters() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the letters never reached the relay: {}",
            hub.cli_json(&["messages", "show", &r.message_id])["deliveries"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = count_letters();
    assert_eq!(received, 2);
    let mut letters = std::collections::HashMap::new();
    let mut read_by_python = std::collections::HashMap::new();
    for n in 1..=2 {
        let raw = std::fs::read(sink.out.join(format!("{n}.eml"))).unwrap();
        let python = python_reads(&sink.out.join(format!("{n}.eml")));
        let envelope: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sink.out.join(format!("{n}.json"))).unwrap())
                .unwrap();
        assert_eq!(envelope["mail_from"], "edthub@nhs.net");
        assert_eq!(envelope["user"], "edthub", "the hub authenticated");
        assert_eq!(envelope["tls"], true, "the hub used STARTTLS");
        let to = envelope["rcpt_tos"][0].as_str().unwrap().to_string();
        letters.insert(to.clone(), raw);
        read_by_python.insert(to, python);
    }
    for (address, ods, secure) in [
        ("gp.a81001@nhs.net", "A81001", false),
        ("surgery@example.org", "A81002", true),
    ] {
        let raw = &letters[address];
        let m = mail_parser::MessageParser::default()
            .parse(raw)
            .expect("the letter parses as MIME");
        assert_eq!(
            m.from().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("edthub@nhs.net")
        );
        assert_eq!(
            m.to().and_then(|a| a.first()).and_then(|a| a.address()),
            Some(address)
        );
        let subject = m.subject().unwrap();
        assert_eq!(subject.starts_with("[secure] "), secure, "{subject}");
        assert!(subject.contains("Discharge summary"), "{subject}");
        let py = &read_by_python[address];
        assert_eq!(
            py["from"],
            serde_json::json!([["Hôpital Général EDT", "edthub@nhs.net"]]),
            "{py}"
        );
        assert_eq!(py["to"][0][1], address, "{py}");
        let expected = format!(
            "{}Discharge summary — Zoë Müller",
            if secure { "[secure] " } else { "" }
        );
        assert_eq!(py["subject"], expected.as_str(), "{py}");
        assert_eq!(py["attachments"].as_array().unwrap().len(), 1, "{py}");
        assert_eq!(
            py["attachments"][0]["filename"], "Entlassbrief Zoë Müller.pdf",
            "{py}"
        );
        assert_eq!(py["attachments"][0]["content_type"], "application/pdf");
        assert_eq!(
            py["attachments"][0]["sha256"],
            edt_transforms::sha256_hex(&original).as_str()
        );
        assert!(py["text"].as_str().unwrap().contains("Zoë Müller"), "{py}");
        assert!(py["html"].is_string(), "{py}");
        assert_eq!(
            m.message_id(),
            Some(format!("{}@{DOMAIN}", by_ods(ods)).as_str()),
            "the Message-ID names the delivery"
        );
        assert!(m.body_text(0).is_some() && m.body_html(0).is_some());
        let attached: Vec<_> = m.attachments().collect();
        assert_eq!(attached.len(), 1);
        assert_eq!(
            attached[0].contents(),
            &original[..],
            "the original, byte for byte"
        );
    }

    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    let delivery = |ods: &str| {
        shown["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["recipient_ods"] == ods)
            .unwrap()
            .clone()
    };
    eventually(20, "the refused mailbox to fail", || {
        let hub = &hub;
        let id = r.message_id.clone();
        async move {
            let s = hub.cli_json(&["messages", "show", &id]);
            s["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["recipient_ods"] == "A81004" && d["state"] == "failed")
                .then_some(())
        }
    })
    .await;
    assert_eq!(delivery("A81001")["state"], "sent");
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    let failed = shown["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["recipient_ods"] == "A81004")
        .unwrap();
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.contains("Mailbox refused by the test relay"),
        "the relay's own text: {error}"
    );
    assert_eq!(failed["attempts"], 1, "a 5xx is not retried");
    let busy = shown["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["recipient_ods"] == "A81005")
        .unwrap();
    assert!(
        busy["last_error"]
            .as_str()
            .unwrap()
            .contains("Test relay busy, try later"),
        "{busy}"
    );
    assert!(
        busy["attempts"].as_u64().unwrap() > 1 || busy["state"] == "retrying",
        "a 4xx is retried: {busy}"
    );
    let timeline = shown["timeline"].to_string();
    assert!(
        timeline.contains("mailed to gp.a81001@nhs.net"),
        "{timeline}"
    );
    // A mailed document whose delivery fails: its sender gets one notice, replying to the
    // sender's own mail. (The gRPC submission above gets none.)
    let (mut s, _) = Dialogue::open(hub.smtp.as_deref().unwrap());
    s.expect("EHLO trust.example", "250");
    s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
    s.expect("RCPT TO:<A81004@hub.test>", "250");
    s.expect("DATA", "354");
    let r = s.data(
        &mail(
            "Clinic letter for Zoë Müller [nhs:9434765919] [type:outpatient-letter]",
            "clinic-7@trust.nhs.uk",
            &[("application/pdf", "clinic.pdf", &pdf("notice"))],
        ),
        "250",
    );
    let mailed = queued_id(&r);
    s.expect("QUIT", "221");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count_letters() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no notice reached the sender: {}",
            hub.cli_json(&["messages", "show", &mailed])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sink.out.join("3.json")).unwrap()).unwrap();
    assert_eq!(envelope["rcpt_tos"][0], SENDER);
    let raw = std::fs::read(sink.out.join("3.eml")).unwrap();
    let notice = python_reads(&sink.out.join("3.eml"));
    // The sender is outside the secure domains: the notice is marked like a letter.
    assert_eq!(
        notice["subject"], "[secure] Not delivered (failed): outpatient-letter to A81004",
        "{notice}"
    );
    assert_eq!(notice["from"][0][1], "edthub@nhs.net");
    assert_eq!(notice["in_reply_to"], "<clinic-7@trust.nhs.uk>");
    let body = notice["text"].as_str().unwrap();
    for needle in [
        mailed.as_str(),
        "A81004",
        "outpatient-letter",
        "Mailbox refused by the test relay",
    ] {
        assert!(body.contains(needle), "{needle} not in the notice:\n{body}");
    }
    // Nothing that names the patient: not the title, the file name or the NHS number, in
    // any header or the body.
    let raw_text = String::from_utf8_lossy(&raw);
    for patient in [
        "Clinic letter",
        "Zoë",
        "clinic.pdf",
        "9434765919",
        "943 476 5919",
    ] {
        assert!(
            !body.contains(patient) && !raw_text.contains(patient),
            "{patient} in the notice:\n{notice}"
        );
        assert!(!notice["subject"].as_str().unwrap().contains(patient));
    }
    // At most once: nothing more arrives, and the timeline shows the notice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_letters(), 3, "one notice per delivery outcome");
    let events = hub.timeline_events(&mailed);
    assert_eq!(
        events.iter().filter(|e| *e == "notice").count(),
        1,
        "{events:?}"
    );
}

#[tokio::test]
async fn connection_limit_and_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(
        dir.path(),
        &smtp_config("max_connections = 2\ncommand_timeout_secs = 1"),
    );
    let addr = hub.smtp.clone().unwrap();
    let (mut first, _) = Dialogue::open(&addr);
    let (_second, _) = Dialogue::open(&addr);
    let (mut third, greeting) = Dialogue::open(&addr);
    assert!(greeting.starts_with("421 4.7.0"), "{greeting}");
    let mut rest = String::new();
    assert_eq!(
        third.reader.read_line(&mut rest).unwrap(),
        0,
        "closed after 421"
    );
    // An idle client is told and dropped; its slot is free again.
    let r = first.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    drop(first);
    eventually(10, "a free connection slot", || {
        let addr = addr.clone();
        async move {
            let (_d, greeting) = Dialogue::open(&addr);
            greeting.starts_with("220").then_some(())
        }
    })
    .await;
}

/// SMTP smuggling: only `<CRLF>.<CRLF>` ends the data; a bare LF or CR in data or in a command
/// gets `521 5.5.2` and the connection closes, with nothing stored and nothing after it run
/// as a command.
#[tokio::test]
async fn smuggling_and_bare_line_endings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let second = "other@trust.nhs.uk";
    let hub = Hub::start(
        dir.path(),
        &smtp_config(&format!(
            "[[smtp.senders]]\naddress = \"{second}\"\nsender_ods = \"RX1\"\n"
        )),
    );
    let addr = hub.smtp.clone().unwrap();
    let open = || {
        let (mut s, _) = Dialogue::open(&addr);
        s.expect("EHLO relay.example", "250");
        s
    };
    let letter = mail(
        "Letter",
        "smuggle@trust",
        &[("application/pdf", "a.pdf", &pdf("smuggled"))],
    );
    // The classic payloads: the first message "ends" at <LF>.<LF> (or <CR>.<CR>, or
    // <LF>.<CRLF>) and a second transaction follows, as another sender, in the same data.
    for end in ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n"] {
        let mut s = open();
        s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
        s.expect("RCPT TO:<A81001@hub.test>", "250");
        s.expect("DATA", "354");
        let smuggled = format!(
            "{letter}\r\n{end}MAIL FROM:<{second}>\r\nRCPT TO:<A81002@hub.test>\r\nDATA\r\n\
             {letter}\r\n.\r\n"
        );
        s.write(&smuggled);
        let r = s.check_then_closed("521 5.5.2");
        assert!(r.contains("bare <"), "{r}");
    }
    // A bare LF or CR anywhere in the data, even without a dot after it.
    for body in ["line one\nline two", "line one\rline two"] {
        let mut s = open();
        s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
        s.expect("RCPT TO:<A81001@hub.test>", "250");
        s.expect("DATA", "354");
        s.write(&format!("Subject: x\r\n\r\n{body}\r\n{letter}\r\n.\r\n"));
        s.check_then_closed("521 5.5.2");
    }
    // In commands: a bare LF ends nothing either.
    let (mut s, _) = Dialogue::open(&addr);
    s.write("EHLO relay.example\n");
    s.check_then_closed("521 5.5.2");
    let mut s = open();
    s.write(&format!(
        "MAIL FROM:<{SENDER}>\r\nRCPT TO:<A81001@hub.test>\rNOOP\r\n"
    ));
    s.check("250 2.1.0");
    s.check_then_closed("521 5.5.2");
    assert_eq!(message_count(&hub), 0, "nothing was stored");

    // Lines that only look like the end stay data: the document arrives whole.
    let mut s = open();
    s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
    s.expect("RCPT TO:<A81001@hub.test>", "250");
    s.expect("DATA", "354");
    let tricky = letter.replacen(
        "Please find the letter attached.\r\n",
        "Please find the letter attached.\r\n.\r\n..\r\n. \r\n",
        1,
    );
    let r = s.data(&tricky, "250 2.0.0");
    s.expect("QUIT", "221");
    let id = queued_id(&r);
    let shown = hub.cli_json(&["messages", "show", &id]);
    assert_eq!(shown["deliveries"][0]["recipient_ods"], "A81001", "{shown}");
    lands_in(hub.drop_folder("A81001"), pdf("smuggled")).await;
    assert_eq!(message_count(&hub), 1);
}

/// V81999 (GP not known): mail is taken and held `unroutable` for tracing, as over gRPC.
#[tokio::test]
async fn unknown_gp_is_held_like_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &smtp_config(""));
    let (mut s, _) = Dialogue::open(hub.smtp.as_deref().unwrap());
    s.expect("EHLO trust.example", "250");
    s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
    let r = s.expect("RCPT TO:<V81999@hub.test>", "250 2.1.5");
    assert!(r.contains("GP not known"), "{r}");
    s.expect("DATA", "354");
    let r = s.data(
        &mail(
            "Discharge summary [nhs:9434765919]",
            "unknown-gp@trust",
            &[("application/pdf", "a.pdf", &pdf("v81999"))],
        ),
        "250 2.0.0",
    );
    s.expect("QUIT", "221");
    let id = queued_id(&r);
    let shown = hub.cli_json(&["messages", "show", &id]);
    let d = &shown["deliveries"][0];
    assert_eq!(d["recipient_ods"], "V81999", "{shown}");
    assert_eq!(d["state"], "unroutable", "{shown}");

    // The same document over gRPC ends the same way.
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(edt_tests::letter("GRPC-V81999", &["V81999"]))
        .await
        .unwrap()
        .into_inner();
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    assert_eq!(shown["deliveries"][0]["state"], "unroutable", "{shown}");
}

/// Malformed MIME is refused with `554 5.6.0` naming the defect, and nothing is stored.
#[tokio::test]
async fn malformed_mime_is_refused_naming_the_defect() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &smtp_config(""));
    let (mut s, _) = Dialogue::open(hub.smtp.as_deref().unwrap());
    s.expect("EHLO trust.example", "250");
    let letter = pdf("malformed");
    let good = mail(
        "Letter [nhs:9434765919]",
        "malformed@trust",
        &[("application/pdf", "letter.pdf", &letter)],
    );
    let b64 = b64_lines(&letter);
    let cases = [
        (
            good.replace(&b64, "JVBERi0xLjQK!!not base64 at all**"),
            "part 2 (letter.pdf): the body is declared base64 but is not",
        ),
        (
            good.replace(&b64, &b64[..b64.len() - 5]),
            "part 2 (letter.pdf): the base64 body is truncated",
        ),
        (
            good.trim_end_matches("--XX--").to_string(),
            "the message: multipart/mixed has no closing boundary",
        ),
        (
            good.replace("boundary=\"XX\"", "boundary=\"YY\""),
            "declares the boundary \"YY\" but never uses it",
        ),
        (
            good.replace("; boundary=\"XX\"", ""),
            "multipart/mixed without a boundary parameter",
        ),
        (
            good.replace(
                "Content-Transfer-Encoding: base64",
                "Content-Transfer-Encoding: x-uuencode",
            ),
            "unknown Content-Transfer-Encoding \"x-uuencode\"",
        ),
    ];
    for (raw, defect) in cases {
        s.expect("RSET", "250");
        s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
        s.expect("RCPT TO:<A81001@hub.test>", "250");
        s.expect("DATA", "354");
        let r = s.data(&raw, "554 5.6.0");
        assert!(
            r.contains("malformed MIME") && r.contains(defect),
            "{defect}: {r}"
        );
        assert!(r.contains("nothing was stored"), "{r}");
    }
    // Well-formed MIME, but the part labelled PDF is not one: refused as over gRPC.
    s.expect("RSET", "250");
    s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
    s.expect("RCPT TO:<A81001@hub.test>", "250");
    s.expect("DATA", "354");
    let r = s.data(
        &mail(
            "Letter",
            "not-a-pdf@trust",
            &[("application/pdf", "letter.pdf", b"PK\x03\x04 a zip file")],
        ),
        "554 5.6.0",
    );
    assert!(r.contains("payload"), "{r}");
    assert_eq!(message_count(&hub), 0, "nothing malformed was stored");
    // The same mail, well formed, is taken.
    s.expect(&format!("MAIL FROM:<{SENDER}>"), "250");
    s.expect("RCPT TO:<A81001@hub.test>", "250");
    s.expect("DATA", "354");
    s.data(&good, "250 2.0.0");
    s.expect("QUIT", "221");
    lands_in(hub.drop_folder("A81001"), letter).await;
}
