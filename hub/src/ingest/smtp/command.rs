//! SMTP command lines (RFC 5321 section 4.1, with the STARTTLS and AUTH extensions): parsing
//! only, no state. The session decides what a command means at its point in the dialogue.
//!
//! The grammar is Stalwart's `smtp-proto` parser; this module adds what that parser leaves to
//! its caller: a line must end in CRLF and hold no other CR or LF (a bare line ending is how
//! SMTP smuggling gets a second message past a relay, so the session closes on one), and the
//! hub's own choice of which extensions and parameters it takes, with the reply each refusal
//! earns.

use smtp_proto::{Error as ParseError, Request};

/// One command line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    /// `MAIL FROM:<path> [params]`; the path is empty for the null sender `<>`.
    Mail {
        from: String,
        size: Option<u64>,
    },
    Rcpt {
        to: String,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

/// Why a line is not a command the hub accepts, with the reply it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `500 5.5.1`: not a command at all.
    Unrecognised(String),
    /// `502 5.5.1`: a command the hub does not offer (BDAT, ETRN, ...).
    NotOffered(String),
    /// `501 5.5.4`: the command's arguments are wrong.
    Syntax(String),
    /// `555 5.5.4`: a MAIL or RCPT parameter the hub does not support.
    Parameter(String),
    /// `504 5.5.4`: an AUTH mechanism the hub does not offer.
    Mechanism(String),
}

impl CommandError {
    /// The reply line for this error, without the line ending.
    pub fn reply(&self) -> String {
        match self {
            Self::Unrecognised(verb) => format!("500 5.5.1 Command unrecognised: {verb}"),
            Self::NotOffered(verb) => format!("502 5.5.1 {verb} is not supported"),
            Self::Syntax(why) => format!("501 5.5.4 Syntax error: {why}"),
            Self::Parameter(why) => format!("555 5.5.4 {why}"),
            Self::Mechanism(m) => {
                format!("504 5.5.4 Authentication mechanism {m} is not supported (PLAIN, LOGIN)")
            }
        }
    }
}

/// A line ending other than CRLF, which ends the session (RFC 5321 section 2.3.8; Postfix's
/// `smtpd_forbid_bare_newline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewline {
    /// An LF not preceded by CR.
    Lf,
    /// A CR not followed by LF.
    Cr,
}

impl BareNewline {
    /// The reply sent before the connection is closed.
    pub fn reply(self, during: &str) -> String {
        let what = match self {
            Self::Lf => "bare <LF>",
            Self::Cr => "bare <CR>",
        };
        format!(
            "521 5.5.2 Error: {what} received in {during}; lines must end with <CRLF>. \
             Nothing was stored; closing the connection"
        )
    }
}

/// Checks one line as read up to and including its LF: it must end in CRLF and carry no
/// other CR.
pub fn check_line_ending(line: &[u8]) -> Result<(), BareNewline> {
    let Some(body) = line.strip_suffix(b"\n") else {
        return Ok(());
    };
    let Some(body) = body.strip_suffix(b"\r") else {
        return Err(BareNewline::Lf);
    };
    if body.contains(&b'\r') {
        return Err(BareNewline::Cr);
    }
    Ok(())
}

/// Parses one command line (without its line ending).
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let verb: String = line
        .split(' ')
        .next()
        .unwrap_or("")
        .chars()
        .take(16)
        .filter(|c| !c.is_control())
        .collect();
    let verb_upper = verb.to_ascii_uppercase();
    // The hub answers these itself whatever follows them.
    match verb_upper.as_str() {
        "VRFY" => return Ok(Command::Vrfy),
        "EXPN" => return Ok(Command::Expn),
        _ => {}
    }
    let framed = format!("{line}\r\n");
    let request = Request::parse(&mut framed.as_bytes().iter()).map_err(|e| match e {
        ParseError::UnknownCommand => CommandError::Unrecognised(verb.clone()),
        ParseError::SyntaxError { syntax } => {
            if verb_upper == "AUTH" {
                match line.split_whitespace().nth(1) {
                    Some(m) => CommandError::Mechanism(m.chars().take(32).collect()),
                    None => CommandError::Syntax("AUTH needs a mechanism".into()),
                }
            } else {
                CommandError::Syntax(format!("expected {syntax}"))
            }
        }
        ParseError::InvalidSenderAddress => {
            CommandError::Syntax("the sender is not an address (<local@domain> or <>)".into())
        }
        ParseError::InvalidRecipientAddress => {
            CommandError::Syntax("the recipient is not an address (<local@domain>)".into())
        }
        ParseError::InvalidParameter { param } => {
            CommandError::Syntax(format!("the value of {param} is not valid"))
        }
        ParseError::UnsupportedParameter { param } => {
            let command = if verb_upper == "RCPT" { "RCPT" } else { "MAIL" };
            CommandError::Parameter(format!("{command} parameter {param} is not supported"))
        }
        ParseError::NeedsMoreData { .. }
        | ParseError::ResponseTooLong
        | ParseError::InvalidResponse { .. } => CommandError::Syntax("incomplete command".into()),
    })?;
    match request {
        Request::Ehlo { host } => Ok(Command::Ehlo(host.into_owned())),
        Request::Helo { host } => Ok(Command::Helo(host.into_owned())),
        Request::Mail { from } => {
            use smtp_proto::{MAIL_BODY_7BIT, MAIL_BODY_8BITMIME};
            let unsupported = [
                (smtp_proto::MAIL_SMTPUTF8, "SMTPUTF8"),
                (smtp_proto::MAIL_BODY_BINARYMIME, "BODY=BINARYMIME"),
                (smtp_proto::MAIL_REQUIRETLS, "REQUIRETLS"),
                (smtp_proto::MAIL_CONPERM, "CONPERM"),
                (smtp_proto::MAIL_RET_FULL | smtp_proto::MAIL_RET_HDRS, "RET"),
                (
                    smtp_proto::MAIL_BY_NOTIFY
                        | smtp_proto::MAIL_BY_RETURN
                        | smtp_proto::MAIL_BY_TRACE,
                    "BY",
                ),
            ];
            let mut refused: Vec<&str> = unsupported
                .iter()
                .filter(|(bit, _)| from.flags & bit != 0)
                .map(|(_, name)| *name)
                .collect();
            for (set, name) in [
                (from.env_id.is_some(), "ENVID"),
                (from.trans_id.is_some(), "TRANSID"),
                (from.solicit.is_some(), "SOLICIT"),
                (from.mtrk.is_some(), "MTRK"),
                (
                    from.hold_for != 0 || from.hold_until != 0,
                    "HOLDFOR/HOLDUNTIL",
                ),
                (from.mt_priority != 0, "MT-PRIORITY"),
            ] {
                if set {
                    refused.push(name);
                }
            }
            if let Some(first) = refused.first() {
                return Err(CommandError::Parameter(format!(
                    "MAIL parameter {first} is not supported (SIZE, BODY=7BIT or BODY=8BITMIME)"
                )));
            }
            debug_assert!(from.flags & !(MAIL_BODY_7BIT | MAIL_BODY_8BITMIME) == 0);
            Ok(Command::Mail {
                from: from.address.into_owned(),
                size: (from.size > 0).then_some(from.size as u64),
            })
        }
        Request::Rcpt { to } => {
            if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
                return Err(CommandError::Parameter(
                    "RCPT parameters are not supported".into(),
                ));
            }
            if to.address.is_empty() {
                return Err(CommandError::Syntax("RCPT TO needs an address".into()));
            }
            Ok(Command::Rcpt {
                to: to.address.into_owned(),
            })
        }
        Request::Data => no_args(line, Command::Data),
        Request::Rset => no_args(line, Command::Rset),
        Request::Quit => no_args(line, Command::Quit),
        Request::StartTls => no_args(line, Command::StartTls),
        Request::Noop { .. } => Ok(Command::Noop),
        Request::Help { .. } => Ok(Command::Help),
        Request::Vrfy { .. } => Ok(Command::Vrfy),
        Request::Expn { .. } => Ok(Command::Expn),
        Request::Auth {
            mechanism,
            initial_response,
        } => {
            let name = match mechanism {
                smtp_proto::AUTH_PLAIN => "PLAIN",
                smtp_proto::AUTH_LOGIN => "LOGIN",
                _ => {
                    let shown = line.split_whitespace().nth(1).unwrap_or("");
                    return Err(CommandError::Mechanism(shown.chars().take(32).collect()));
                }
            };
            let mut words = line.split_whitespace().skip(2);
            if words.next().is_some() && words.next().is_some() {
                return Err(CommandError::Syntax(
                    "AUTH takes a mechanism and at most one initial response".into(),
                ));
            }
            Ok(Command::Auth {
                mechanism: name.to_string(),
                initial: (!initial_response.is_empty()).then(|| initial_response.into_owned()),
            })
        }
        other => Err(CommandError::NotOffered(other.name().to_string())),
    }
}

/// DATA, RSET, QUIT and STARTTLS take no arguments (the parser skips whatever follows them).
fn no_args(line: &str, cmd: Command) -> Result<Command, CommandError> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    if words.next().is_some() {
        return Err(CommandError::Syntax(format!("{verb} takes no arguments")));
    }
    Ok(cmd)
}

/// Splits an address into its local part and lower-case domain.
pub fn split_address(address: &str) -> Option<(&str, String)> {
    let (local, domain) = address.rsplit_once('@')?;
    Some((local, domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse("EHLO trust.nhs.uk"),
            Ok(Command::Ehlo("trust.nhs.uk".into()))
        );
        assert_eq!(
            parse("helo [10.0.0.1]"),
            Ok(Command::Helo("[10.0.0.1]".into()))
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.nhs.uk> SIZE=1000 BODY=8BITMIME"),
            Ok(Command::Mail {
                from: "a@b.nhs.uk".into(),
                size: Some(1000)
            })
        );
        assert_eq!(
            parse("mail from: <>"),
            Ok(Command::Mail {
                from: String::new(),
                size: None
            })
        );
        assert_eq!(
            parse("MAIL FROM:<a@b.nhs.uk> AUTH=<>"),
            Ok(Command::Mail {
                from: "a@b.nhs.uk".into(),
                size: None
            })
        );
        assert_eq!(
            parse("RCPT TO:<@relay.example:A81001@hub.example>"),
            Ok(Command::Rcpt {
                to: "A81001@hub.example".into()
            })
        );
        assert_eq!(parse("DATA"), Ok(Command::Data));
        assert_eq!(parse("noop anything"), Ok(Command::Noop));
        assert_eq!(parse("VRFY"), Ok(Command::Vrfy));
        assert_eq!(
            parse("AUTH PLAIN AHVzZXIAcGFzcw=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AHVzZXIAcGFzcw==".into())
            })
        );
        assert_eq!(
            parse("auth login"),
            Ok(Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            })
        );
        assert_eq!(parse("STARTTLS"), Ok(Command::StartTls));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            parse("FOO bar").unwrap_err().reply(),
            "500 5.5.1 Command unrecognised: FOO"
        );
        assert!(parse("EHLO").unwrap_err().reply().starts_with("501 5.5.4"));
        let r = parse("MAIL FROM:a@b").unwrap_err().reply();
        assert!(
            r.starts_with("501 5.5.4") && r.contains("MAIL FROM:<"),
            "{r}"
        );
        assert!(parse("MAIL FROM:<a@b> SMTPUTF8")
            .unwrap_err()
            .reply()
            .starts_with("555 5.5.4 MAIL parameter SMTPUTF8"));
        assert!(parse("MAIL FROM:<a@b> XFOO=1")
            .unwrap_err()
            .reply()
            .starts_with("555 5.5.4 MAIL parameter XFOO"));
        assert!(parse("MAIL FROM:<a@b> SIZE=x")
            .unwrap_err()
            .reply()
            .contains("SIZE is not valid"));
        assert!(parse("RCPT TO:<>").is_err());
        assert!(parse("RCPT TO:<nodomain>").is_err());
        assert!(parse("RCPT TO:<a@b> NOTIFY=NEVER")
            .unwrap_err()
            .reply()
            .starts_with("555"));
        assert!(parse("DATA now").is_err());
        assert_eq!(
            parse("AUTH CRAM-MD5").unwrap_err().reply(),
            "504 5.5.4 Authentication mechanism CRAM-MD5 is not supported (PLAIN, LOGIN)"
        );
        assert_eq!(
            parse("AUTH XYZZY").unwrap_err().reply(),
            "504 5.5.4 Authentication mechanism XYZZY is not supported (PLAIN, LOGIN)"
        );
        assert!(parse("BDAT 100 LAST")
            .unwrap_err()
            .reply()
            .starts_with("502 5.5.1 BDAT"));
    }

    #[test]
    fn only_crlf_ends_a_line() {
        assert_eq!(check_line_ending(b"EHLO a\r\n"), Ok(()));
        assert_eq!(check_line_ending(b"EHLO a\n"), Err(BareNewline::Lf));
        assert_eq!(check_line_ending(b"EHLO\ra\r\n"), Err(BareNewline::Cr));
        assert_eq!(check_line_ending(b"\n"), Err(BareNewline::Lf));
        assert!(BareNewline::Lf.reply("a command").starts_with("521 5.5.2"));
    }

    proptest! {
        #[test]
        fn never_panics(line in "\\PC{0,80}") {
            let _ = parse(&line);
        }

        #[test]
        fn addresses_round_trip(
            local in "[A-Za-z0-9_+-]{1,10}(\\.[A-Za-z0-9_+-]{1,10}){0,2}",
            domain in "[a-z0-9-]{1,20}(\\.[a-z]{2,5}){1,2}",
            size in proptest::option::of(1u64..100_000_000),
        ) {
            let address = format!("{local}@{domain}");
            let line = match size {
                Some(n) => format!("MAIL FROM:<{address}> SIZE={n}"),
                None => format!("MAIL FROM:<{address}>"),
            };
            prop_assert_eq!(parse(&line), Ok(Command::Mail { from: address.clone(), size }));
            prop_assert_eq!(
                parse(&format!("rcpt to:<{address}>")),
                Ok(Command::Rcpt { to: address })
            );
        }
    }
}
