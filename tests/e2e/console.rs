//! The ops console over real HTTP against the real binary: sign-in and sessions, roles and
//! ODS scoping, CSRF, escaping of hostile text, paging, and every action recorded as the
//! CLI's are.

use edt_proto::v1;
use edt_tests::{eventually, letter, state, Hub, FAST};
use std::collections::HashMap;
use std::io::{Read, Write};

const TOKENS: [(&str, &str, &str, &str); 6] = [
    // name, token, roles, ods
    ("night-ops", "tok-ops", "\"ops\"", ""),
    ("auditor", "tok-audit", "\"auditor\"", ""),
    ("rx1-epr", "tok-rx1", "\"submitter\"", "\"RX1\""),
    ("r1k-epr", "tok-r1k", "\"submitter\"", "\"R1K\""),
    ("a81001-gp", "tok-gp", "\"receiver\"", "\"A81001\""),
    ("a81002-gp", "tok-gp2", "\"receiver\"", "\"A81002\""),
];

pub fn identities() -> String {
    TOKENS
        .iter()
        .map(|(name, token, roles, ods)| {
            format!(
                "[[identities]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nroles = [{roles}]\nods = [{ods}]\n\n",
                edt_transforms::sha256_hex(token.as_bytes())
            )
        })
        .collect()
}

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// A browser without a script engine: keeps the console's cookies, sends forms.
pub struct Browser {
    addr: String,
    pub cookies: HashMap<String, String>,
    /// Extra headers on every request (a TLS front's, in some tests).
    pub extra: Vec<(String, String)>,
}

pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Browser {
    pub fn new(hub: &Hub) -> Self {
        Self {
            addr: hub.http.clone(),
            cookies: HashMap::new(),
            extra: Vec::new(),
        }
    }

    pub fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Resp {
        let mut s = std::net::TcpStream::connect(&self.addr).expect("connect http");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
        }
        for (k, v) in &self.extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let body = raw[split + 4..].to_vec();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let r = Resp {
            status,
            headers,
            body,
        };
        for c in r.headers_named("set-cookie") {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        r
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, None)
    }

    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.request("POST", path, Some(&form(fields)))
    }

    /// The CSRF token the page's forms carry.
    pub fn csrf(page: &str) -> String {
        let at = page
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF token in the page: {page}"));
        let rest = &page[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// Signs in with a token; panics unless it leads to a page.
    pub fn sign_in(&mut self, token: &str) -> Resp {
        let page = self.get("/console/sign-in");
        assert_eq!(page.status, 200, "{}", page.text());
        let csrf = Self::csrf(&page.text());
        self.post(
            "/console/sign-in",
            &[("csrf", &csrf), ("token", token), ("method", "token")],
        )
    }

    /// A page's CSRF token, read from the overview or messages page.
    pub fn token(&mut self) -> String {
        let page = self.get("/console/messages");
        assert_eq!(page.status, 200, "{}", page.text());
        Self::csrf(&page.text())
    }
}

pub fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn submit(hub: &Hub, token: &str, req: v1::SubmitDocumentRequest) -> String {
    let mut sub = hub.submission().await;
    sub.submit_document(bearer(req, token))
        .await
        .expect("submitted")
        .into_inner()
        .message_id
}

pub async fn wait_state(hub: &Hub, id: &str, want: &str) {
    let t = hub.tracking().await;
    eventually(30, &format!("message {id} to be {want}"), || {
        let mut t = t.clone();
        let id = id.to_string();
        let want = want.to_string();
        async move {
            let s = t
                .get_message(bearer(v1::GetMessageRequest { message_id: id }, "tok-ops"))
                .await
                .unwrap()
                .into_inner();
            (state(s.state) == want).then_some(())
        }
    })
    .await
}

/// The JSON of `edthub messages show` with the ops token.
fn show(hub: &Hub, id: &str) -> serde_json::Value {
    let out = std::process::Command::new(edt_tests::binary())
        .args(["messages", "show", id, "--json"])
        .env("EDTHUB_ADDR", &hub.grpc)
        .env("EDTHUB_TOKEN", "tok-ops")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Replaces a practice's drop folder with a plain file, so its deliveries fail.
pub fn break_folder(hub: &Hub, ods: &str) -> std::path::PathBuf {
    let folder = hub.drop_folder(ods);
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::write(&folder, b"not a folder").unwrap();
    folder
}

const HOSTILE_TITLE: &str = "<script>alert('t')</script> & \"quotes\"";
const HOSTILE_FILE: &str = "\"><img src=x onerror=alert(1)>.pdf";

#[tokio::test]
async fn console_pages_roles_csrf_escaping_and_actions() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &format!("{FAST}\n{}", identities()));
    let broken = break_folder(&hub, "A81002");

    // A hostile letter to A81001, a letter that fails at A81002, one from another sender.
    let mut hostile = letter("HOSTILE-1", &["A81001"]);
    hostile.title = HOSTILE_TITLE.into();
    hostile.file_name = HOSTILE_FILE.into();
    let hostile_id = submit(&hub, "tok-rx1", hostile.clone()).await;
    let failed_id = submit(&hub, "tok-rx1", letter("FAILS-1", &["A81002"])).await;
    let mut other = letter("R1K-1", &["A81001"]);
    other.sender_ods = "R1K".into();
    other.nhs_number = "9434765870".into();
    let other_id = submit(&hub, "tok-r1k", other).await;
    let both_id = submit(&hub, "tok-rx1", letter("BOTH-1", &["A81001", "A81004"])).await;
    wait_state(&hub, &hostile_id, "sent").await;
    wait_state(&hub, &failed_id, "failed").await;

    // Signed out: pages send you to sign in, POSTs are refused.
    let mut anon = Browser::new(&hub);
    for path in [
        "/console/",
        "/console/messages",
        "/console/practices",
        "/console/actions",
        &format!("/console/messages/{hostile_id}"),
        &format!("/console/messages/{hostile_id}/original"),
    ] {
        let r = anon.get(path);
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/console/sign-in"), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
    }
    let r = anon.post(
        &format!("/console/messages/{failed_id}/replay"),
        &[("csrf", "x"), ("reason", "r"), ("dry_run", "0")],
    );
    assert_eq!(r.status, 403);

    // Sign-in: the form's own token is needed, then a valid token.
    let r = anon.post("/console/sign-in", &[("token", "tok-ops"), ("csrf", "")]);
    assert_eq!(r.status, 403, "sign-in without its CSRF token");
    let r = anon.sign_in("not-a-token");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("the token is not valid"), "{}", r.text());
    assert!(anon.get("/console/").status == 303);
    assert!(
        hub.log().contains("sign in to the console"),
        "a refused sign-in is logged for audit"
    );

    let mut ops = Browser::new(&hub);
    let r = ops.sign_in("tok-ops");
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("edthub_console="))
        .expect("a session cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );

    // Overview: charts, counts, queues, nodes; headers.
    let r = ops.get("/console/");
    assert_eq!(r.status, 200);
    let page = r.text();
    for want in [
        "<svg",
        "Last 24 hours",
        "Last 7 days",
        "Deliveries by state",
        "Oldest unacknowledged delivery",
        "Dead letters",
        "(this node)",
        "24-hour discharge standard",
        "RX1",
    ] {
        assert!(page.contains(want), "overview lacks {want:?}");
    }
    assert!(!page.contains("style="), "no inline style under the CSP");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let css = ops.get("/console/static/console.css");
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));

    // Hostile text is shown as text, in the list and on the message page.
    let list = ops.get("/console/messages").text();
    let message = ops.get(&format!("/console/messages/{hostile_id}")).text();
    for page in [&list, &message] {
        assert!(!page.contains("<script>alert"), "unescaped title");
        assert!(!page.contains("<img src=x"), "unescaped file name");
        assert!(
            page.contains("&lt;script&gt;alert('t')&lt;/script&gt; &amp; &quot;quotes&quot;"),
            "escaped title shown"
        );
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;.pdf"));
    }
    assert!(
        message.contains("Timeline") && message.contains("received"),
        "timeline"
    );
    // The original, under a file name that cannot break its header.
    let r = ops.get(&format!("/console/messages/{hostile_id}/original"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, hostile.payload);
    let cd = r.header("content-disposition").unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"___img src_x onerror_alert(1)_.pdf\""),
        "{cd}"
    );
    assert!(cd.contains("filename*=UTF-8''%22%3E%3Cimg"), "{cd}");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    // NHS number search is a POST with the CSRF token, never a GET.
    let r = ops.get("/console/messages?nhs=9434765870");
    assert_eq!(r.status, 400);
    let csrf = ops.token();
    let r = ops.post("/console/messages", &[("nhs", "9434765870"), ("csrf", "")]);
    assert_eq!(r.status, 403);
    let r = ops.post(
        "/console/messages",
        &[("nhs", "943 476 5870"), ("csrf", &csrf)],
    );
    assert_eq!(r.status, 200);
    let found = r.text();
    assert!(found.contains(&other_id) && !found.contains(&hostile_id));
    let r = ops.post(
        "/console/messages",
        &[("nhs", "1234567890"), ("csrf", &csrf)],
    );
    assert_eq!(r.status, 400, "a bad NHS number is named");
    assert!(r.text().contains("nhs_number"), "{}", r.text());
    assert!(
        !hub.log().contains("9434765870"),
        "no NHS number in the hub's log"
    );
    // Filters as the CLI's.
    let r = ops.get("/console/messages?state=failed");
    assert!(r.text().contains(&failed_id) && !r.text().contains(&hostile_id));
    let r = ops.get("/console/messages?sender=R1K&since=1h");
    assert!(r.text().contains(&other_id) && !r.text().contains(&failed_id));
    let r = ops.get("/console/messages?state=nonsense");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("unknown state"), "{}", r.text());

    // Auditors read, and may not act.
    let mut auditor = Browser::new(&hub);
    auditor.sign_in("tok-audit");
    assert_eq!(auditor.get("/console/").status, 200);
    let page = auditor
        .get(&format!("/console/messages/{failed_id}"))
        .text();
    assert!(!page.contains("/replay\""), "no replay form for auditors");
    assert_eq!(auditor.get("/console/actions").status, 403);
    let a_csrf = auditor.token();
    let r = auditor.post(
        &format!("/console/messages/{failed_id}/replay"),
        &[("csrf", &a_csrf), ("reason", "try"), ("dry_run", "0")],
    );
    assert_eq!(r.status, 403);
    let r = auditor.post(
        "/console/directory/reload",
        &[("csrf", &a_csrf), ("reason", "try")],
    );
    assert_eq!(r.status, 403);

    // Submitters see only their own senders' messages; receivers only their practices'.
    let mut rx1 = Browser::new(&hub);
    rx1.sign_in("tok-rx1");
    assert_eq!(rx1.get("/console/").status, 303, "no overview");
    let list = rx1.get("/console/messages").text();
    assert!(list.contains(&hostile_id) && list.contains(&failed_id));
    assert!(!list.contains(&other_id));
    assert_eq!(rx1.get("/console/messages?sender=R1K").status, 403);
    assert_eq!(
        rx1.get(&format!("/console/messages/{other_id}")).status,
        404
    );
    assert_eq!(
        rx1.get(&format!("/console/messages/{hostile_id}")).status,
        200
    );
    assert_eq!(
        rx1.get(&format!("/console/messages/{hostile_id}/original"))
            .status,
        403,
        "submitters do not read documents back"
    );
    let mut gp = Browser::new(&hub);
    gp.sign_in("tok-gp");
    let list = gp.get("/console/messages").text();
    assert!(list.contains(&hostile_id) && list.contains(&other_id));
    assert!(!list.contains(&failed_id), "A81002's message");
    assert!(
        list.contains(&both_id) && !list.contains("A81004"),
        "not others' deliveries"
    );
    let page = gp.get(&format!("/console/messages/{both_id}")).text();
    assert!(
        page.contains("A81001") && !page.contains("A81004"),
        "only its own delivery"
    );
    assert_eq!(gp.get("/console/practices/A81001").status, 200);
    assert_eq!(gp.get("/console/practices/A81002").status, 403);

    // Practices.
    let r = ops.get("/console/practices");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("A81001") && r.text().contains("A81002"));
    let r = ops.get("/console/practices/A81002");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains(&failed_id),
        "failed message needs attention"
    );

    // CSRF and origin on actions.
    let csrf = ops.token();
    let r = ops.post(
        &format!("/console/messages/{failed_id}/replay"),
        &[("csrf", "wrong"), ("reason", "x"), ("dry_run", "0")],
    );
    assert_eq!(r.status, 403);
    ops.extra = vec![("Origin".into(), "http://evil.example".into())];
    let r = ops.post(
        &format!("/console/messages/{failed_id}/replay"),
        &[("csrf", &csrf), ("reason", "x"), ("dry_run", "0")],
    );
    assert_eq!(r.status, 403, "another site's form");
    ops.extra.clear();

    // Replay one: a dry run, a reason required, then the replay, recorded as the CLI's.
    let r = ops.post(
        &format!("/console/messages/{failed_id}/replay"),
        &[("csrf", &csrf), ("reason", ""), ("dry_run", "1")],
    );
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("1 message(s) would be replayed"),
        "{}",
        r.text()
    );
    let r = ops.post(
        &format!("/console/messages/{failed_id}/replay"),
        &[("csrf", &csrf), ("reason", " "), ("dry_run", "0")],
    );
    assert_eq!(r.status, 400, "a replay needs a reason");
    std::fs::remove_file(&broken).unwrap();
    std::fs::create_dir_all(broken.join("acks")).unwrap();
    let r = ops.post(
        &format!("/console/messages/{failed_id}/replay"),
        &[
            ("csrf", &csrf),
            ("reason", "share remounted"),
            ("dry_run", "0"),
        ],
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("1 message(s) replayed"), "{}", r.text());
    wait_state(&hub, &failed_id, "sent").await;
    let shown = show(&hub, &failed_id);
    let replayed = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "replayed")
        .expect("a replayed event");
    assert_eq!(replayed["actor"], "ops:night-ops");
    let why = replayed["reason"].as_str().unwrap();
    assert!(why.ends_with(": share remounted"), "{why}");

    // Cancel a delivery that is waiting for its acknowledgement.
    let delivery = show(&hub, &hostile_id)["deliveries"][0]["delivery_id"]
        .as_str()
        .expect("a delivery id")
        .to_string();
    let r = ops.post(
        &format!("/console/deliveries/{delivery}/cancel"),
        &[("csrf", &csrf), ("reason", "")],
    );
    assert_eq!(r.status, 400, "a cancel needs a reason");
    let r = ops.post(
        &format!("/console/deliveries/{delivery}/cancel"),
        &[("csrf", &csrf), ("reason", "sent by post")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some(format!("/console/messages/{hostile_id}").as_str())
    );
    wait_state(&hub, &hostile_id, "cancelled").await;
    let shown = show(&hub, &hostile_id);
    let cancel = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == "cancelled")
        .unwrap_or_else(|| panic!("a cancel event in {shown}"));
    assert_eq!(cancel["actor"], "ops:night-ops");
    assert_eq!(cancel["reason"], "sent by post");

    // Replay by filter: the count first, then the replay.
    let r = ops.post(
        "/console/replay",
        &[
            ("csrf", &csrf),
            ("state", "cancelled"),
            ("since", "1h"),
            ("reason", ""),
            ("dry_run", "1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("1 message(s) match"), "{}", r.text());
    assert!(r.text().contains("Replay 1 messages"), "{}", r.text());
    let r = ops.post(
        "/console/replay",
        &[
            ("csrf", &csrf),
            ("state", "sent"),
            ("reason", "x"),
            ("dry_run", "0"),
        ],
    );
    assert_eq!(r.status, 400, "only replayable states");
    let r = ops.post(
        "/console/replay",
        &[
            ("csrf", &csrf),
            ("state", "cancelled"),
            ("since", "1h"),
            ("reason", "cancelled by mistake"),
            ("dry_run", "0"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("1 message(s) replayed"), "{}", r.text());
    wait_state(&hub, &hostile_id, "sent").await;

    // Reload the directory, with a reason, logged with who asked.
    let r = ops.post(
        "/console/directory/reload",
        &[("csrf", &csrf), ("reason", "")],
    );
    assert_eq!(r.status, 400);
    let r = ops.post(
        "/console/directory/reload",
        &[("csrf", &csrf), ("reason", "new practice added")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Directory reloaded"));
    let log = hub.log();
    let line = log
        .lines()
        .find(|l| l.contains("directory reloaded on request"))
        .expect("the reload is logged");
    assert!(
        line.contains("ops:night-ops") && line.contains("new practice added"),
        "{line}"
    );

    // Sign out ends the session.
    let r = ops.post("/console/sign-out", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(ops.get("/console/").status, 303);
}

#[tokio::test]
async fn console_messages_page_by_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut ids = Vec::new();
    let mut sub = hub.submission().await;
    for i in 0..57 {
        let r = sub
            .submit_document(letter(&format!("PAGE-{i}"), &["A81004"]))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.message_id);
    }
    // An open hub (no identities, loopback): anyone here is ops, after the sign-in form.
    let mut b = Browser::new(&hub);
    let r = b.sign_in("");
    assert_eq!(r.status, 303);
    let first = b.get("/console/messages?recipient=A81004").text();
    assert!(first.contains("57 matching"), "{first}");
    let on_first: Vec<&String> = ids
        .iter()
        .filter(|id| first.contains(id.as_str()))
        .collect();
    assert_eq!(on_first.len(), 50);
    assert!(first.contains(ids.last().unwrap()), "newest first");
    let at = first.find("rel=\"next\" href=\"").expect("a next page");
    let rest = &first[at + "rel=\"next\" href=\"".len()..];
    let next = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
    assert!(
        next.contains("recipient=A81004") && next.contains("after="),
        "{next}"
    );
    let second = b.get(&next).text();
    let on_second: Vec<&String> = ids
        .iter()
        .filter(|id| second.contains(id.as_str()))
        .collect();
    assert_eq!(on_second.len(), 7);
    assert!(
        on_second.iter().all(|id| !on_first.contains(id)),
        "no overlap"
    );
    assert!(second.contains(&ids[0]), "oldest last");
    assert!(!second.contains("rel=\"next\""), "the last page");
}

#[tokio::test]
async fn console_signs_in_by_certificate_through_the_tls_front() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, hash) = {
        edt_tests::certificate(dir.path());
        edt_tests::client_certificate(dir.path())
    };
    let pem = std::fs::read_to_string(dir.path().join("client.crt")).unwrap();
    let hub = Hub::start(
        dir.path(),
        &format!(
            "{FAST}\n[tls]\nbehind_proxy = true\n\n[console]\nclient_cert_header = \"x-client-cert\"\n\n\
             [[identities]]\nname = \"ward-ops\"\ncert_sha256 = \"{hash}\"\nroles = [\"ops\"]\n"
        ),
    );
    let mut b = Browser::new(&hub);
    b.extra = vec![
        ("X-Forwarded-Proto".into(), "https".into()),
        ("X-Client-Cert".into(), enc(&pem)),
    ];
    let page = b.get("/console/sign-in");
    assert!(page.text().contains("Sign in with your certificate"));
    let signin_cookie = page.header("set-cookie").unwrap().to_string();
    assert!(signin_cookie.contains("; Secure"), "{signin_cookie}");
    let csrf = Browser::csrf(&page.text());
    let r = b.post(
        "/console/sign-in",
        &[("csrf", &csrf), ("method", "certificate")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("edthub_console="))
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let r = b.get("/console/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("ward-ops (ops)"));

    // Another certificate is refused.
    let mut other = Browser::new(&hub);
    other.extra = vec![(
        "X-Client-Cert".into(),
        enc(&std::fs::read_to_string(dir.path().join("ca.pem")).unwrap()),
    )];
    let page = other.get("/console/sign-in");
    let csrf = Browser::csrf(&page.text());
    let r = other.post(
        "/console/sign-in",
        &[("csrf", &csrf), ("method", "certificate")],
    );
    assert_eq!(r.status, 401);
    assert!(r.text().contains("is not registered"), "{}", r.text());
}

#[test]
fn console_refuses_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"0.0.0.0:0\"\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(edt_tests::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve the console on 0.0.0.0:0 over plain HTTP"),
        "{err}"
    );
}
