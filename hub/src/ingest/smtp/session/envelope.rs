//! The envelope: MAIL FROM (a registered sender, or the authenticated user's ODS code) and
//! RCPT TO (`<ODS code>@<domain>`, checked against the directory as it arrives).

use super::*;

pub(super) fn mail(shared: &Shared, state: &mut State, from: String, size: Option<u64>) -> String {
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

pub(super) fn rcpt(shared: &Shared, state: &mut State, to: &str) -> String {
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
        if let Err(full) = add_recipient(envelope, &code, cfg.max_recipients) {
            return full;
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
    if let Err(full) = add_recipient(envelope, &code, cfg.max_recipients) {
        return full;
    }
    format!("250 2.1.5 Recipient {code} ({}) OK", org.name)
}

/// Adds `code` to the envelope's recipients (once); the 452 reply if the envelope is full.
fn add_recipient(envelope: &mut Envelope, code: &str, max: usize) -> Result<(), String> {
    if envelope.recipients.iter().any(|r| r == code) {
        return Ok(());
    }
    if envelope.recipients.len() >= max {
        return Err(format!(
            "452 4.5.3 Too many recipients (at most {max} per message)"
        ));
    }
    envelope.recipients.push(code.to_string());
    Ok(())
}
