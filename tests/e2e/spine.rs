//! The happy path and its acknowledgements, as a trust and a practice see them.

use edt_proto::v1;
use edt_tests::{drop_indexes, eventually, letter, state, Hub, FAST};
use std::time::Duration;

#[tokio::test]
async fn discharge_summary_reaches_the_practice_and_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let req = letter("EPR-0001", &["A81001"]);
    let payload = req.payload.clone();
    let r = sub.submit_document(req).await.unwrap().into_inner();
    assert!(!r.duplicate);
    assert_eq!(r.deliveries.len(), 1);
    let delivery_id = r.deliveries[0].delivery_id.clone();

    // The trust watches the message.
    let mut tracking = hub.tracking().await;
    let mut watch = tracking
        .watch_message(v1::GetMessageRequest {
            message_id: r.message_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    // The practice's system finds the document and its index.
    let folder = hub.drop_folder("A81001");
    let index = eventually(10, "the index file in the drop folder", || {
        let f = folder.clone();
        async move { drop_indexes(&f).into_iter().next() }
    })
    .await;
    assert_eq!(index["message_id"], r.message_id);
    assert_eq!(index["delivery_id"], delivery_id);
    assert_eq!(index["sender_ods"], "RX1");
    assert_eq!(index["recipient_ods"], "A81001");
    assert_eq!(index["recipient_type"], "FA");
    assert_eq!(index["document_type"], "discharge-summary");
    assert_eq!(index["nhs_number"], "9434765919");
    assert_eq!(index["file_name"], "discharge.pdf");
    assert_eq!(index["content_type"], "application/pdf");
    assert_eq!(
        index["payload_sha256"],
        edt_transforms::sha256_hex(&payload)
    );
    let doc = folder.join(index["document_file"].as_str().unwrap());
    assert_eq!(
        std::fs::read(&doc).unwrap(),
        payload,
        "the original bytes, unchanged"
    );

    // ... and acknowledges it.
    std::fs::write(
        folder.join("acks").join(format!("{delivery_id}.ack")),
        br#"{"status":"accepted"}"#,
    )
    .unwrap();

    let mut seen = Vec::new();
    let last = tokio::time::timeout(Duration::from_secs(15), async {
        let mut last = None;
        while let Some(s) = watch.message().await.unwrap() {
            seen.push(state(s.state));
            last = Some(s);
        }
        last.unwrap()
    })
    .await
    .expect("the watch ends once every delivery is final");
    assert!(last.complete);
    assert_eq!(state(last.state), "accepted", "saw {seen:?}");
    assert_eq!(seen.last().unwrap(), "accepted");
    eventually(5, "the ack file to be consumed", || {
        let p = folder.join("acks").join(format!("{delivery_id}.ack"));
        async move { (!p.exists()).then_some(()) }
    })
    .await;

    // The full timeline, in order.
    let events = hub.timeline_events(&r.message_id);
    assert_eq!(
        events,
        [
            "received",
            "created",
            "transport-accepted",
            "business-accept"
        ]
    );
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    assert_eq!(shown["deliveries"][0]["state"], "accepted");
    assert_eq!(shown["deliveries"][0]["attempts"], 1);
}

#[tokio::test]
async fn rejection_keeps_the_receivers_code_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-REJ", &["A81002"]))
        .await
        .unwrap()
        .into_inner();
    let did = r.deliveries[0].delivery_id.clone();
    let folder = hub.drop_folder("A81002");
    eventually(10, "delivery to the drop folder", || {
        let f = folder.clone();
        async move { (!drop_indexes(&f).is_empty()).then_some(()) }
    })
    .await;
    std::fs::write(
        folder.join("acks").join(format!("{did}.ack")),
        br#"{"status":"rejected","code":"30002","reason":"Patient not known here"}"#,
    )
    .unwrap();
    let mut t = hub.tracking().await;
    let s = eventually(10, "the rejection", || {
        let id = r.message_id.clone();
        let mut t = t.clone();
        async move {
            let s = t
                .get_message(v1::GetMessageRequest { message_id: id })
                .await
                .unwrap()
                .into_inner();
            (state(s.state) == "rejected").then_some(s)
        }
    })
    .await;
    assert_eq!(s.deliveries[0].ack_code, "30002");
    assert_eq!(s.deliveries[0].ack_reason, "Patient not known here");
    assert!(s.complete);
    // A repeat of the same ack is consumed quietly; a contradicting one is set aside.
    std::fs::write(
        folder.join("acks").join(format!("{did}.ack")),
        br#"{"status":"accepted"}"#,
    )
    .unwrap();
    eventually(10, "the contradicting ack to be set aside", || {
        let p = folder.join("acks/rejected").join(format!("{did}.ack"));
        async move { p.exists().then_some(()) }
    })
    .await;
    let err = std::fs::read_to_string(
        folder
            .join("acks/rejected")
            .join(format!("{did}.ack.error")),
    )
    .unwrap();
    assert!(err.contains("rejected"), "{err}");
    let again = t
        .get_message(v1::GetMessageRequest {
            message_id: r.message_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(again.state),
        "rejected",
        "a later ack does not rewrite the outcome"
    );
}

#[tokio::test]
async fn a_resubmission_returns_the_original_and_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let first = sub
        .submit_document(letter("EPR-DUP", &["A81006"]))
        .await
        .unwrap()
        .into_inner();
    let second = sub
        .submit_document(letter("EPR-DUP", &["A81006"]))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.duplicate);
    assert!(second.duplicate, "the repeat says it is a duplicate");
    assert_eq!(second.message_id, first.message_id);
    let folder = hub.drop_folder("A81006");
    eventually(10, "delivery", || {
        let f = folder.clone();
        async move { (!drop_indexes(&f).is_empty()).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        drop_indexes(&folder).len(),
        1,
        "one document in the drop folder"
    );
    let listed = hub.cli_json(&["messages", "list"]);
    assert_eq!(listed["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn one_message_to_several_practices_is_one_delivery_each() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-FAN", &["A81001", "A81004", "a81004"]))
        .await
        .unwrap()
        .into_inner();
    let to: Vec<_> = r
        .deliveries
        .iter()
        .map(|d| d.recipient_ods.as_str())
        .collect();
    assert_eq!(
        to,
        ["A81001", "A81004"],
        "a repeated recipient gets one delivery"
    );
    for ods in ["A81001", "A81004"] {
        let folder = hub.drop_folder(ods);
        let idx = eventually(10, "delivery to each practice", || {
            let f = folder.clone();
            async move { drop_indexes(&f).into_iter().next() }
        })
        .await;
        assert_eq!(idx["message_id"], r.message_id);
        assert_eq!(idx["recipient_ods"], ods);
    }
}

#[tokio::test]
async fn unusable_ack_files_are_set_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let r = sub
        .submit_document(letter("EPR-ACKS", &["A81005"]))
        .await
        .unwrap()
        .into_inner();
    let did = r.deliveries[0].delivery_id.clone();
    let acks5 = hub.drop_folder("A81005").join("acks");
    let acks1 = hub.drop_folder("A81001").join("acks");
    std::fs::write(acks5.join("not-an-id.ack"), b"{\"status\":\"accepted\"}").unwrap();
    std::fs::write(
        acks5.join("0190e3a5-0000-7000-8000-000000000000.ack"),
        b"{\"status\":\"accepted\"}",
    )
    .unwrap();
    std::fs::write(acks5.join(format!("{did}.ack")), b"accepted, thanks").unwrap();
    // Another practice acknowledging A81005's letter.
    std::fs::write(
        acks1.join(format!("{did}.ack")),
        b"{\"status\":\"accepted\"}",
    )
    .unwrap();
    eventually(10, "four acks set aside", || {
        let (a5, a1) = (acks5.clone(), acks1.clone());
        async move {
            let n = |d: std::path::PathBuf| {
                std::fs::read_dir(d.join("rejected"))
                    .map(|r| {
                        r.flatten()
                            .filter(|e| e.file_name().to_string_lossy().ends_with(".ack"))
                            .count()
                    })
                    .unwrap_or(0)
            };
            (n(a5) == 3 && n(a1) == 1).then_some(())
        }
    })
    .await;
    for (folder, name, words) in [
        (&acks5, "not-an-id.ack".to_string(), "not a delivery id"),
        (
            &acks5,
            "0190e3a5-0000-7000-8000-000000000000.ack".to_string(),
            "no delivery",
        ),
        (&acks5, format!("{did}.ack"), "JSON"),
        (&acks1, format!("{did}.ack"), "not sent to endpoint"),
    ] {
        let note =
            std::fs::read_to_string(folder.join("rejected").join(format!("{name}.error"))).unwrap();
        assert!(note.contains(words), "{name}: {note}");
        assert!(!folder.join(&name).exists(), "moved, not copied");
    }
    let stats = hub.cli_json(&["stats"]);
    assert_eq!(stats["unmatched_acks"], 4);
    let s = hub.cli_json(&["messages", "show", &r.message_id]);
    assert_eq!(
        s["deliveries"][0]["state"], "sent",
        "no unusable ack changed the delivery"
    );
}

/// A lab result as a UK lab sends it: the practice and the patient come from the message.
const ORU: &str = "MSH|^~\\&|iLABTP|RX1|||202611250930||ORU^R01|LAB-77|P|2.4\r\
PID|||100321^^^HISID^CPD~9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
PD1|||Test Practice^^A81002\r\
OBR|1|||PT^Prothrombin Time INR^HAE\r\
OBX|1|NM|INR^I.N.R.||2.5||||||F\r\
NTE|1||Target range 2.0-3.0\r";

#[tokio::test]
async fn a_lab_result_is_routed_by_what_it_says_and_disagreement_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let mut sub = hub.submission().await;
    let result = |local_id: &str| v1::SubmitDocumentRequest {
        recipient_ods: vec![],
        document_type: v1::DocumentType::OrderResult as i32,
        content_type: "application/hl7-v2".into(),
        payload: ORU.as_bytes().to_vec(),
        nhs_number: String::new(),
        file_name: "result.hl7".into(),
        ..letter(local_id, &[])
    };
    let r = sub
        .submit_document(result("LAB-77"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deliveries.len(), 1);
    assert_eq!(r.deliveries[0].recipient_ods, "A81002");
    hub.wait_all_sent([r.message_id.clone()], 20).await;
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    assert_eq!(shown["nhs_number"], "9434765919");
    let idx = drop_indexes(&hub.drop_folder("A81002"));
    assert_eq!(idx.len(), 1);
    assert_eq!(idx[0]["message_id"], r.message_id.as_str());

    // The submission names another patient than the result: refused, saying both.
    let mut wrong = result("LAB-78");
    wrong.nhs_number = "4010232137".into();
    let e = sub.submit_document(wrong).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("4010232137") && e.message().contains("9434765919"),
        "{}",
        e.message()
    );
    // A result that is not a result: refused, naming the field.
    let mut adt = result("LAB-79");
    adt.payload = ORU.replace("ORU^R01", "ADT^A01").into_bytes();
    let e = sub.submit_document(adt).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("MSH-9"), "{}", e.message());
    let listed = hub.cli_json(&["messages", "list"]);
    assert_eq!(
        listed["messages"].as_array().unwrap().len(),
        1,
        "nothing else stored"
    );
}

#[tokio::test]
async fn each_receiver_gets_the_format_its_route_names() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), FAST);
    let directory = dir.path().join("directory.toml");
    let mut text = std::fs::read_to_string(&directory).unwrap();
    // ITK3 messages name the trust's MESH mailbox as their source.
    text = text.replace(
        "name = \"Sample Acute Trust\"\n",
        "name = \"Sample Acute Trust\"\nmesh_mailbox = \"RX1OT001\"\n",
    );
    text.push_str(
        "\n[[rules]]\nname = \"A81001 letters as GP Connect\"\nods = \"A81001\"\n\
         document_types = [\"discharge-summary\"]\nendpoint = \"a81001-drop\"\nformat = \"gp-connect\"\n\
         \n[[rules]]\nname = \"A81002 results as HL7 v2\"\nods = \"A81002\"\n\
         document_types = [\"order-result\"]\nendpoint = \"a81002-drop\"\nformat = \"hl7v2\"\n",
    );
    std::fs::write(&directory, text).unwrap();
    hub.cli_json(&["directory", "reload"]);
    let mut sub = hub.submission().await;

    // A PDF discharge summary arrives as a GP Connect Send Document carrying it.
    let letter_req = letter("FMT-1", &["A81001"]);
    let pdf = letter_req.payload.clone();
    let r = sub.submit_document(letter_req).await.unwrap().into_inner();
    hub.wait_all_sent([r.message_id.clone()], 20).await;
    let delivery = &r.deliveries[0].delivery_id;
    let folder = hub.drop_folder("A81001");
    let xml = std::fs::read(folder.join(format!("{delivery}.xml"))).unwrap();
    let m = edt_transforms::itk3::read_message(&xml, edt_transforms::itk3::Format::Xml).unwrap();
    assert_eq!(m.event, "ITK007C");
    assert_eq!(&m.message_id, delivery);
    assert_eq!(m.nhs_number.as_deref(), Some("9434765919"));
    let binary = m.document.resources_of_type("Binary").next().unwrap();
    assert_eq!(edt_transforms::itk3::binary_content(binary).unwrap(), pdf);
    let idx = drop_indexes(&folder);
    assert_eq!(idx[0]["content_type"], "application/fhir+xml");
    assert_eq!(idx[0]["payload_sha256"], edt_transforms::sha256_hex(&xml));
    let shown = hub.cli_json(&["messages", "show", &r.message_id]);
    assert!(
        shown["timeline"]
            .to_string()
            .contains("rendered as gp-connect"),
        "{shown}"
    );
    // Ops can see exactly what the receiver got, and what the trust sent.
    let out = dir.path().join("shown");
    let original = dir.path().join("original.pdf");
    let saved = hub.cli_json(&[
        "messages",
        "show",
        &r.message_id,
        "--rendered",
        out.to_str().unwrap(),
        "--original",
        original.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&original).unwrap(), pdf);
    assert_eq!(
        std::fs::read(out.join(format!("{delivery}.xml"))).unwrap(),
        xml,
        "rendered again, byte for byte"
    );
    assert_eq!(saved["saved"][1]["format"], "gp-connect");
    assert_eq!(
        saved["saved"][1]["sha256"],
        edt_transforms::sha256_hex(&xml)
    );

    // An ORU^R01 arrives as HL7 v2, as sent.
    let result = v1::SubmitDocumentRequest {
        recipient_ods: vec![],
        document_type: v1::DocumentType::OrderResult as i32,
        content_type: "application/hl7-v2".into(),
        payload: ORU.as_bytes().to_vec(),
        nhs_number: String::new(),
        file_name: String::new(),
        ..letter("FMT-2", &[])
    };
    let r = sub.submit_document(result).await.unwrap().into_inner();
    hub.wait_all_sent([r.message_id.clone()], 20).await;
    let delivery = &r.deliveries[0].delivery_id;
    let hl7 = std::fs::read(hub.drop_folder("A81002").join(format!("{delivery}.hl7"))).unwrap();
    assert_eq!(hl7, ORU.as_bytes());
    let parsed = edt_transforms::hl7::parse_oru(&hl7).unwrap();
    assert_eq!(parsed.control_id, "LAB-77");

    // A PDF result arrives as an ORU^R01 carrying the PDF (OBX of type ED).
    let mut pdf_result = letter("FMT-3", &["A81002"]);
    pdf_result.document_type = v1::DocumentType::OrderResult as i32;
    let report = pdf_result.payload.clone();
    let r = sub.submit_document(pdf_result).await.unwrap().into_inner();
    hub.wait_all_sent([r.message_id.clone()], 20).await;
    let delivery = &r.deliveries[0].delivery_id;
    let hl7 = std::fs::read(hub.drop_folder("A81002").join(format!("{delivery}.hl7"))).unwrap();
    let oru = edt_transforms::hl7::parse_oru(&hl7).unwrap();
    assert_eq!(&oru.control_id, delivery);
    assert_eq!(oru.patient.nhs_number.unwrap().to_string(), "9434765919");
    let ed = oru.results[0].observations[0].encapsulated.clone().unwrap();
    assert_eq!(
        edt_transforms::itk3::base64_decode(&ed.data).unwrap(),
        report
    );

    // Without an NHS number it cannot be a result: refused at submission, saying why, and
    // nothing is receipted that is certain to fail.
    let mut anonymous = letter("FMT-4", &["A81002"]);
    anonymous.document_type = v1::DocumentType::OrderResult as i32;
    anonymous.nhs_number = String::new();
    let e = sub.submit_document(anonymous).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("A81002") && e.message().contains("needs the patient's NHS number"),
        "{e:?}"
    );
}
