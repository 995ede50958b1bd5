//! One SMTP session, phase by phase, one module each: `greeting` (EHLO and the session-level
//! commands), STARTTLS (here, in the loop), `auth` (AUTH after STARTTLS), `envelope` (MAIL and
//! RCPT, each checked as it arrives) and `data` (the message, answered only once the document
//! is durable, or refused saying precisely why). This module holds the session's state, the
//! line reader and the command loop.

mod auth;
mod data;
mod envelope;
mod greeting;

use super::command::{self, Command};
use super::Shared;
use crate::ingest::SubmitError;
use crate::track::Channel;
use edt_routers::OrgStatus;
use edt_transforms::OdsCode;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::Instant;

/// Longest command line accepted, line ending included. RFC 5321 allows 512; RFC 4954 allows
/// AUTH lines up to 12288.
const COMMAND_LINE_LIMIT: usize = 12_288;
/// Longest line of message data, line ending included (RFC 5321 section 4.5.3.1.6).
const DATA_LINE_LIMIT: usize = 1000;
/// Failed AUTH attempts before the connection is closed.
const AUTH_ATTEMPTS: u32 = 3;
/// Bad commands before the connection is closed.
const ERROR_LIMIT: u32 = 20;

/// What a session knows about its client.
pub(super) struct State {
    pub peer: String,
    pub tls: bool,
    greeted: bool,
    /// The authenticated user and the sender ODS code it is bound to.
    user: Option<(String, String)>,
    envelope: Option<Envelope>,
    auth_failures: u32,
    errors: u32,
    pub deadline: Instant,
}

struct Envelope {
    from: String,
    sender_ods: String,
    recipients: Vec<String>,
}

impl State {
    pub fn new(peer: String, deadline: Instant) -> Self {
        Self {
            peer,
            tls: false,
            greeted: false,
            user: None,
            envelope: None,
            auth_failures: 0,
            errors: 0,
            deadline,
        }
    }

    /// Counts a refused command; true (with a 421 queued) when the session should end.
    fn count_error(&mut self, out: &mut Out) -> bool {
        self.errors += 1;
        if self.errors >= ERROR_LIMIT {
            out.line("421 4.7.0 Too many errors: closing the connection");
            return true;
        }
        false
    }

    /// After STARTTLS the client starts again (RFC 3207 section 4.2).
    pub fn restart_in_tls(&mut self) {
        self.tls = true;
        self.greeted = false;
        self.user = None;
        self.envelope = None;
    }
}

/// How a session on one stream ended.
pub(super) enum Next<S> {
    /// QUIT, end of stream, timeout or too many errors: close.
    Close,
    /// STARTTLS was accepted: do the handshake on this stream and carry on.
    StartTls(S),
}

enum Line {
    Text(Vec<u8>),
    TooLong,
    Eof,
}

/// Reads one line (to LF) of at most `limit` bytes; a longer one is consumed and reported.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, limit: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long && line.len() + take <= limit {
            line.extend_from_slice(&available[..take]);
        } else {
            too_long = true;
        }
        r.consume(take);
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Text(line)
            });
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Replies queued until the client has nothing more in flight (PIPELINING).
struct Out {
    buf: Vec<u8>,
}

impl Out {
    fn line(&mut self, text: &str) {
        // Replies never carry a line break from something quoted in them.
        let start = self.buf.len();
        self.buf.extend_from_slice(text.as_bytes());
        for b in &mut self.buf[start..] {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        self.buf.extend_from_slice(b"\r\n");
    }
}

struct Conn<S> {
    reader: BufReader<S>,
    out: Out,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.buf.is_empty() {
            let stream = self.reader.get_mut();
            stream.write_all(&self.out.buf).await?;
            stream.flush().await?;
            self.out.buf.clear();
        }
        Ok(())
    }

    /// Sends queued replies if the client is waiting for them, then reads a line within the
    /// timeout and the session's deadline. `None`: timed out (a 421 has been queued).
    async fn next_line(
        &mut self,
        timeout: Duration,
        limit: usize,
        deadline: Instant,
    ) -> std::io::Result<Option<Line>> {
        if self.reader.buffer().is_empty() {
            self.flush().await?;
        }
        let until = (Instant::now() + timeout).min(deadline);
        match tokio::time::timeout_at(until, read_line(&mut self.reader, limit)).await {
            Ok(line) => line.map(Some),
            Err(_) => {
                self.out.line("421 4.4.2 Timeout: closing the connection");
                Ok(None)
            }
        }
    }
}

/// Runs the dialogue on `stream` until it closes or asks for TLS.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    state: &mut State,
    stream: S,
    greet: bool,
) -> std::io::Result<Next<S>> {
    let cfg = &shared.hub.config.smtp;
    let mut conn = Conn {
        reader: BufReader::with_capacity(16 * 1024, stream),
        out: Out { buf: Vec::new() },
    };
    if greet {
        conn.out
            .line(&format!("220 {} ESMTP edthub ready", cfg.domain));
    }
    let command_timeout = Duration::from_secs(cfg.command_timeout_secs);
    loop {
        let line = match conn
            .next_line(command_timeout, COMMAND_LINE_LIMIT, state.deadline)
            .await?
        {
            None | Some(Line::Eof) => break,
            Some(Line::TooLong) => {
                conn.out.line("500 5.5.2 Line too long");
                if state.count_error(&mut conn.out) {
                    break;
                }
                continue;
            }
            Some(Line::Text(l)) => l,
        };
        if let Err(bare) = command::check_line_ending(&line) {
            metrics::counter!("edthub_smtp_bare_newlines_total").increment(1);
            tracing::warn!(peer = %state.peer, "smtp client sent a bare line ending in a command: closing");
            conn.out.line(&bare.reply("a command"));
            break;
        }
        let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        let cmd = match command::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                conn.out.line(&e.reply());
                if state.count_error(&mut conn.out) {
                    break;
                }
                continue;
            }
        };
        match cmd {
            Command::Quit => {
                conn.out.line("221 2.0.0 Bye");
                break;
            }
            Command::StartTls => {
                if shared.tls.is_none() {
                    conn.out.line("502 5.5.1 STARTTLS is not offered here");
                } else if state.tls {
                    conn.out.line("503 5.5.1 TLS is already active");
                } else {
                    conn.out.line("220 2.0.0 Ready to start TLS");
                    conn.flush().await?;
                    // Anything the client sent after STARTTLS is discarded (RFC 3207 section 4.2).
                    return Ok(Next::StartTls(conn.reader.into_inner()));
                }
            }
            Command::Auth { mechanism, initial } => {
                if !auth::auth(shared, state, &mut conn, &mechanism, initial).await? {
                    break;
                }
            }
            Command::Data => {
                if !data::data(shared, state, &mut conn).await? {
                    break;
                }
            }
            other => {
                // Multi-line replies (EHLO) come joined by CRLF.
                let reply = greeting::reply(shared, state, other);
                for line in reply.split("\r\n") {
                    conn.out.line(line);
                }
                // Refused senders and recipients count as errors: probing the directory or
                // the registered senders ends the session.
                if reply.starts_with('5') && state.count_error(&mut conn.out) {
                    break;
                }
            }
        }
    }
    conn.flush().await?;
    Ok(Next::Close)
}
