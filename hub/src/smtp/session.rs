//! One SMTP session, phase by phase: greeting, then commands (EHLO, STARTTLS and AUTH set the
//! stage; MAIL and RCPT build the envelope, each checked as it arrives; DATA reads the message
//! and answers only once the document is durable, or says precisely why it was refused).

use super::command::{self, Command};
use super::Shared;
use crate::hub::SubmitError;
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
                if !auth(shared, state, &mut conn, &mechanism, initial).await? {
                    break;
                }
            }
            Command::Data => {
                if !data(shared, state, &mut conn).await? {
                    break;
                }
            }
            other => {
                // Multi-line replies (EHLO) come joined by CRLF.
                let reply = envelope_step(shared, state, other);
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

/// EHLO, HELO, MAIL, RCPT, RSET, NOOP, HELP, VRFY, EXPN: one reply each.
fn envelope_step(shared: &Shared, state: &mut State, cmd: Command) -> String {
    let cfg = &shared.hub.config.smtp;
    match cmd {
        Command::Ehlo(client) => {
            state.greeted = true;
            state.envelope = None;
            let mut lines = vec![
                format!("{} greets {client}", cfg.domain),
                format!("SIZE {}", cfg.max_message_bytes),
                "8BITMIME".to_string(),
                "PIPELINING".to_string(),
                "ENHANCEDSTATUSCODES".to_string(),
            ];
            if shared.tls.is_some() && !state.tls {
                lines.push("STARTTLS".into());
            }
            if state.tls && !cfg.users.is_empty() {
                lines.push("AUTH PLAIN LOGIN".into());
            }
            lines.push("HELP".into());
            let last = lines.len() - 1;
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                .collect::<Vec<_>>()
                .join("\r\n")
        }
        Command::Helo(client) => {
            state.greeted = true;
            state.envelope = None;
            format!("250 {} greets {client}", cfg.domain)
        }
        Command::Mail { from, size } => mail(shared, state, from, size),
        Command::Rcpt { to } => rcpt(shared, state, &to),
        Command::Rset => {
            state.envelope = None;
            "250 2.0.0 OK".into()
        }
        Command::Noop => "250 2.0.0 OK".into(),
        Command::Help => format!(
            "214 2.0.0 Mail one document to <ODS code>@{}; see the edthub README for metadata",
            cfg.domain
        ),
        Command::Vrfy => "502 5.5.1 VRFY is not supported".into(),
        Command::Expn => "502 5.5.1 EXPN is not supported".into(),
        Command::Quit | Command::Data | Command::StartTls | Command::Auth { .. } => {
            unreachable!("handled by the session loop")
        }
    }
}

fn mail(shared: &Shared, state: &mut State, from: String, size: Option<u64>) -> String {
    let cfg = &shared.hub.config.smtp;
    if !state.greeted {
        return "503 5.5.1 Send EHLO or HELO first".into();
    }
    if state.envelope.is_some() {
        return "503 5.5.1 A mail transaction is already open (RSET to start again)".into();
    }
    if cfg.require_tls && !state.tls {
        return "530 5.7.0 Must issue a STARTTLS command first".into();
    }
    if cfg.require_auth && state.user.is_none() {
        return "530 5.7.0 Authentication required".into();
    }
    if let Some(n) = size {
        if n > cfg.max_message_bytes as u64 {
            return format!(
                "552 5.3.4 Message size {n} exceeds the limit of {} bytes",
                cfg.max_message_bytes
            );
        }
    }
    let sender_ods = match &state.user {
        Some((_, ods)) => ods.clone(),
        None => match cfg
            .senders
            .iter()
            .find(|s| !from.is_empty() && s.address.eq_ignore_ascii_case(&from))
        {
            Some(s) => s.sender_ods.clone(),
            None => {
                return format!(
                    "550 5.7.1 Sender <{from}> is not registered with this hub: authenticate \
                     (AUTH after STARTTLS) or have the address registered"
                )
            }
        },
    };
    let loaded = shared.hub.directory.get();
    if loaded.directory.sender(&sender_ods).is_none() {
        return format!("550 5.7.1 {sender_ods} is not a registered sender in the directory");
    }
    let reply = format!("250 2.1.0 Sender <{from}> OK, submitting as {sender_ods}");
    state.envelope = Some(Envelope {
        from,
        sender_ods,
        recipients: Vec::new(),
    });
    reply
}

fn rcpt(shared: &Shared, state: &mut State, to: &str) -> String {
    let cfg = &shared.hub.config.smtp;
    let Some(envelope) = state.envelope.as_mut() else {
        return "503 5.5.1 Need MAIL before RCPT".into();
    };
    let Some((local, domain)) = command::split_address(to) else {
        return format!("501 5.1.3 <{to}> is not an address");
    };
    if !domain.eq_ignore_ascii_case(&cfg.domain) {
        return format!(
            "550 5.7.1 Relaying denied: this hub accepts mail only for <ODS code>@{}",
            cfg.domain
        );
    }
    let code = match OdsCode::parse(local) {
        Ok(c) => c.to_string(),
        Err(e) => return format!("550 5.1.1 <{to}>: {local} is not an ODS code ({e})"),
    };
    // V81999 (the patient's GP is not known) is taken as over gRPC: the document is stored
    // and held `unroutable` for tracing (or sent to the directory's unknown-GP endpoint), and
    // the notice to the sender says so.
    if code == edt_transforms::ods::UNKNOWN_GP {
        if !envelope.recipients.contains(&code) {
            if envelope.recipients.len() >= cfg.max_recipients {
                return format!(
                    "452 4.5.3 Too many recipients (at most {} per message)",
                    cfg.max_recipients
                );
            }
            envelope.recipients.push(code.clone());
        }
        return format!(
            "250 2.1.5 Recipient {code} (GP not known) OK: the hub's unknown-GP rule applies"
        );
    }
    let loaded = shared.hub.directory.get();
    let Some(org) = loaded.directory.organisation(&code) else {
        return format!("550 5.1.1 <{to}>: {code} is not an organisation this hub knows");
    };
    if org.status != OrgStatus::Active && loaded.directory.successor(&code).is_none() {
        let since = org
            .close_date
            .map(|d| format!(" since {}", edt_routers::ods::show_day(d)))
            .unwrap_or_default();
        return format!(
            "550 5.1.1 <{to}>: {code} ({}) is {}{since} and has no successor to send to",
            org.name,
            org.status.as_str()
        );
    }
    if !envelope.recipients.contains(&code) {
        if envelope.recipients.len() >= cfg.max_recipients {
            return format!(
                "452 4.5.3 Too many recipients (at most {} per message)",
                cfg.max_recipients
            );
        }
        envelope.recipients.push(code.clone());
    }
    format!("250 2.1.5 Recipient {code} ({}) OK", org.name)
}

/// AUTH PLAIN or LOGIN. Returns false when the connection should close.
async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    state: &mut State,
    conn: &mut Conn<S>,
    mechanism: &str,
    initial: Option<String>,
) -> std::io::Result<bool> {
    let cfg = &shared.hub.config.smtp;
    if !state.tls {
        conn.out.line(
            "538 5.7.11 Encryption required for requested authentication mechanism (use STARTTLS)",
        );
        return Ok(true);
    }
    if state.user.is_some() {
        conn.out.line("503 5.5.1 Already authenticated");
        return Ok(true);
    }
    if state.envelope.is_some() {
        conn.out
            .line("503 5.5.1 AUTH is not allowed during a mail transaction");
        return Ok(true);
    }
    if cfg.users.is_empty() {
        conn.out.line("502 5.5.1 AUTH is not offered here");
        return Ok(true);
    }
    let timeout = Duration::from_secs(cfg.command_timeout_secs);
    let deadline = state.deadline;
    let decode = |s: &str| -> Option<String> {
        if s == "=" {
            return Some(String::new());
        }
        edt_transforms::itk3::base64_decode(s)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let responses: Vec<String> = match mechanism {
        "PLAIN" => {
            let r = match initial {
                Some(r) => r,
                None => match ask(conn, "", timeout, deadline).await? {
                    Some(r) => r,
                    None => return Ok(false),
                },
            };
            vec![r]
        }
        "LOGIN" => {
            let user = match initial {
                Some(r) => r,
                // "Username:" and "Password:", base64-encoded, as clients expect.
                None => match ask(conn, "VXNlcm5hbWU6", timeout, deadline).await? {
                    Some(r) => r,
                    None => return Ok(false),
                },
            };
            if user == "*" {
                vec![user]
            } else {
                match ask(conn, "UGFzc3dvcmQ6", timeout, deadline).await? {
                    Some(p) => vec![user, p],
                    None => return Ok(false),
                }
            }
        }
        _ => {
            conn.out.line(&format!(
                "504 5.5.4 Authentication mechanism {mechanism} is not supported (PLAIN, LOGIN)"
            ));
            return Ok(true);
        }
    };
    if responses.iter().any(|r| r == "*") {
        conn.out.line("501 5.7.0 Authentication cancelled");
        return Ok(true);
    }
    let decoded: Option<Vec<String>> = responses.iter().map(|r| decode(r)).collect();
    let Some(decoded) = decoded else {
        conn.out
            .line("501 5.5.2 Cannot decode the response (base64 expected)");
        return Ok(true);
    };
    let (username, password) = if mechanism == "PLAIN" {
        // authorization id NUL authentication id NUL password
        let mut fields = decoded[0].split('\0');
        match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(_), Some(u), Some(p), None) => (u.to_string(), p.to_string()),
            _ => {
                conn.out
                    .line("501 5.5.2 PLAIN response is not authzid NUL user NUL password");
                return Ok(true);
            }
        }
    } else {
        (decoded[0].clone(), decoded[1].clone())
    };
    // Argon2 takes tens of milliseconds of CPU: off the runtime's worker threads.
    let user = cfg.users.iter().position(|u| u.username == username);
    let hub = shared.hub.clone();
    let matched = tokio::task::spawn_blocking(move || {
        let users = &hub.config.smtp.users;
        match user.map(|i| &users[i]) {
            Some(u) => u
                .password()
                .is_ok_and(|stored| super::password::verify(stored, &password)),
            None => {
                super::password::verify_nobody(&password);
                false
            }
        }
    })
    .await
    .unwrap_or(false);
    let found = user.filter(|_| matched).map(|i| &cfg.users[i]);
    match found {
        Some(u) => {
            tracing::info!(peer = %state.peer, user = %u.username, "smtp client authenticated");
            state.user = Some((u.username.clone(), u.sender_ods.clone()));
            conn.out.line("235 2.7.0 Authentication successful");
            Ok(true)
        }
        None => {
            state.auth_failures += 1;
            tracing::warn!(peer = %state.peer, "smtp authentication failed");
            metrics::counter!("edthub_smtp_auth_failures_total").increment(1);
            conn.out
                .line("535 5.7.8 Authentication credentials invalid");
            if state.auth_failures >= AUTH_ATTEMPTS {
                conn.out
                    .line("421 4.7.0 Too many failed authentications: closing the connection");
                return Ok(false);
            }
            Ok(true)
        }
    }
}

/// One AUTH response from the client, after a `334` challenge. `None`: the client went away
/// or timed out.
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    challenge: &str,
    timeout: Duration,
    deadline: Instant,
) -> std::io::Result<Option<String>> {
    conn.out.line(&format!("334 {challenge}"));
    match conn
        .next_line(timeout, COMMAND_LINE_LIMIT, deadline)
        .await?
    {
        Some(Line::Text(l)) => match command::check_line_ending(&l) {
            Ok(()) => Ok(Some(String::from_utf8_lossy(trim_eol(&l)).into_owned())),
            Err(bare) => {
                conn.out.line(&bare.reply("an AUTH response"));
                Ok(None)
            }
        },
        _ => Ok(None),
    }
}

/// DATA: reads the message, turns it into a submission and replies once it is durable (or
/// refused). Returns false when the connection should close.
async fn data<S: AsyncRead + AsyncWrite + Unpin>(
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
    let req =
        match super::mail::request_from_mail(message, &envelope.sender_ods, &envelope.recipients) {
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
        Ok(sub) => hub.submit(sub, &actor).await,
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
        Err(SubmitError::Store(e)) => {
            count("unavailable");
            tracing::error!(error = %e, "smtp submission could not be stored");
            "451 4.3.0 The document could not be stored durably; try again later".into()
        }
    }
}
