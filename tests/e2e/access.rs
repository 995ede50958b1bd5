//! Identity and access through the real gRPC stack over real TLS: each role and ODS binding
//! allowed and denied, and who did what recorded.

use edt_proto::v1::{
    self, admin_client::AdminClient, document_submission_client::DocumentSubmissionClient,
    receiver_delivery_client::ReceiverDeliveryClient, tracking_client::TrackingClient,
};
use edt_tests::{letter, Hub, FAST};
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Request};

const TOKENS: [(&str, &str, &str, &str); 6] = [
    // name, token, roles, ods
    ("rx1-epr", "tok-rx1", "\"submitter\"", "\"RX1\""),
    ("r1k-epr", "tok-r1k", "\"submitter\"", "\"R1K\""),
    ("a81001-gp", "tok-gp", "\"receiver\"", "\"A81001\""),
    ("night-ops", "tok-ops", "\"ops\"", ""),
    ("auditor", "tok-audit", "\"auditor\"", ""),
    ("nobody", "tok-none", "\"auditor\"", ""),
];

fn identities() -> String {
    TOKENS
        .iter()
        .filter(|t| t.0 != "nobody")
        .map(|(name, token, roles, ods)| {
            format!(
                "[[identities]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nroles = [{roles}]\nods = [{ods}]\n\n",
                edt_transforms::sha256_hex(token.as_bytes())
            )
        })
        .collect()
}

fn req<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

async fn tls_channel(hub: &Hub, ca: &Path) -> Channel {
    let url = hub.grpc.replace("http://", "https://");
    Channel::from_shared(url)
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("TLS connection to the hub")
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn each_role_and_binding_is_allowed_and_denied_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = edt_tests::certificate(dir.path());
    let hub = Hub::start(
        dir.path(),
        &format!(
            "{FAST}\n[tls]\ncert = {:?}\nkey = {:?}\n\n{}",
            cert.display().to_string(),
            key.display().to_string(),
            identities()
        ),
    );
    // A81001 takes its documents by pulling them.
    let toml = dir.path().join("directory.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace(
            "[endpoints.a81001-drop]\nkind = \"file\"\npath = \"drop/A81001\"",
            &format!(
                "[endpoints.a81001-drop]\nkind = \"grpc\"\ntoken_sha256 = \"{}\"",
                edt_transforms::sha256_hex(b"endpoint-only-token")
            ),
        ),
    )
    .unwrap();

    // Plain gRPC to the TLS listener gets nowhere.
    let plain = tokio::time::timeout(Duration::from_secs(5), async {
        let c = hub.channel().await;
        let mut s = DocumentSubmissionClient::new(c);
        s.submit_document(req(letter("PLAIN", &["A81002"]), Some("tok-rx1")))
            .await
    })
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plain connection must not be served"
    );

    let channel = tls_channel(&hub, &ca).await;
    let mut admin = AdminClient::new(channel.clone());
    let out = admin
        .reload_directory(req(v1::ReloadDirectoryRequest {}, Some("tok-ops")))
        .await;
    assert_eq!(code(out), Code::Ok);
    let mut sub = DocumentSubmissionClient::new(channel.clone());

    // Submitters: no token or a wrong one is unauthenticated; only as their own ODS codes.
    for token in [None, Some("tok-none")] {
        let r = sub
            .submit_document(req(letter("NO-1", &["A81002"]), token))
            .await;
        assert_eq!(code(r), Code::Unauthenticated, "{token:?}");
    }
    let mine = sub
        .submit_document(req(letter("ACC-1", &["A81001", "A81002"]), Some("tok-rx1")))
        .await
        .expect("rx1-epr submits as RX1")
        .into_inner();
    let mut as_other = letter("ACC-2", &["A81002"]);
    as_other.sender_ods = "R1K".into();
    let r = sub
        .submit_document(req(as_other.clone(), Some("tok-rx1")))
        .await;
    assert_eq!(
        code(r),
        Code::PermissionDenied,
        "rx1-epr may not send as R1K"
    );
    let r = sub.submit_document(req(as_other, Some("tok-r1k"))).await;
    assert_eq!(code(r), Code::Ok, "r1k-epr may");
    let r = sub
        .submit_document(req(letter("ACC-3", &["A81002"]), Some("tok-ops")))
        .await;
    assert_eq!(code(r), Code::PermissionDenied, "ops do not submit");

    // Tracking: a submitter sees its own messages only; ops and auditors see all.
    let mut track = TrackingClient::new(channel.clone());
    let get = |t: &'static str| {
        req(
            v1::GetMessageRequest {
                message_id: mine.message_id.clone(),
            },
            Some(t),
        )
    };
    assert_eq!(code(track.get_message(get("tok-rx1")).await), Code::Ok);
    assert_eq!(
        code(track.get_message(get("tok-r1k")).await),
        Code::PermissionDenied
    );
    assert_eq!(code(track.get_message(get("tok-audit")).await), Code::Ok);

    // Admin: auditors read, only ops change anything; submitters and receivers neither.
    let list = |t: &'static str| req(v1::ListMessagesRequest::default(), Some(t));
    assert_eq!(code(admin.list_messages(list("tok-audit")).await), Code::Ok);
    assert_eq!(code(admin.list_messages(list("tok-ops")).await), Code::Ok);
    assert_eq!(
        code(admin.list_messages(list("tok-rx1")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(admin.list_messages(list("tok-gp")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            admin
                .list_messages(req(v1::ListMessagesRequest::default(), None))
                .await
        ),
        Code::Unauthenticated
    );
    let to_a81002 = mine
        .deliveries
        .iter()
        .find(|d| d.recipient_ods == "A81002")
        .unwrap()
        .delivery_id
        .clone();
    let cancel = |t: &'static str| {
        req(
            v1::CancelDeliveryRequest {
                delivery_id: to_a81002.clone(),
                reason: "sent to the wrong practice".into(),
            },
            Some(t),
        )
    };
    assert_eq!(
        code(admin.cancel_delivery(cancel("tok-audit")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(admin.cancel_delivery(cancel("tok-ops")).await),
        Code::Ok
    );
    let detail = admin
        .get_message(req(
            v1::GetMessageRequest {
                message_id: mine.message_id.clone(),
            },
            Some("tok-audit"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        detail
            .timeline
            .iter()
            .any(|e| e.actor == "ops:night-ops" && e.reason.contains("sent to the wrong practice")),
        "the cancel is recorded with who and why: {:?}",
        detail.timeline
    );
    assert!(
        detail.timeline.iter().any(|e| e.actor == "grpc:rx1-epr"),
        "the submission names its identity: {:?}",
        detail.timeline
    );

    // Receivers: their own ODS code's documents only.
    let mut rx = ReceiverDeliveryClient::new(channel.clone());
    let pull = |t: &'static str, ods: &str| {
        req(
            v1::PullDocumentsRequest {
                recipient_ods: ods.into(),
            },
            Some(t),
        )
    };
    assert_eq!(
        code(rx.pull_documents(pull("tok-gp", "A81002")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(rx.pull_documents(pull("tok-rx1", "")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(rx.pull_documents(pull("tok-none", "")).await),
        Code::Unauthenticated
    );
    let mut stream = rx
        .pull_documents(pull("tok-gp", "A81001"))
        .await
        .unwrap()
        .into_inner();
    let doc = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a document")
        .unwrap()
        .unwrap();
    assert_eq!(doc.message_id, mine.message_id);
    assert_eq!(doc.recipient_ods, "A81001");
    let ack = |delivery: &str, t: &'static str| {
        req(
            v1::AcknowledgeRequest {
                delivery_id: delivery.to_string(),
                status: v1::AckStatus::Accepted as i32,
                ..Default::default()
            },
            Some(t),
        )
    };
    assert_eq!(
        code(rx.acknowledge(ack(&to_a81002, "tok-gp")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(rx.acknowledge(ack(&doc.delivery_id, "tok-gp")).await),
        Code::Ok
    );

    // The CLI over TLS, with an ops token and without one.
    let cli = |token: &str| {
        std::process::Command::new(edt_tests::binary())
            .args([
                "messages",
                "list",
                "--json",
                "--hub",
                &hub.grpc.replace("http://", "https://"),
            ])
            .env("EDTHUB_CA", &ca)
            .env("EDTHUB_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = cli("tok-ops");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli("tok-rx1");
    assert_eq!(out.status.code(), Some(4), "auth failures exit 4");
}

#[tokio::test]
async fn a_plain_listener_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edthub.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ngrpc_addr = \"0.0.0.0:0\"\nhttp_addr = \"127.0.0.1:0\"\n",
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
        err.contains("refusing to serve gRPC on 0.0.0.0:0 without TLS"),
        "{err}"
    );
}

#[tokio::test]
async fn mutual_tls_identifies_a_client_by_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = edt_tests::certificate(dir.path());
    let (client_cert, client_key, fingerprint) = edt_tests::client_certificate(dir.path());
    let hub = Hub::start(
        dir.path(),
        &format!(
            "{FAST}\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n\
             [[identities]]\nname = \"ward-ops\"\ncert_sha256 = \"{fingerprint}\"\nroles = [\"ops\"]\n",
            cert.display().to_string(),
            key.display().to_string(),
            ca.display().to_string(),
        ),
    );
    let url = hub.grpc.replace("http://", "https://");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()))
        .domain_name("localhost");
    // Without a client certificate the handshake fails.
    let without = async {
        let c = Channel::from_shared(url.clone())
            .unwrap()
            .tls_config(tls.clone())
            .unwrap()
            .connect()
            .await?;
        AdminClient::new(c)
            .list_messages(v1::ListMessagesRequest::default())
            .await
            .map_err(|e| e.into())
            .map(|_| ())
    };
    let r: Result<(), Box<dyn std::error::Error>> = without.await;
    assert!(r.is_err(), "a client without a certificate is turned away");
    // With one, the certificate is the identity: no token needed.
    let c = Channel::from_shared(url)
        .unwrap()
        .tls_config(tls.identity(tonic::transport::Identity::from_pem(
            std::fs::read(&client_cert).unwrap(),
            std::fs::read(&client_key).unwrap(),
        )))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = AdminClient::new(c);
    let r = admin
        .reload_directory(Request::new(v1::ReloadDirectoryRequest {}))
        .await;
    assert_eq!(code(r), Code::Ok, "ward-ops may reload");
}

#[tokio::test]
async fn an_unregistered_client_certificate_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = edt_tests::certificate(dir.path());
    let (client_cert, client_key, fingerprint) = edt_tests::client_certificate(dir.path());
    // The CA issued the client's certificate, but no identity names it.
    let hub = Hub::start(
        dir.path(),
        &format!(
            "{FAST}\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n\
             [[identities]]\nname = \"ward-ops\"\ncert_sha256 = \"{}\"\nroles = [\"ops\"]\n",
            cert.display().to_string(),
            key.display().to_string(),
            ca.display().to_string(),
            "ab".repeat(32),
        ),
    );
    let c = Channel::from_shared(hub.grpc.replace("http://", "https://"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()))
                .domain_name("localhost")
                .identity(tonic::transport::Identity::from_pem(
                    std::fs::read(&client_cert).unwrap(),
                    std::fs::read(&client_key).unwrap(),
                )),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = AdminClient::new(c)
        .list_messages(v1::ListMessagesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let m = err.message();
    assert!(
        !m.contains("bearer token is not valid")
            && m.contains("client certificate")
            && m.contains("not registered")
            && m.contains(&fingerprint),
        "{m:?}"
    );
}
