//! AUTH PLAIN and LOGIN, offered only after STARTTLS.

use super::*;

/// AUTH PLAIN or LOGIN. Returns false when the connection should close.
pub(super) async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
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
                .is_ok_and(|stored| crate::password::verify(stored, &password)),
            None => {
                crate::password::verify_nobody(&password);
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
