//! MLLP intake: the listener laboratory and order-comms systems send HL7 v2 results to
//! (`0x0B <message> 0x1C 0x0D`, optionally over TLS with the gRPC certificate). Each frame is
//! one message or one batch (FHS/BHS, split by `edt_transforms::hl7::batch`); each message is
//! answered by [`answer`] once it is durable, a batch with a batch of acknowledgements.
//!
//! The connection is the only thing a bad sender can break: bytes outside a frame are
//! skipped, a frame cut by a new start block is answered `AR` and dropped, a frame over
//! `mllp.max_message_bytes` is answered `AR` and its bytes discarded up to its end, a frame
//! not finished within `mllp.read_timeout_secs` is answered `AR` and the connection closed,
//! and a connection with nothing to say for `mllp.idle_timeout_secs` is closed.

pub mod answer;

use crate::hub::Hub;
use crate::shutdown::Shutdown;
use edt_transforms::hl7::batch;
use edt_transforms::hl7::mllp::{frame, END, START, TRAILER};
use edt_transforms::hl7::{build_unreadable_ack, AckCode, AckRequest, ErrorDetail, ErrorSeverity};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A rustls server configuration from the gRPC certificate settings (`[tls]`): certificate
/// chain and key, and, with `client_ca`, client certificates required.
fn server_tls(tls: &crate::config::TlsConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        anyhow::bail!("mllp.tls needs tls.cert and tls.key");
    };
    crate::ingest::tls::server_config(cert, key, tls.client_ca.as_deref())
}

/// Accepts MLLP connections on `listener` until `shutdown` fires.
pub fn spawn(
    hub: Arc<Hub>,
    listener: TcpListener,
    mut shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let cfg = &hub.config.mllp;
    let tls = if cfg.tls {
        Some(tokio_rustls::TlsAcceptor::from(server_tls(
            &hub.config.tls,
        )?))
    } else {
        None
    };
    let limit = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    Ok(tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.wait() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "mllp accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let hub = hub.clone();
            let tls = tls.clone();
            let permit = limit.clone().try_acquire_owned();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let peer = peer.to_string();
                let permit = permit.ok();
                if permit.is_none() {
                    metrics::counter!("edthub_mllp_connections_refused_total").increment(1);
                }
                match tls {
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            Duration::from_secs(hub.config.mllp.read_timeout_secs),
                            acceptor.accept(tcp),
                        )
                        .await;
                        match handshake {
                            Ok(Ok(s)) => serve(&hub, s, &peer, permit, shutdown).await,
                            Ok(Err(e)) => {
                                tracing::warn!(%peer, error = %e, "mllp TLS handshake failed")
                            }
                            Err(_) => tracing::warn!(%peer, "mllp TLS handshake timed out"),
                        }
                    }
                    None => serve(&hub, tcp, &peer, permit, shutdown).await,
                }
            });
        }
    }))
}

/// An `AR` for something that is not a readable message (too large, broken, too slow, too
/// many connections), framed.
fn refusal(hub: &Hub, code: &str, text: String) -> Vec<u8> {
    let cfg = &hub.config.mllp;
    let request = AckRequest {
        code: AckCode::ApplicationReject,
        control_id: uuid::Uuid::now_v7().to_string(),
        timestamp: answer::hl7_time(crate::track::now_ms()),
        text: answer::fit(&text, 80),
        errors: vec![ErrorDetail {
            location: None,
            code: code.into(),
            severity: ErrorSeverity::Error,
            text: answer::fit(&text, 199),
        }],
    };
    metrics::counter!("edthub_mllp_answers_total", "code" => "AR").increment(1);
    let ack = build_unreadable_ack(&request, &cfg.application, &cfg.facility)
        .map(|m| m.render())
        .unwrap_or_default();
    frame(ack.as_bytes())
}

fn too_large(max: usize) -> String {
    format!(
        "message too large: more than {max} bytes (mllp.max_message_bytes); it was discarded \
         and nothing was stored"
    )
}

/// Where the reader is in the stream.
enum Reading {
    /// Between frames.
    Idle,
    /// Inside a frame that started at this instant.
    Frame(Instant),
    /// Discarding the rest of an oversized frame, up to its end block.
    Discarding(Instant),
}

/// Serves one connection (`permit`: its place among `mllp.max_connections`, or `None` to refuse
/// it), then gives its place back before closing it: a sender that sees the close may connect
/// again at once.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    hub: &Hub,
    mut stream: S,
    peer: &str,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    shutdown: Shutdown,
) {
    match permit {
        Some(_) => converse(hub, &mut stream, peer, shutdown).await,
        None => {
            let text = format!(
                "too many connections (mllp.max_connections = {}); try again later",
                hub.config.mllp.max_connections
            );
            let _ = stream.write_all(&refusal(hub, "207", text)).await;
        }
    }
    drop(permit);
    let _ = stream.shutdown().await;
}

/// Reads frames and answers them until the sender closes, goes quiet, or is too slow.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    hub: &Hub,
    stream: &mut S,
    peer: &str,
    mut shutdown: Shutdown,
) {
    let cfg = &hub.config.mllp;
    let max = cfg.max_message_bytes;
    let idle = Duration::from_secs(cfg.idle_timeout_secs);
    let read_timeout = Duration::from_secs(cfg.read_timeout_secs);
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut state = Reading::Idle;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Act on what the buffer holds before reading more.
        match state {
            Reading::Idle => match buf.iter().position(|&b| b == START) {
                Some(p) => {
                    if p > 0 {
                        tracing::debug!(%peer, bytes = p, "mllp: skipped bytes outside a frame");
                    }
                    buf.drain(..p);
                    state = Reading::Frame(Instant::now());
                    continue;
                }
                None => buf.clear(),
            },
            Reading::Frame(started) => {
                let body = &buf[1..];
                let end = body.windows(2).position(|w| w == [END, TRAILER]);
                let restart = body.iter().position(|&b| b == START);
                match (end, restart) {
                    (Some(e), r) if r.is_none_or(|r| r > e) => {
                        let reply = if e > max {
                            refusal(hub, "207", too_large(max))
                        } else {
                            handle(hub, &body[..e]).await
                        };
                        buf.drain(..e + 3);
                        state = Reading::Idle;
                        if !reply.is_empty() && stream.write_all(&reply).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    (_, Some(r)) => {
                        let text = format!(
                            "broken frame: a new start block (0x0B) came after {r} bytes, before \
                             the end block (0x1C 0x0D); those bytes were discarded"
                        );
                        buf.drain(..r + 1);
                        state = Reading::Frame(Instant::now());
                        if stream.write_all(&refusal(hub, "100", text)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    (None, None) if body.len() > max => {
                        let text = too_large(max);
                        // Keep a possible first half of the end block.
                        let keep = usize::from(buf.last() == Some(&END));
                        buf.drain(..buf.len() - keep);
                        state = Reading::Discarding(started);
                        if stream.write_all(&refusal(hub, "207", text)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            Reading::Discarding(_) => {
                if let Some(e) = buf.windows(2).position(|w| w == [END, TRAILER]) {
                    buf.drain(..e + 2);
                    state = Reading::Idle;
                    continue;
                }
                let keep = usize::from(buf.last() == Some(&END));
                buf.drain(..buf.len() - keep);
            }
        }
        let deadline = match state {
            Reading::Idle => Instant::now() + idle,
            Reading::Frame(started) | Reading::Discarding(started) => started + read_timeout,
        };
        let read = tokio::select! {
            _ = shutdown.wait() => return,
            r = tokio::time::timeout_at(deadline, stream.read(&mut chunk)) => r,
        };
        match read {
            Ok(Ok(0)) => {
                if matches!(state, Reading::Frame(_)) {
                    tracing::info!(%peer, bytes = buf.len(), "mllp: connection closed inside a frame; nothing was stored");
                }
                return;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "mllp connection ended");
                return;
            }
            Err(_) => {
                if let Reading::Idle = state {
                    tracing::debug!(%peer, "mllp: idle connection closed");
                } else {
                    let text = format!(
                        "message not completed within {} s (mllp.read_timeout_secs); nothing was \
                         stored and the connection is closed",
                        cfg.read_timeout_secs
                    );
                    let _ = stream.write_all(&refusal(hub, "207", text)).await;
                }
                return;
            }
        }
    }
}

/// The framed answer to one frame's payload: one acknowledgement, a batch of them, or
/// nothing (MSH-15 asked for none).
async fn handle(hub: &Hub, payload: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(payload) else {
        // HL7 v2 over MLLP is text; ISO 8859-1 senders are read byte for byte.
        let text: String = payload.iter().map(|&b| b as char).collect();
        return respond(hub, &text).await;
    };
    respond(hub, text).await
}

async fn respond(hub: &Hub, text: &str) -> Vec<u8> {
    let cfg = &hub.config.mllp;
    let unit = batch::split(text);
    if !unit.is_batch() {
        // One message a frame; several sent in one frame without a batch header are each
        // answered in a frame of their own.
        let mut out = Vec::new();
        for m in &unit.messages {
            if let Some(a) = answer::answer(hub, m).await.ack {
                out.extend(frame(a.as_bytes()));
            }
        }
        return out;
    }
    let mut acks = Vec::with_capacity(unit.messages.len());
    for m in &unit.messages {
        if let Some(a) = answer::answer(hub, m).await.ack {
            acks.push(a);
        }
    }
    let now = answer::hl7_time(crate::track::now_ms());
    let out = batch::wrap_acks(&unit, &acks, &cfg.application, &cfg.facility, &now);
    frame(out.as_bytes())
}
