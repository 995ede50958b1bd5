//! SMTP command lines (RFC 5321 section 4.1, with the STARTTLS and AUTH extensions): parsing
//! only, no state. The session decides what a command means at its point in the dialogue.

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
    /// `501 5.5.4` (or `555 5.5.4` for parameters): the command's arguments are wrong.
    Syntax(String),
    /// `555 5.5.4`: a MAIL or RCPT parameter the hub does not support.
    Parameter(String),
}

impl CommandError {
    /// The reply line for this error, without the line ending.
    pub fn reply(&self) -> String {
        match self {
            Self::Unrecognised(verb) => format!("500 5.5.1 Command unrecognised: {verb}"),
            Self::Syntax(why) => format!("501 5.5.4 Syntax error: {why}"),
            Self::Parameter(why) => format!("555 5.5.4 {why}"),
        }
    }
}

/// Parses one command line (without its line ending).
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb_upper = verb.to_ascii_uppercase();
    let no_args = |cmd: Command| {
        if rest.trim().is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::Syntax(format!(
                "{verb_upper} takes no arguments"
            )))
        }
    };
    match verb_upper.as_str() {
        "EHLO" | "HELO" => {
            let domain = rest.trim();
            if domain.is_empty() || domain.contains(char::is_whitespace) {
                return Err(CommandError::Syntax(format!(
                    "{verb_upper} needs the client's domain or address literal"
                )));
            }
            Ok(if verb_upper == "EHLO" {
                Command::Ehlo(domain.to_string())
            } else {
                Command::Helo(domain.to_string())
            })
        }
        "MAIL" => {
            let (from, params) = path_after(rest, "FROM:")?;
            let mut size = None;
            for p in params {
                let (key, value) = p.split_once('=').unwrap_or((p, ""));
                match key.to_ascii_uppercase().as_str() {
                    "SIZE" => {
                        size = Some(value.parse().map_err(|_| {
                            CommandError::Syntax(format!("SIZE={value} is not a number"))
                        })?)
                    }
                    "BODY" => match value.to_ascii_uppercase().as_str() {
                        "7BIT" | "8BITMIME" => {}
                        _ => {
                            return Err(CommandError::Parameter(format!(
                                "BODY={value} is not supported (7BIT or 8BITMIME)"
                            )))
                        }
                    },
                    // RFC 4954 section 5: the submitter's identity; the hub uses its own.
                    "AUTH" => {}
                    _ => {
                        return Err(CommandError::Parameter(format!(
                            "MAIL parameter {key} is not supported"
                        )))
                    }
                }
            }
            Ok(Command::Mail { from, size })
        }
        "RCPT" => {
            let (to, mut params) = path_after(rest, "TO:")?;
            if let Some(p) = params.next() {
                return Err(CommandError::Parameter(format!(
                    "RCPT parameter {p} is not supported"
                )));
            }
            if to.is_empty() {
                return Err(CommandError::Syntax("RCPT TO needs an address".into()));
            }
            Ok(Command::Rcpt { to })
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "STARTTLS" => no_args(Command::StartTls),
        // NOOP and HELP may carry an argument, which is ignored.
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "AUTH" => {
            let mut words = rest.split_whitespace();
            let mechanism = words
                .next()
                .ok_or_else(|| CommandError::Syntax("AUTH needs a mechanism".into()))?
                .to_ascii_uppercase();
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(CommandError::Syntax(
                    "AUTH takes a mechanism and at most one initial response".into(),
                ));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        _ => {
            let shown: String = verb.chars().take(16).filter(|c| !c.is_control()).collect();
            Err(CommandError::Unrecognised(shown))
        }
    }
}

/// Splits `FROM:<path> params` (the keyword matched case-insensitively, a space after the
/// colon tolerated) into the address and the parameters.
fn path_after<'a>(
    rest: &'a str,
    keyword: &str,
) -> Result<(String, std::str::SplitWhitespace<'a>), CommandError> {
    let syntax = || CommandError::Syntax(format!("expected {keyword}<address>"));
    let head = rest.get(..keyword.len()).ok_or_else(syntax)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(syntax());
    }
    let rest = rest[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<').ok_or_else(syntax)?;
    let end = rest.find('>').ok_or_else(syntax)?;
    let mut path = &rest[..end];
    // A source route (`@a,@b:user@c`) is obsolete; the mailbox is what follows the colon.
    if path.starts_with('@') {
        path = path.split_once(':').map_or("", |(_, m)| m);
    }
    if !path.is_empty() {
        check_mailbox(path)?;
    }
    Ok((path.to_string(), rest[end + 1..].split_whitespace()))
}

/// `local@domain`, printable, no spaces.
fn check_mailbox(path: &str) -> Result<(), CommandError> {
    let bad = |why: &str| CommandError::Syntax(format!("<{path}> {why}"));
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("contains spaces or control characters"));
    }
    let (local, domain) = path
        .rsplit_once('@')
        .ok_or_else(|| bad("is not an address (local@domain)"))?;
    if local.is_empty() || domain.is_empty() {
        return Err(bad("is not an address (local@domain)"));
    }
    if path.len() > 254 {
        return Err(bad("is longer than 254 characters"));
    }
    Ok(())
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
            parse("RCPT TO:<@relay.example:A81001@hub.example>"),
            Ok(Command::Rcpt {
                to: "A81001@hub.example".into()
            })
        );
        assert_eq!(parse("DATA"), Ok(Command::Data));
        assert_eq!(parse("noop anything"), Ok(Command::Noop));
        assert_eq!(
            parse("AUTH PLAIN AHVzZXIAcGFzcw=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AHVzZXIAcGFzcw==".into())
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
        assert!(parse("MAIL FROM:a@b")
            .unwrap_err()
            .reply()
            .contains("expected FROM:<address>"));
        assert!(parse("MAIL FROM:<a@b> SMTPUTF8")
            .unwrap_err()
            .reply()
            .starts_with("555 5.5.4 MAIL parameter SMTPUTF8"));
        assert!(parse("MAIL FROM:<a@b> SIZE=x")
            .unwrap_err()
            .reply()
            .contains("SIZE=x is not a number"));
        assert!(parse("RCPT TO:<>").is_err());
        assert!(parse("RCPT TO:<nodomain>").is_err());
        assert!(parse("DATA now").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(line in "\\PC{0,80}") {
            let _ = parse(&line);
        }

        #[test]
        fn addresses_round_trip(
            local in "[A-Za-z0-9._+-]{1,20}",
            domain in "[a-z0-9-]{1,20}(\\.[a-z]{2,5}){1,2}",
            size in proptest::option::of(0u64..100_000_000),
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
