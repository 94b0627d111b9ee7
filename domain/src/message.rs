//! A received message, parsed once: every later stage reads this, none parses again.

use std::borrow::Cow;

use crate::rewrite::{self, Inspection};
use crate::{DomainError, Result};

#[derive(Debug)]
pub struct ParsedMessage {
    raw: Vec<u8>,
    /// From, the addresses that need reverse aliases, ids and subject.
    pub inspection: Inspection,
    /// Every To/Cc address, lowercased (who a reply goes to).
    pub recipients: Vec<String>,
    /// An RFC 3464 report of a failed delivery.
    pub failure_report: bool,
}

impl ParsedMessage {
    /// Parses `raw` (line endings normalised to CRLF first). Refuses content that no server
    /// could pass on.
    pub fn parse(raw: Vec<u8>) -> Result<Self> {
        let raw = match normalize_line_endings(&raw) {
            Cow::Borrowed(_) => raw,
            Cow::Owned(normalized) => normalized,
        };
        if !rewrite::is_well_formed(&raw) {
            return Err(DomainError::MalformedMessage(
                "no header section, or a line that is neither a header field nor its continuation"
                    .into(),
            ));
        }
        Ok(Self {
            inspection: rewrite::inspect(&raw),
            recipients: rewrite::reply_recipients(&raw),
            failure_report: is_failure_report(&raw),
            raw,
        })
    }

    /// The bytes as received (CRLF line endings).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub fn subject(&self) -> Option<&str> {
        self.inspection.subject.as_deref()
    }
}

/// Bare LF and bare CR become CRLF. We pass messages on to other servers, and a lone `\n.\r\n`
/// in what we send could end the message early at a lenient receiver (SMTP smuggling).
pub fn normalize_line_endings(raw: &[u8]) -> Cow<'_, [u8]> {
    let clean = raw.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && raw[i - 1] == b'\r',
        b'\r' => raw.get(i + 1) == Some(&b'\n'),
        _ => true,
    });
    if clean {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// A delivery status notification that reports a failure (RFC 3464 `Action: failed`).
fn is_failure_report(raw: &[u8]) -> bool {
    let head = &raw[..raw.len().min(256 * 1024)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.contains("multipart/report")
        && text.contains("delivery-status")
        && text
            .lines()
            .any(|l| l.trim().starts_with("action:") && l.contains("failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failure_reports_are_bounces() {
        let dsn = b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nAction: failed\r\n";
        let delayed = b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nAction: delayed\r\n";
        assert!(is_failure_report(dsn));
        assert!(!is_failure_report(delayed));
        assert!(!is_failure_report(
            b"Subject: Out of office\r\n\r\nback monday\r\n"
        ));
    }

    #[test]
    fn line_endings_become_crlf() {
        assert_eq!(&*normalize_line_endings(b"a\r\nb\r\n"), b"a\r\nb\r\n");
        assert_eq!(
            &*normalize_line_endings(b"a\nb\r.\r\n\n"),
            b"a\r\nb\r\n.\r\n\r\n"
        );
        assert_eq!(&*normalize_line_endings(b"\n.\r\n"), b"\r\n.\r\n");
    }

    #[test]
    fn parsed_once_with_what_the_flows_need() {
        let msg = ParsedMessage::parse(
            b"From: Bob <bob@ext.test>\nTo: a@alias.test, c@ext.test\nSubject: hi\n\nbody\n"
                .to_vec(),
        )
        .expect("parses");
        assert!(msg.raw().starts_with(b"From: Bob <bob@ext.test>\r\n"));
        assert_eq!(msg.recipients, vec!["a@alias.test", "c@ext.test"]);
        assert_eq!(msg.subject(), Some("hi"));
        assert!(!msg.failure_report);
    }

    #[test]
    fn content_without_headers_is_malformed() {
        let err = ParsedMessage::parse(b"just text\r\n".to_vec()).expect_err("malformed");
        assert!(matches!(err, DomainError::MalformedMessage(_)));
    }
}
