//! Harness for end-to-end tests: runs the real `edthub` binary as a child process on free
//! ports with its own data directory, and talks to it as a trust, a practice and an ops person
//! would (gRPC, files in the drop folder, the CLI).
#![forbid(unsafe_code)]

use edt_proto::v1;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The `edthub` binary under test: `EDTHUB_BIN`, else `target/<profile>/edthub` beside this
/// test executable.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("EDTHUB_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join("edthub");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p edt-hub --bin edthub)",
        bin.display()
    );
    bin
}

/// A running hub.
pub struct Hub {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    /// `http://127.0.0.1:PORT` of the gRPC listener.
    pub grpc: String,
    /// `127.0.0.1:PORT` of the HTTP listener.
    pub http: String,
    /// `127.0.0.1:PORT` of the SMTP listener, when the config turns it on.
    pub smtp: Option<String>,
    /// `127.0.0.1:PORT` of the MLLP listener, when the config turns it on.
    pub mllp: Option<String>,
    stderr_log: PathBuf,
}

/// Test settings: fast retries and ack polling. `extra` is appended to the config file.
pub fn test_config(data_dir: &Path, extra: &str) -> String {
    format!(
        "data_dir = {dd:?}\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\n{extra}\n",
        dd = data_dir.display().to_string()
    )
}

/// Default delivery and ack settings for tests (fast).
pub const FAST: &str = "[delivery]\nmax_attempts = 3\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\nworkers = 4\n\n[acks]\npoll_ms = 100\n";

impl Hub {
    /// Starts a hub on `data_dir` with a config made of [`test_config`] and `extra`.
    pub fn start(data_dir: &Path, extra: &str) -> Hub {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let config = data_dir.join("edthub-test.toml");
        std::fs::write(&config, test_config(data_dir, extra)).expect("config");
        Self::start_with(data_dir, &config)
    }

    /// Starts a hub with an existing config file.
    pub fn start_with(data_dir: &Path, config: &Path) -> Hub {
        Self::spawn(data_dir, config, None)
    }

    /// Starts a hub like [`Hub::start`] whose log (stderr) goes to `stderr` (`/dev/full`, say)
    /// rather than to a file the test reads.
    pub fn start_logging_to(data_dir: &Path, extra: &str, stderr: &Path) -> Hub {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let config = data_dir.join("edthub-test.toml");
        std::fs::write(&config, test_config(data_dir, extra)).expect("config");
        Self::spawn(data_dir, &config, Some(stderr))
    }

    fn spawn(data_dir: &Path, config: &Path, stderr: Option<&Path>) -> Hub {
        let stderr_log = data_dir.join(format!(
            "hub-stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,sled=warn")
            .stdout(Stdio::piped())
            .stderr(match stderr {
                Some(p) => std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .expect("stderr target"),
                None => std::fs::File::create(&stderr_log).expect("log file"),
            })
            .spawn()
            .expect("spawn edthub");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "edthub did not report its listeners; stderr:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {line:?}"))
                .to_string()
        };
        Hub {
            grpc: format!("http://{}", field("grpc=")),
            http: field("http="),
            smtp: Some(field("smtp=")).filter(|s| s != "off"),
            mllp: Some(field("mllp=")).filter(|s| s != "off"),
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            config: config.to_path_buf(),
            stderr_log,
        }
    }

    /// The hub's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The hub's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(status) = self.terminate(20) {
            assert!(status.success(), "hub exited with {status}: {}", self.log());
        }
    }

    /// SIGTERM, then the exit status if the process ends within `secs`; if it does not, it is
    /// killed and this panics. `None` if it was not running.
    pub fn terminate(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "hub did not stop within {secs} s of SIGTERM: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect to hub")
    }

    pub async fn submission(
        &self,
    ) -> v1::document_submission_client::DocumentSubmissionClient<Channel> {
        v1::document_submission_client::DocumentSubmissionClient::new(self.channel().await)
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    pub async fn tracking(&self) -> v1::tracking_client::TrackingClient<Channel> {
        v1::tracking_client::TrackingClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> v1::admin_client::AdminClient<Channel> {
        v1::admin_client::AdminClient::new(self.channel().await)
    }

    /// Runs an ops subcommand against this hub.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .args(args)
            .env("EDTHUB_ADDR", &self.grpc)
            .output()
            .expect("run edthub")
    }

    /// Runs an ops subcommand with `--json` and parses its output; panics on a non-zero exit.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli(&a);
        assert!(
            out.status.success(),
            "edthub {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "edthub {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The event names of a message's timeline, oldest first (`edthub messages show`).
    pub fn timeline_events(&self, message_id: &str) -> Vec<String> {
        let shown = self.cli_json(&["messages", "show", message_id]);
        shown["timeline"]
            .as_array()
            .expect("a timeline")
            .iter()
            .map(|e| e["event"].as_str().expect("an event name").to_string())
            .collect()
    }

    /// A plain HTTP/1.1 GET on the HTTP port: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.try_http_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; hub log:\n{}", self.log()))
    }

    /// [`Hub::http_get`], with an error where the listener cannot be reached (while the
    /// node reopens, say).
    pub fn try_http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.http)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Waits until every delivery of every message in `ids` has been handed to its transport;
    /// panics (with the hub's log) if one is unknown or `secs` pass first.
    pub async fn wait_all_sent(&self, ids: impl IntoIterator<Item = String>, secs: u64) {
        let mut t = self.tracking().await;
        let mut pending: Vec<String> = ids.into_iter().collect();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !pending.is_empty() {
            let mut still = Vec::new();
            for id in pending {
                let s = t
                    .get_message(v1::GetMessageRequest {
                        message_id: id.clone(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("receipted message {id} is lost: {e}"))
                    .into_inner();
                if s.deliveries.is_empty() || s.deliveries.iter().any(|d| d.sent_at.is_none()) {
                    still.push(id);
                }
            }
            pending = still;
            assert!(
                Instant::now() < deadline,
                "{} receipted documents never sent, e.g. {:?}; hub log:\n{}",
                pending.len(),
                &pending[..pending.len().min(5)],
                self.log()
            );
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// The sample drop folder of a practice.
    pub fn drop_folder(&self, ods: &str) -> PathBuf {
        self.data_dir.join("drop").join(ods)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs an ops subcommand with `--json` against several hubs at once (`EDTHUB_ADDR` holding
/// every address) and parses its output; panics on a non-zero exit.
pub fn cli_json_across(hubs: &[&Hub], args: &[&str]) -> serde_json::Value {
    let addrs: Vec<&str> = hubs.iter().map(|h| h.grpc.as_str()).collect();
    let out = Command::new(binary())
        .args(args)
        .arg("--json")
        .env("EDTHUB_ADDR", addrs.join(","))
        .output()
        .expect("run edthub");
    assert!(
        out.status.success(),
        "edthub {args:?} across {addrs:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// A discharge summary request from RX1.
pub fn letter(local_id: &str, to: &[&str]) -> v1::SubmitDocumentRequest {
    v1::SubmitDocumentRequest {
        sender_ods: "RX1".into(),
        recipient_ods: to.iter().map(|s| s.to_string()).collect(),
        document_type: v1::DocumentType::DischargeSummary as i32,
        content_type: "application/pdf".into(),
        payload: format!("%PDF-1.4\n% discharge summary {local_id}\n").into_bytes(),
        local_id: local_id.into(),
        nhs_number: "9434765919".into(),
        file_name: "discharge.pdf".into(),
        title: "Discharge summary".into(),
    }
}

/// Polls `f` until it returns `Some`, or panics after `secs` with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The state name of a wire delivery state ("failed", "accepted", ...).
pub fn state(v: i32) -> String {
    v1::DeliveryState::try_from(v)
        .map(|s| s.as_str_name())
        .unwrap_or("?")
        .trim_start_matches("DELIVERY_STATE_")
        .to_ascii_lowercase()
}

/// Index files (`*.json`) in a drop folder, parsed.
pub fn drop_indexes(folder: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".json") && !name.starts_with('.') {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            out.push(v);
        }
    }
    out
}

/// Runs openssl in `dir`, failing the test with its words if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is not installed: tests/run-all installs it");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs a request in `dir` with the test CA made by [`certificate`].
fn sign(dir: &Path, csr: &str, ext: &str, out: &str) {
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            out,
        ],
    );
}

/// Test certificates: a CA, and a server certificate it signed for `localhost` and
/// 127.0.0.1. Returns (CA certificate, server certificate, server key).
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    std::fs::write(
        p("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let steps: [Vec<&str>; 2] = [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=edthub test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    ];
    for args in steps {
        openssl(dir, &args);
    }
    sign(dir, "server.csr", "server.ext", "cert.pem");
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

/// An ITK3 message from sender RX1 about patient 9434765919 carrying `pdf`: a GP Connect Send
/// Document, or with `discharge` an eDischarge (ITK003D) message around the same document
/// Bundle. `n` makes its ids unique. Built as `edthub bench` builds its messages.
pub fn itk3_message(n: usize, title: &str, pdf: &[u8], discharge: bool) -> Vec<u8> {
    let sample = edt_transforms::samples::Itk3Sample {
        n,
        nhs_number: "9434765919",
        title,
        sender_name: "Sample Acute Trust",
        discharge,
    };
    edt_transforms::samples::itk3_message(&sample, pdf)
}

/// A client certificate (CN ward-ops) signed by the CA of [`certificate`], in the same folder: (certificate, key, SHA-256 of its DER).
pub fn client_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=ward-ops",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    );
    sign(dir, "client.csr", "client.ext", "client.crt");
    openssl(
        dir,
        &[
            "x509",
            "-in",
            "client.crt",
            "-outform",
            "DER",
            "-out",
            "client.der",
        ],
    );
    let der = std::fs::read(dir.join("client.der")).unwrap();
    (
        dir.join("client.crt"),
        dir.join("client.key"),
        edt_transforms::sha256_hex(&der),
    )
}

/// The workspace root (peer scripts, deploy files, the peers' virtual environment).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python of the test peers' virtual environment (aiosmtpd, mesh-sandbox, Mesh-Client),
/// made by tests/run-all; missing is a failure, not a skip.
pub fn peers_python() -> PathBuf {
    let p = workspace().join("target/peers-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run tests/run-all, which creates it and installs the test peers",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
