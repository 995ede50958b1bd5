//! Receivers that pull over gRPC (`ReceiverDelivery`): each sees and acknowledges only its own
//! endpoint's documents, and its acknowledgements move the deliveries like any other.

use edt_proto::v1::{self, receiver_delivery_client::ReceiverDeliveryClient};
use edt_tests::{letter, Hub, FAST};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Request};

const A81001_TOKEN: &str = "practice-a81001-secret";
const A81002_TOKEN: &str = "practice-a81002-secret";

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

async fn client(hub: &Hub) -> ReceiverDeliveryClient<Channel> {
    ReceiverDeliveryClient::new(hub.channel().await)
}

/// The next document on a stream, or `None` if nothing comes within `ms`.
async fn next(
    s: &mut tonic::Streaming<v1::ReceivedDocument>,
    ms: u64,
) -> Option<v1::ReceivedDocument> {
    tokio::time::timeout(Duration::from_millis(ms), s.message())
        .await
        .ok()
        .map(|r| r.expect("stream ok").expect("stream open"))
}

#[tokio::test]
async fn receivers_pull_only_their_own_documents_and_acknowledge_them() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let toml = dir.path().join("directory.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    for (ods, token) in [("A81001", A81001_TOKEN), ("A81002", A81002_TOKEN)] {
        let lower = ods.to_ascii_lowercase();
        let from = format!("[endpoints.{lower}-drop]\nkind = \"file\"\npath = \"drop/{ods}\"");
        assert!(text.contains(&from));
        text = text.replace(
            &from,
            &format!(
                "[endpoints.{lower}-drop]\nkind = \"grpc\"\ntoken_sha256 = \"{}\"",
                edt_transforms::sha256_hex(token.as_bytes())
            ),
        );
    }
    std::fs::write(&toml, text).unwrap();
    hub.cli_json(&["directory", "reload"]);

    let mut sub = hub.submission().await;
    let mut mine = Vec::new();
    let mut messages = Vec::new();
    for n in 0..2 {
        let req = letter(&format!("PULL-{n}"), &["A81001"]);
        let payload = req.payload.clone();
        let r = sub.submit_document(req).await.unwrap().into_inner();
        mine.push((r.deliveries[0].delivery_id.clone(), payload));
        messages.push(r.message_id);
    }
    let theirs = sub
        .submit_document(letter("PULL-X", &["A81002"]))
        .await
        .unwrap()
        .into_inner();
    messages.push(theirs.message_id.clone());
    hub.wait_all_sent(messages, 20).await;

    // Wrong or missing identity.
    let mut c = client(&hub).await;
    for token in [None, Some("not-a-token")] {
        let e = c
            .pull_documents(with_token(v1::PullDocumentsRequest::default(), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    }
    // The right identity asking for another practice's documents.
    let e = c
        .pull_documents(with_token(
            v1::PullDocumentsRequest {
                recipient_ods: "A81002".into(),
            },
            Some(A81001_TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");

    // A81001 gets its two documents, byte for byte, and nothing of A81002's.
    let mut stream = c
        .pull_documents(with_token(
            v1::PullDocumentsRequest {
                recipient_ods: "A81001".into(),
            },
            Some(A81001_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(next(&mut stream, 10_000).await.expect("a document"));
    }
    assert!(next(&mut stream, 1_000).await.is_none(), "only its own");
    for (id, payload) in &mine {
        let d = got.iter().find(|d| &d.delivery_id == id).expect("offered");
        assert_eq!(&d.payload, payload);
        assert_eq!(d.recipient_ods, "A81001");
        assert_eq!(d.sender_ods, "RX1");
        assert_eq!(d.nhs_number, "9434765919");
    }

    // A new document reaches the open stream.
    let req = letter("PULL-LIVE", &["A81001"]);
    let live_payload = req.payload.clone();
    let live = sub.submit_document(req).await.unwrap().into_inner();
    let d = next(&mut stream, 10_000).await.expect("the new document");
    assert_eq!(d.delivery_id, live.deliveries[0].delivery_id);
    assert_eq!(d.payload, live_payload);

    // Acknowledging: not someone else's; delivered then accepted for its own.
    let e = c
        .acknowledge(with_token(
            v1::AcknowledgeRequest {
                delivery_id: theirs.deliveries[0].delivery_id.clone(),
                status: v1::AckStatus::Accepted as i32,
                ..Default::default()
            },
            Some(A81001_TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = c
        .acknowledge(with_token(
            v1::AcknowledgeRequest {
                delivery_id: mine[1].0.clone(),
                status: v1::AckStatus::Rejected as i32,
                ..Default::default()
            },
            Some(A81001_TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "a rejection says why: {e}");
    for (status, want) in [
        (v1::AckStatus::Delivered, v1::DeliveryState::Delivered),
        (v1::AckStatus::Accepted, v1::DeliveryState::Accepted),
    ] {
        let r = c
            .acknowledge(with_token(
                v1::AcknowledgeRequest {
                    delivery_id: mine[0].0.clone(),
                    status: status as i32,
                    ..Default::default()
                },
                Some(A81001_TOKEN),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.state, want as i32);
    }
    let r = c
        .acknowledge(with_token(
            v1::AcknowledgeRequest {
                delivery_id: mine[1].0.clone(),
                status: v1::AckStatus::Rejected as i32,
                code: "30002".into(),
                reason: "patient not registered here".into(),
            },
            Some(A81001_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, v1::DeliveryState::Rejected as i32);
    let shown = hub.cli_json(&["messages", "show", &live.message_id]);
    assert_eq!(shown["deliveries"][0]["state"], "sent");
    let listed = hub.cli_json(&["messages", "list", "--state", "accepted"]);
    assert_eq!(listed["messages"].as_array().unwrap().len(), 1);
    let accepted_id = listed["messages"][0]["message_id"].as_str().unwrap();
    let timeline = hub.cli_json(&["messages", "show", accepted_id])["timeline"].to_string();
    assert!(timeline.contains("grpc-receiver:a81001-drop"), "{timeline}");
    assert!(
        timeline.contains("accepted by gRPC acknowledgement"),
        "the channel is named: {timeline}"
    );

    // A new stream offers only what is still unacknowledged.
    let mut again = c
        .pull_documents(with_token(
            v1::PullDocumentsRequest::default(),
            Some(A81001_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    let d = next(&mut again, 10_000)
        .await
        .expect("the unacknowledged one");
    assert_eq!(d.delivery_id, live.deliveries[0].delivery_id);
    assert!(next(&mut again, 1_000).await.is_none());

    // A81002's receiver sees its own.
    let mut other = c
        .pull_documents(with_token(
            v1::PullDocumentsRequest::default(),
            Some(A81002_TOKEN),
        ))
        .await
        .unwrap()
        .into_inner();
    let d = next(&mut other, 10_000).await.expect("A81002's document");
    assert_eq!(d.delivery_id, theirs.deliveries[0].delivery_id);
}
