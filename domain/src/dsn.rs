//! What comes back to a VERP address, read by structure rather than by position:
//! RFC 3464 delivery status notifications (per recipient, wherever the report part sits),
//! RFC 5965 feedback reports (complaints), the plain-text bounces some large providers still
//! send, and automatic replies (RFC 3834).

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// What kind of report a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Delivery failed for at least one recipient.
    Failure,
    /// Delivery is delayed and still being retried: nothing failed yet.
    Delay,
    /// An abuse report: a recipient marked the message as spam.
    Complaint,
    /// A vacation responder or another automatic reply: mail for a person, not a report.
    AutoReply,
    /// Neither: a success notice, or mail written by hand to the bounce address.
    Other,
}

/// How a failure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Permanent (5.x.x): the message was refused.
    Hard,
    /// Temporary (4.x.x): the sender may succeed later.
    Soft,
    Complaint,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
            Self::Complaint => "complaint",
        }
    }
}

/// One recipient's fields of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientStatus {
    /// `Final-Recipient` (or `Original-Recipient`, or the address a plain-text bounce names).
    pub recipient: Option<String>,
    pub action: Option<String>,
    /// The enhanced status code (`5.1.1`), the most specific one the report gives.
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
}

impl RecipientStatus {
    fn failed(&self) -> bool {
        match self
            .action
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("failed") => true,
            Some("delayed" | "delivered" | "relayed" | "expanded") => false,
            _ => self.status.as_deref().is_some_and(|s| s.starts_with('5')),
        }
    }

    /// Hard or soft, by the status class (a failure without a status is hard).
    pub fn class(&self) -> Class {
        match self.status.as_deref() {
            Some(s) if s.starts_with('4') && !self.failed() => Class::Soft,
            Some(s) if s.starts_with('4') => Class::Soft,
            _ => Class::Hard,
        }
    }

    /// Whether it says the mailbox is gone or full (5.1.x, 5.2.x): the only refusals that
    /// count toward disabling a mailbox. A 5.7.x is about this message (spam, policy).
    pub fn mailbox_gone(&self) -> bool {
        self.class() == Class::Hard
            && self
                .status
                .as_deref()
                .is_some_and(|s| s.starts_with("5.1.") || s.starts_with("5.2."))
    }
}

/// What the report carries of the message that bounced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// Only its header section came back (`text/rfc822-headers`).
    pub headers_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    pub recipients: Vec<RecipientStatus>,
    pub original: Option<Original>,
    /// Feedback reports: `Feedback-Type` (abuse, fraud, …).
    pub feedback_type: Option<String>,
}

impl Report {
    /// The fields about `rcpt`: its own block, else the only one, else the first failure.
    pub fn about(&self, rcpt: &str) -> Option<&RecipientStatus> {
        let own = self.recipients.iter().find(|r| {
            r.recipient
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(rcpt))
        });
        own.or(match self.recipients.as_slice() {
            [only] => Some(only),
            all => all.iter().find(|r| r.failed()).or(all.first()),
        })
    }
}

/// Runs a mail-parser parse. It panics on some malformed MIME ("Invalid part ID, could not
/// find multipart", found by `fuzz::messages_never_break_the_pipeline`), and a bounce address
/// takes mail from anyone: such a message reads as unreadable instead.
fn unpanicking<T>(parse: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse))
        .ok()
        .flatten()
}

/// Reads a message sent to a bounce address. Never fails: what cannot be read is `Other`.
pub fn read(raw: &[u8]) -> Report {
    let Some(message) = unpanicking(|| MessageParser::default().parse(raw)) else {
        return other();
    };
    if let Some(report) = structured(&message) {
        return report;
    }
    if let Some(report) = plain_text_bounce(&message) {
        return report;
    }
    Report {
        kind: if is_auto_reply(&message) {
            ReportKind::AutoReply
        } else {
            ReportKind::Other
        },
        recipients: Vec::new(),
        original: None,
        feedback_type: None,
    }
}

fn other() -> Report {
    Report {
        kind: ReportKind::Other,
        recipients: Vec::new(),
        original: None,
        feedback_type: None,
    }
}

/// A `message/delivery-status` or `message/feedback-report` part, wherever it is.
fn structured(message: &Message) -> Option<Report> {
    let original = attached_original(message);
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        if !ct.ctype().eq_ignore_ascii_case("message") {
            continue;
        }
        let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        let text = String::from_utf8_lossy(part.contents());
        match sub.as_str() {
            "delivery-status" | "global-delivery-status" => {
                let recipients: Vec<RecipientStatus> = blocks(&text)
                    .into_iter()
                    .skip(1)
                    .filter_map(|fields| recipient_status(&fields))
                    .collect();
                if recipients.is_empty() {
                    continue;
                }
                let kind = if recipients.iter().any(RecipientStatus::failed) {
                    ReportKind::Failure
                } else if recipients.iter().any(|r| {
                    r.action
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case("delayed"))
                }) {
                    ReportKind::Delay
                } else {
                    ReportKind::Other
                };
                return Some(Report {
                    kind,
                    recipients,
                    original,
                    feedback_type: None,
                });
            }
            "feedback-report" => {
                let fields: Vec<(String, String)> = blocks(&text).into_iter().flatten().collect();
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                let recipient = get("Original-Rcpt-To").map(|v| strip_address(&v));
                return Some(Report {
                    kind: ReportKind::Complaint,
                    recipients: vec![RecipientStatus {
                        recipient,
                        ..Default::default()
                    }],
                    original,
                    feedback_type: get("Feedback-Type").map(|v| v.to_ascii_lowercase()),
                });
            }
            _ => {}
        }
    }
    None
}

/// The per-recipient fields of one block.
fn recipient_status(fields: &[(String, String)]) -> Option<RecipientStatus> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let recipient = get("Final-Recipient")
        .or_else(|| get("Original-Recipient"))
        .map(|v| strip_address(&v));
    let action = get("Action").map(|a| {
        // `failed (bad destination mailbox address)` and the like.
        a.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    });
    let diagnostic = get("Diagnostic-Code").map(|d| strip_type(&d).to_string());
    let status = get("Status").and_then(|s| enhanced_code(&s));
    if recipient.is_none() && action.is_none() && status.is_none() {
        return None;
    }
    // A generic status (5.0.0) gives way to a more precise one of the same class in the
    // diagnostic (`550 5.1.1 user unknown`).
    let precise = diagnostic.as_deref().and_then(enhanced_code);
    let status = match (status, precise) {
        (Some(s), Some(p)) if s.ends_with(".0.0") && s[..1] == p[..1] => Some(p),
        (None, p) => p.or_else(|| diagnostic.as_deref().and_then(basic_code)),
        (s, _) => s,
    };
    Some(RecipientStatus {
        recipient,
        action,
        status,
        diagnostic: diagnostic.map(|d| d.chars().take(1000).collect()),
        remote_mta: get("Remote-MTA").map(|v| strip_type(&v).to_string()),
    })
}

/// A bounce that is not a report: from a mailer daemon, or naming its failed recipients in
/// `X-Failed-Recipients`, or with a subject bounces are known to use. Its code is read from
/// the text.
fn plain_text_bounce(message: &Message) -> Option<Report> {
    let failed_header = message
        .header_raw("X-Failed-Recipients")
        .map(|v| v.trim().to_string());
    let from_daemon = message
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .is_some_and(|a| {
            let local = a.split('@').next().unwrap_or_default().to_ascii_lowercase();
            matches!(
                local.as_str(),
                "mailer-daemon" | "postmaster" | "mail-daemon" | "mailerdaemon"
            )
        });
    let subject = message.subject().unwrap_or_default().to_ascii_lowercase();
    let bounce_subject = [
        "undeliver",
        "delivery status notification",
        "failure notice",
        "delivery failure",
        "mail delivery failed",
        "returned mail",
        "delivery has failed",
        "could not be delivered",
        "not delivered",
        "returned to sender",
    ]
    .iter()
    .any(|s| subject.contains(s));
    if failed_header.is_none() && !(from_daemon && bounce_subject) {
        return None;
    }
    let text: String = message
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    // The part before the copy of the message is what the server said.
    let said = text
        .lines()
        .take_while(|l| !is_copy_marker(l))
        .collect::<Vec<_>>()
        .join("\n");
    let status = enhanced_code(&said).or_else(|| basic_code(&said));
    let diagnostic = said
        .lines()
        .find(|l| enhanced_code(l).is_some() || basic_code(l).is_some())
        .map(|l| l.trim().chars().take(1000).collect());
    let recipients: Vec<String> = match &failed_header {
        Some(list) => list
            .split(',')
            .map(strip_address)
            .filter(|a| !a.is_empty())
            .collect(),
        None => said
            .split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '(' || c == ')')
            .filter(|w| w.contains('@') && !w.starts_with('@'))
            .map(|w| {
                w.trim_matches(|c: char| c == ':' || c == ',' || c == '.')
                    .to_string()
            })
            .take(1)
            .collect(),
    };
    let kind = match status.as_deref() {
        Some(s) if s.starts_with('4') => ReportKind::Delay,
        _ => ReportKind::Failure,
    };
    let statuses = if recipients.is_empty() {
        vec![RecipientStatus {
            status,
            diagnostic,
            action: Some("failed".into()),
            ..Default::default()
        }]
    } else {
        recipients
            .into_iter()
            .map(|r| RecipientStatus {
                recipient: Some(r),
                action: Some(
                    if kind == ReportKind::Delay {
                        "delayed"
                    } else {
                        "failed"
                    }
                    .into(),
                ),
                status: status.clone(),
                diagnostic: diagnostic.clone(),
                remote_mta: None,
            })
            .collect()
    };
    let original = attached_original(message).or_else(|| copied_original(&text));
    Some(Report {
        kind,
        recipients: statuses,
        original,
        feedback_type: None,
    })
}

fn is_copy_marker(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    (l.contains("copy of the message") || l.contains("original message"))
        && (l.starts_with("--") || l.starts_with(" --") || l.contains("below this line"))
}

/// The original a plain-text bounce quotes after its marker line.
fn copied_original(text: &str) -> Option<Original> {
    let start = text.lines().position(is_copy_marker)?;
    let rest: String = text
        .lines()
        .skip(start + 1)
        .skip_while(|l| l.trim().is_empty())
        .take(200)
        .collect::<Vec<_>>()
        .join("\r\n");
    let headers = unpanicking(|| MessageParser::default().parse_headers(rest.as_bytes()))?;
    Some(Original {
        message_id: headers.message_id().map(str::to_string),
        subject: headers.subject().map(str::to_string),
        headers_only: false,
    })
}

/// A `message/rfc822` (or `global`) part, or a `text/rfc822-headers` one.
fn attached_original(message: &Message) -> Option<Original> {
    for part in message.parts.iter().skip(1) {
        if let PartType::Message(inner) = &part.body {
            return Some(Original {
                message_id: inner.message_id().map(str::to_string),
                subject: inner.subject().map(str::to_string),
                headers_only: false,
            });
        }
        let is_headers = part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("text")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("rfc822-headers")
                        || s.eq_ignore_ascii_case("global-headers")
                })
        });
        if is_headers {
            let headers = unpanicking(|| MessageParser::default().parse_headers(part.contents()))?;
            return Some(Original {
                message_id: headers.message_id().map(str::to_string),
                subject: headers.subject().map(str::to_string),
                headers_only: true,
            });
        }
    }
    None
}

/// RFC 3834 and the headers responders use instead.
fn is_auto_reply(message: &Message) -> bool {
    let auto_submitted = message
        .header_raw("Auto-Submitted")
        .map(|v| v.trim().to_ascii_lowercase());
    if auto_submitted.is_some_and(|v| !v.starts_with("no")) {
        return true;
    }
    if message.header_raw("X-Autoreply").is_some() || message.header_raw("X-Autorespond").is_some()
    {
        return true;
    }
    message
        .header_raw("Precedence")
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("auto_reply"))
}

/// Header-like blocks separated by blank lines, continuation lines unfolded.
fn blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines().take(10_000) {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `rfc822; a@b` → `a@b` (also `<a@b>`).
fn strip_address(value: &str) -> String {
    strip_type(value)
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// `smtp; 550 …` → `550 …`; a value without a type is kept whole.
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.is_empty()
                && kind.len() <= 16
                && kind
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// The first enhanced status code (`5.1.1`, `5.7.520`) in `text`.
pub fn enhanced_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.');
        if starts_word
            && matches!(bytes[i], b'2' | b'4' | b'5')
            && let Some(len) = code_at(&bytes[i..])
        {
            return Some(text[i..i + len].to_string());
        }
        i += 1;
    }
    None
}

/// `d.ddd.ddd` at the start of `b`, ended by a non-digit non-dot; its length.
fn code_at(b: &[u8]) -> Option<usize> {
    if b.len() < 5 || b[1] != b'.' {
        return None;
    }
    let mut i = 2;
    let subject = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=3).contains(&subject) {
        return None;
    }
    i += subject;
    if b.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let detail = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=3).contains(&detail) {
        return None;
    }
    i += detail;
    match b.get(i) {
        Some(c) if c.is_ascii_alphanumeric() => None,
        Some(b'.') if b.get(i + 1).is_some_and(u8::is_ascii_digit) => None,
        _ => Some(i),
    }
}

/// A basic SMTP reply code (`554`) as an enhanced one of its class (`5.0.0`).
fn basic_code(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 3 && (w.starts_with('5') || w.starts_with('4')))
        .and_then(|w| {
            let n: u16 = w.parse().ok()?;
            (400..=599).contains(&n).then(|| format!("{}.0.0", &w[..1]))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            enhanced_code("550 5.1.1 <a@b>: unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_code("smtp;550 5.7.520 Access denied").as_deref(),
            Some("5.7.520")
        );
        assert_eq!(enhanced_code("version 1.2.3.4"), None);
        assert_eq!(enhanced_code("at 10.5.1.1 said"), None);
        assert_eq!(enhanced_code("550-5.1.1 The email"), Some("5.1.1".into()));
        assert_eq!(basic_code("554: delivery error").as_deref(), Some("5.0.0"));
        assert_eq!(basic_code("nothing 12345"), None);
    }

    #[test]
    fn blocks_unfold_and_split() {
        let b = blocks(
            "Reporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; x@y\r\nDiagnostic-Code: smtp; 550-5.1.1 one\r\n    two\r\n",
        );
        assert_eq!(b.len(), 2);
        assert_eq!(b[1][1].1, "smtp; 550-5.1.1 one two");
    }

    /// Every fixture (written after real MTAs' and providers' formats) reads as its manifest
    /// says.
    #[test]
    fn fixtures_read_as_their_manifest_says() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dsn");
        let manifest: toml::Table = std::fs::read_to_string(dir.join("MANIFEST.toml"))
            .expect("manifest")
            .parse()
            .expect("toml");
        let fixtures = manifest["fixture"].as_array().expect("fixtures");
        assert!(fixtures.len() >= 15);
        for f in fixtures {
            let file = f["file"].as_str().expect("file");
            let raw = std::fs::read_to_string(dir.join(file))
                .expect("fixture")
                .replace("{{VERP}}", "b.d7.abcdefghijklmnop@reply.test")
                .replace("{{RCPT2}}", "other@mailbox.test")
                .replace("{{RCPT}}", "user@mailbox.test")
                .replace("{{FROM}}", "shop.cat@alias.test")
                .replace("{{MSGID}}", "orig.1234@reply.test");
            let report = read(raw.as_bytes());
            let kind = match f["kind"].as_str().expect("kind") {
                "hard" | "soft" => ReportKind::Failure,
                "delayed" => ReportKind::Delay,
                "complaint" => ReportKind::Complaint,
                "auto-reply" => ReportKind::AutoReply,
                other => panic!("{file}: kind {other}"),
            };
            assert_eq!(report.kind, kind, "{file}");
            let status = f["status"].as_str().expect("status");
            if !status.is_empty() {
                let about = report.about("user@mailbox.test").expect(file);
                assert_eq!(about.status.as_deref(), Some(status), "{file}: {about:?}");
                assert_eq!(
                    about.mailbox_gone(),
                    f["counts_toward_disable"].as_bool().expect("counts"),
                    "{file}"
                );
            }
            if f["has_original"].as_bool().expect("has_original") {
                let original = report.original.as_ref().expect(file);
                assert!(
                    original.message_id.as_deref() == Some("orig.1234@reply.test")
                        || original.subject.is_some(),
                    "{file}: {original:?}"
                );
            }
            if let Some(second) = f.get("rcpt2_status").and_then(|v| v.as_str()) {
                let about = report.about("other@mailbox.test").expect(file);
                assert_eq!(about.status.as_deref(), Some(second), "{file}");
            }
        }
    }

    #[test]
    fn nothing_panics_on_garbage() {
        for raw in [
            &b""[..],
            b"\r\n\r\n",
            b"Content-Type: multipart/report\r\n\r\n--",
            b"\xff\xfe:",
        ] {
            let _ = read(raw);
        }
    }
}
