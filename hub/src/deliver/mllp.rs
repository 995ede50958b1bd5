//! MLLP transport: the document (an HL7 v2 message, as its route renders it) framed
//! `0x0B … 0x1C 0x0D` to a results system, and its acknowledgement read back. `AA`/`CA` for
//! this message's MSH-10 is `sent`; `AE`/`AR` (`CE`/`CR`) is `rejected` with the ERR text (the
//! receiver had it and refused it); no answer, a connection refused or closed, or an answer
//! that is not for this message is retried.

use super::{SendError, Sent};
use edt_transforms::hl7::mllp::{frame, next_frame};
use edt_transforms::hl7::{parse_ack, Message};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A results system listening for MLLP.
pub struct Mllp {
    /// `HOST:PORT`.
    pub address: String,
    /// How long to wait for the connection and for the acknowledgement.
    pub timeout: Duration,
}

/// Largest acknowledgement read.
const MAX_ACK: usize = 1024 * 1024;

impl super::Transport for Mllp {
    fn send<'a>(
        &'a self,
        _d: &'a crate::track::DeliveryRecord,
        _m: &'a crate::track::MessageRecord,
        doc: super::Document,
    ) -> futures::future::BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(send(&self.address, self.timeout, doc.bytes))
    }
}

/// Sends one HL7 v2 message to `address` and reads its acknowledgement.
pub async fn send(address: &str, timeout: Duration, bytes: Vec<u8>) -> Result<Sent, SendError> {
    let message = Message::parse_bytes(&bytes)
        .map_err(|e| SendError::Permanent(format!("the document is not an HL7 v2 message: {e}")))?;
    let control_id = message.msh().text(10).into_owned();
    let transient = |what: String| SendError::Transient(format!("MLLP receiver {address}: {what}"));
    let mut tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| transient(format!("no connection within {} s", timeout.as_secs())))?
        .map_err(|e| transient(format!("cannot connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(&frame(&bytes))
        .await
        .map_err(|e| transient(format!("sending failed: {e}")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let payload = loop {
        if let Some((payload, _)) = next_frame(&buf) {
            break payload.to_vec();
        }
        if buf.len() > MAX_ACK {
            return Err(transient("the answer is larger than 1 MiB".into()));
        }
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .map_err(|_| transient(format!("no acknowledgement within {} s", timeout.as_secs())))?
            .map_err(|e| transient(format!("reading the acknowledgement failed: {e}")))?;
        if n == 0 {
            return Err(transient(
                "the connection closed before an acknowledgement came".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let _ = tcp.shutdown().await;
    let ack = Message::parse_bytes(&payload)
        .map_err(|e| transient(format!("the acknowledgement is not HL7 v2: {e}")))?;
    let ack = parse_ack(&ack)
        .map_err(|e| transient(format!("the acknowledgement cannot be read: {e}")))?;
    // An empty MSA-2 is a receiver that could not read the message at all (its reject says
    // so); any other id is an answer to something else.
    let unreadable = ack.acknowledged_control_id.is_empty() && !ack.code.is_accept();
    if !unreadable && ack.acknowledged_control_id != control_id {
        return Err(transient(format!(
            "the acknowledgement is for message {:?}, not {control_id:?}",
            ack.acknowledged_control_id
        )));
    }
    let code = ack.code.as_str().to_string();
    let text = ack
        .errors
        .iter()
        .map(|e| e.text.clone())
        .filter(|t| !t.is_empty())
        .chain((!ack.text.is_empty()).then(|| ack.text.clone()))
        .collect::<Vec<_>>();
    let mut text_out = Vec::new();
    for t in text {
        if !text_out.contains(&t) {
            text_out.push(t);
        }
    }
    let text = text_out.join("; ");
    let detail = format!(
        "sent over MLLP to {address} as message {control_id} ({} bytes); the receiver answered {code}{}",
        bytes.len(),
        if text.is_empty() { String::new() } else { format!(": {text}") }
    );
    Ok(Sent {
        transport_id: control_id,
        detail,
        refused: (!ack.code.is_accept()).then_some((code, text)),
    })
}
