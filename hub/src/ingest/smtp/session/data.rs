//! DATA: the message read up to `<CRLF>.<CRLF>` only, bare line endings refused, then turned
//! into a submission and answered once it is durable (or refused, saying why).

use super::*;

/// What the client sent after `354`.
enum Data {
    /// The message, ended by `<CRLF>.<CRLF>`, dot-stuffing undone. `oversize`: more than the
    /// limit came (the rest was read and dropped); `long_line`: a line was over 998 characters.
    Message {
        message: Vec<u8>,
        oversize: bool,
        long_line: bool,
    },
    /// A bare CR or LF: the session must end now, before anything after it is read as SMTP.
    Bare(command::BareNewline),
    /// End of stream or timeout (a 421 is queued).
    Closed,
}

/// Reads message data up to `<CRLF>.<CRLF>` and no other end (smtp-proto's receiver, which
/// is not fooled by `<LF>.<LF>` or `<CR>.<CR>`), refusing bare line endings as they arrive:
/// only the bytes the receiver took as data are checked, so pipelined commands after the end
/// stay in the buffer.
async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    timeout: Duration,
    deadline: Instant,
    limit: usize,
) -> std::io::Result<Data> {
    use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
    let mut receiver = DataReceiver::new();
    let mut discard: Option<DummyDataReceiver> = None;
    // The receiver recognises `.` only after a CRLF it has seen: the CRLF that ended DATA is
    // given to it, and taken off the message again at the end.
    let mut message = Vec::with_capacity(64 * 1024);
    receiver.ingest(&mut b"\r\n".iter(), &mut message);
    let mut previous = b'\n';
    let mut line_len = 0usize;
    let mut long_line = false;
    loop {
        if conn.reader.buffer().is_empty() {
            conn.flush().await?;
        }
        let until = (Instant::now() + timeout).min(deadline);
        let available = match tokio::time::timeout_at(until, conn.reader.fill_buf()).await {
            Ok(r) => r?,
            Err(_) => {
                conn.out.line("421 4.4.2 Timeout: closing the connection");
                return Ok(Data::Closed);
            }
        };
        if available.is_empty() {
            return Ok(Data::Closed);
        }
        let mut rest = available.iter();
        let done = match discard.as_mut() {
            Some(d) => d.ingest(&mut rest),
            None => receiver.ingest(&mut rest, &mut message),
        };
        let used = available.len() - rest.as_slice().len();
        for &b in &available[..used] {
            if previous == b'\r' && b != b'\n' {
                return Ok(Data::Bare(command::BareNewline::Cr));
            }
            if b == b'\n' {
                if previous != b'\r' {
                    return Ok(Data::Bare(command::BareNewline::Lf));
                }
                line_len = 0;
            } else if b != b'\r' {
                line_len += 1;
                long_line |= line_len > DATA_LINE_LIMIT - 2;
            }
            previous = b;
        }
        conn.reader.consume(used);
        if discard.is_none() && message.len() > limit + 2 {
            discard = Some(DummyDataReceiver::new_data(&receiver));
            message = Vec::new();
        }
        if done {
            let oversize = discard.is_some();
            if !oversize {
                message.drain(..2);
            }
            return Ok(Data::Message {
                message,
                oversize,
                long_line,
            });
        }
    }
}

/// DATA: reads the message, turns it into a submission and replies once it is durable (or
/// refused). Returns false when the connection should close.
pub(super) async fn data<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    state: &mut State,
    conn: &mut Conn<S>,
) -> std::io::Result<bool> {
    let cfg = &shared.hub.config.smtp;
    let Some(envelope) = state.envelope.take() else {
        conn.out.line("503 5.5.1 Need MAIL and RCPT before DATA");
        return Ok(true);
    };
    if envelope.recipients.is_empty() {
        conn.out.line("554 5.5.1 No valid recipients");
        state.envelope = Some(envelope);
        return Ok(true);
    }
    conn.out
        .line("354 Start mail input; end with <CRLF>.<CRLF>");
    let timeout = Duration::from_secs(cfg.data_timeout_secs);
    let (message, oversize, long_line) = match read_data(
        conn,
        timeout,
        state.deadline,
        cfg.max_message_bytes,
    )
    .await?
    {
        Data::Message {
            message,
            oversize,
            long_line,
        } => (message, oversize, long_line),
        Data::Closed => return Ok(false),
        Data::Bare(bare) => {
            metrics::counter!("edthub_smtp_bare_newlines_total").increment(1);
            metrics::counter!("edthub_smtp_messages_total", "outcome" => "refused").increment(1);
            tracing::warn!(peer = %state.peer, "smtp client sent a bare line ending in message data: closing");
            conn.out.line(&bare.reply("the message data"));
            return Ok(false);
        }
    };
    let started = std::time::Instant::now();
    let reply = if oversize {
        metrics::counter!("edthub_smtp_messages_total", "outcome" => "too-large").increment(1);
        format!(
            "552 5.3.4 Message exceeds the limit of {} bytes; nothing was stored",
            cfg.max_message_bytes
        )
    } else if long_line {
        metrics::counter!("edthub_smtp_messages_total", "outcome" => "refused").increment(1);
        format!(
            "500 5.5.2 A line of the message is longer than {} characters; nothing was stored",
            DATA_LINE_LIMIT - 2
        )
    } else {
        submit(shared, state, &envelope, &message).await
    };
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "smtp message handled"
    );
    conn.out.line(&reply);
    Ok(true)
}

async fn submit(shared: &Shared, state: &State, envelope: &Envelope, message: &[u8]) -> String {
    let hub = &shared.hub;
    let count = |outcome: &'static str| {
        metrics::counter!("edthub_smtp_messages_total", "outcome" => outcome).increment(1);
    };
    let req = match crate::ingest::smtp::mail::request_from_mail(
        message,
        &envelope.sender_ods,
        &envelope.recipients,
    ) {
        Ok(r) => r,
        Err(e) => {
            count("refused");
            return format!("554 5.6.0 {}; nothing was stored", e.0);
        }
    };
    let sub = crate::ingest::validate(req, &hub.config.limits).map(|mut s| {
        s.channel = Channel::Smtp;
        s.reply_to = (!envelope.from.is_empty()).then(|| envelope.from.clone());
        s
    });
    let actor = match &state.user {
        Some((user, _)) => format!("smtp:{user}"),
        None => format!("smtp:{}", envelope.from),
    };
    let result = match sub {
        Ok(sub) => crate::ingest::submit(hub, sub, &actor).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(receipt) => {
            count(if receipt.duplicate {
                "duplicate"
            } else {
                "accepted"
            });
            tracing::info!(
                message = %receipt.message_id,
                peer = %state.peer,
                deliveries = receipt.deliveries.len(),
                duplicate = receipt.duplicate,
                "document received by smtp"
            );
            format!(
                "250 2.0.0 OK: queued as {}{}",
                receipt.message_id,
                if receipt.duplicate {
                    " (already received)"
                } else {
                    ""
                }
            )
        }
        Err(SubmitError::Invalid { field, rule }) => {
            count("refused");
            if field == "payload" && rule.contains("the limit is") {
                format!("552 5.3.4 {field}: {rule}; nothing was stored")
            } else {
                format!("554 5.6.0 {field}: {rule}; nothing was stored")
            }
        }
        Err(SubmitError::Unavailable(why)) => {
            count("unavailable");
            format!("451 4.3.0 {why}")
        }
        Err(SubmitError::DiskFull(why)) => {
            count("unavailable");
            format!("451 4.3.1 {why}")
        }
        Err(SubmitError::Backlog(why)) => {
            count("unavailable");
            format!("451 4.3.2 {why}")
        }
        Err(SubmitError::Store(e)) => {
            count("unavailable");
            tracing::error!(error = %e, "smtp submission could not be stored");
            "451 4.3.0 The document could not be stored durably; try again later".into()
        }
    }
}
