//! Greeting and session-level commands: EHLO (with the extensions offered for the session's
//! stage), HELO, RSET, NOOP, HELP, VRFY, EXPN; MAIL and RCPT are handed to the envelope.

use super::*;

/// EHLO, HELO, MAIL, RCPT, RSET, NOOP, HELP, VRFY, EXPN: one reply each.
pub(super) fn reply(shared: &Shared, state: &mut State, cmd: Command) -> String {
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
        Command::Mail { from, size } => super::envelope::mail(shared, state, from, size),
        Command::Rcpt { to } => super::envelope::rcpt(shared, state, &to),
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
