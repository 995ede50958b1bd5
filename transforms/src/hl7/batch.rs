//! HL7 v2 batches: `[FHS [BHS] ... MSH ... [BTS] [FTS]]`. A batch is split into its messages
//! (each from its MSH up to the next MSH or batch segment), and the acknowledgements of its
//! messages are sent back as a batch of their own.

/// One unit of input: a lone message, or the messages of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The FHS segment, as sent (`None` for a lone message or a batch without one).
    pub file_header: Option<String>,
    /// The BHS segment, as sent.
    pub batch_header: Option<String>,
    /// Each message, its segments ended by CR.
    pub messages: Vec<String>,
    /// Message count the BTS says (BTS-1), when it says one.
    pub declared_count: Option<usize>,
}

impl Batch {
    /// True when the input started with FHS or BHS.
    pub fn is_batch(&self) -> bool {
        self.file_header.is_some() || self.batch_header.is_some()
    }
}

/// Splits `text` into its messages. Text that does not start with FHS or BHS is one message
/// (segment ends made CR), or several when more than one MSH follows another; segments
/// before the first MSH are kept with the first message, so the message reader reports them.
pub fn split(text: &str) -> Batch {
    let segments: Vec<&str> = text
        .split(['\r', '\n'])
        .map(|s| s.trim_start_matches('\u{feff}'))
        .filter(|s| !s.trim().is_empty())
        .collect();
    let name = |s: &str| s.get(..3).unwrap_or("").to_string();
    let first = segments.first().map(|s| name(s)).unwrap_or_default();
    if first != "FHS" && first != "BHS" {
        // Messages one after another with no batch header: each from its MSH.
        let mut messages: Vec<String> = Vec::new();
        for s in &segments {
            match messages.last_mut() {
                Some(m) if name(s) != "MSH" => {
                    m.push_str(s);
                    m.push('\r');
                }
                _ => messages.push(format!("{s}\r")),
            }
        }
        if messages.is_empty() {
            messages.push(String::new());
        }
        return Batch {
            file_header: None,
            batch_header: None,
            messages,
            declared_count: None,
        };
    }
    let mut batch = Batch {
        file_header: None,
        batch_header: None,
        messages: Vec::new(),
        declared_count: None,
    };
    let mut current: Option<String> = None;
    for s in segments {
        match name(s).as_str() {
            "FHS" if batch.file_header.is_none() && current.is_none() => {
                batch.file_header = Some(s.to_string())
            }
            "BHS" if batch.batch_header.is_none() && current.is_none() => {
                batch.batch_header = Some(s.to_string())
            }
            "BTS" | "FTS" => {
                if let Some(m) = current.take() {
                    batch.messages.push(m);
                }
                if name(s) == "BTS" {
                    let sep = s.chars().nth(3).unwrap_or('|');
                    batch.declared_count = s
                        .split(sep)
                        .nth(1)
                        .and_then(|n| n.trim().parse::<usize>().ok());
                }
            }
            "MSH" => {
                if let Some(m) = current.take() {
                    batch.messages.push(m);
                }
                current = Some(format!("{s}\r"));
            }
            _ => {
                let m = current.get_or_insert_with(String::new);
                m.push_str(s);
                m.push('\r');
            }
        }
    }
    if let Some(m) = current.take() {
        batch.messages.push(m);
    }
    batch
}

/// Wraps acknowledgements (each an ER7 message, segments ended by CR) in a batch answering
/// `request`: FHS (when the request had one), BHS, the acknowledgements, BTS with their count,
/// FTS. `application`, `facility` and `timestamp` head the answer; BHS-11 (and FHS-11) name
/// the request's BHS-10 (FHS-10) control id.
pub fn wrap_acks(
    request: &Batch,
    acks: &[String],
    application: &str,
    facility: &str,
    timestamp: &str,
) -> String {
    let control = |header: &Option<String>| {
        header
            .as_deref()
            .and_then(|h| {
                let sep = h.chars().nth(3)?;
                h.split(sep).nth(9).map(str::to_string)
            })
            .unwrap_or_default()
    };
    // Where the request named a sender (FHS/BHS-3, -4), the answer is addressed to it.
    let party = |header: &Option<String>| {
        header
            .as_deref()
            .and_then(|h| {
                let sep = h.chars().nth(3)?;
                let f: Vec<&str> = h.split(sep).collect();
                Some((
                    f.get(2).copied().unwrap_or("").to_string(),
                    f.get(3).copied().unwrap_or("").to_string(),
                ))
            })
            .unwrap_or_default()
    };
    let mut out = String::new();
    if request.file_header.is_some() {
        let (app, fac) = party(&request.file_header);
        out.push_str(&format!(
            "FHS|^~\\&|{application}|{facility}|{app}|{fac}|{timestamp}||||{}\r",
            control(&request.file_header)
        ));
    }
    let (app, fac) = party(&request.batch_header);
    out.push_str(&format!(
        "BHS|^~\\&|{application}|{facility}|{app}|{fac}|{timestamp}||||{}\r",
        control(&request.batch_header)
    ));
    for a in acks {
        out.push_str(a);
        if !a.ends_with('\r') {
            out.push('\r');
        }
    }
    out.push_str(&format!("BTS|{}\r", acks.len()));
    if request.file_header.is_some() {
        out.push_str("FTS|1\r");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_message_is_one_message() {
        let b = split("MSH|^~\\&|A\nPID|1\r\n");
        assert!(!b.is_batch());
        assert_eq!(b.messages, vec!["MSH|^~\\&|A\rPID|1\r".to_string()]);
    }

    #[test]
    fn messages_one_after_another_are_each_a_message() {
        let b = split("MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\rPID|2\r");
        assert!(!b.is_batch());
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.messages[1], "MSH|^~\\&|B\rPID|2\r");
        assert_eq!(split("").messages, vec![String::new()]);
    }

    #[test]
    fn a_batch_is_split_at_each_msh() {
        let b = split(
            "FHS|^~\\&|LAB|RX1||||||F1\rBHS|^~\\&|LAB|RX1||||||B1\r\
             MSH|^~\\&|LAB|RX1\rPID|1\rMSH|^~\\&|LAB|RX1\rPID|2\rBTS|2\rFTS|1\r",
        );
        assert!(b.is_batch());
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.messages[1], "MSH|^~\\&|LAB|RX1\rPID|2\r");
        assert_eq!(b.declared_count, Some(2));
        let acks = wrap_acks(&b, &["MSH|A\rMSA|AA|1".into()], "HUB", "HUBF", "20260101");
        assert!(acks.starts_with("FHS|^~\\&|HUB|HUBF|LAB|RX1|20260101||||F1\rBHS|"));
        assert!(
            acks.contains("||||B1\rMSH|A\rMSA|AA|1\rBTS|1\rFTS|1\r"),
            "{acks}"
        );
    }

    proptest::proptest! {
        #[test]
        fn splitting_never_panics(text in "(FHS|BHS|MSH|BTS|FTS|PID|\\PC){0,40}") {
            let b = split(&text);
            let _ = wrap_acks(&b, &b.messages, "A", "F", "T");
        }
    }

    #[test]
    fn an_empty_batch_has_no_messages() {
        let b = split("BHS|^~\\&\rBTS|0\r");
        assert!(b.is_batch());
        assert!(b.messages.is_empty());
    }
}
