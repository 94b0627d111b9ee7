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
}

/// How a repaired message names a sender it was not given: never like an authenticated one.
pub const UNVERIFIED_SENDER: &str = "Unverified sender (the message had no From header)";

/// Who sent a message and when, for [`ParsedMessage::receive`] to repair what is missing.
pub struct Arrival<'a> {
    /// The envelope sender, "" for the null sender.
    pub mail_from: &'a str,
    /// The domain of a Message-ID we add (the reply domain, as for our other ids).
    pub id_domain: &'a str,
    /// Our `Received` field (folded, without the final CRLF), put on top.
    pub received: Option<&'a str>,
    /// Our `Authentication-Results` field (with its CRLF), put under it.
    pub authentication: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

impl ParsedMessage {
    /// A message as received over SMTP: accepted as liberally as an MTA would, and repaired
    /// where forwarding needs it (see [`repair`]), then parsed.
    pub fn receive(raw: Vec<u8>, arrival: &Arrival) -> Result<Self> {
        Self::parse(repair(raw, arrival)?)
    }

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
            raw,
        })
    }

    /// The bytes as received (CRLF line endings).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Hands the bytes over, leaving none: for a large message stored without a second copy.
    pub fn take_raw(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.raw)
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

/// Makes what a liberal MTA accepts into a message forwarding can work with:
/// - an mbox `From ` separator on the first line is removed;
/// - the first line that is neither a header field nor a continuation starts the body (a
///   message with no header section at all is all body);
/// - a missing `From` is made from the envelope sender, with a display name saying it is
///   unverified ([`UNVERIFIED_SENDER`]); a missing `Date` and `Message-ID` are added.
///
/// Only an empty message is refused: there is nothing to pass on.
pub fn repair(raw: Vec<u8>, arrival: &Arrival) -> Result<Vec<u8>> {
    let raw = match normalize_line_endings(&raw) {
        Cow::Borrowed(_) => raw,
        Cow::Owned(normalized) => normalized,
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(DomainError::MalformedMessage("the message is empty".into()));
    }
    let mut start = 0;
    if raw.starts_with(b"From ") && !is_field_line(first_line(&raw)) {
        start = (first_line(&raw).len() + 2).min(raw.len());
    }
    // Find where the header section ends, and whether a separator line is there.
    let mut pos = start;
    let mut fields = 0usize;
    let mut has_separator = false;
    let (mut has_from, mut has_date, mut has_id) = (false, false, false);
    while pos < raw.len() {
        let line = first_line(&raw[pos..]);
        if line.is_empty() {
            has_separator = true;
            break;
        }
        let continues = matches!(line.first(), Some(b' ' | b'\t')) && fields > 0;
        if !continues {
            if !is_field_line(line) {
                break;
            }
            fields += 1;
            let name = field_name(line);
            has_from |= name.eq_ignore_ascii_case(b"From");
            has_date |= name.eq_ignore_ascii_case(b"Date");
            has_id |= name.eq_ignore_ascii_case(b"Message-ID");
        }
        pos += line.len() + 2;
        if pos > raw.len() {
            pos = raw.len();
        }
    }
    let mut added = Vec::new();
    if !has_from && !arrival.mail_from.is_empty() {
        let address: String = arrival
            .mail_from
            .chars()
            .filter(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>'))
            .collect();
        added
            .extend_from_slice(format!("From: \"{UNVERIFIED_SENDER}\" <{address}>\r\n").as_bytes());
    }
    if !has_date {
        added.extend_from_slice(
            format!("Date: {}\r\n", rewrite::rfc5322_date(arrival.now)).as_bytes(),
        );
    }
    if !has_id {
        added.extend_from_slice(
            format!(
                "Message-ID: <{}@{}>\r\n",
                crate::flow::notice::new_token(),
                arrival.id_domain
            )
            .as_bytes(),
        );
    }
    // Edited in place: a large message is moved within its buffer, never copied whole.
    let mut raw = raw;
    let mut insert = Vec::with_capacity(added.len() + 4);
    if pos > start && !raw[..pos].ends_with(b"\r\n") {
        insert.extend_from_slice(b"\r\n");
    }
    insert.extend_from_slice(&added);
    if !has_separator {
        insert.extend_from_slice(b"\r\n");
    }
    let received = arrival.received.unwrap_or_default();
    let authentication = arrival.authentication.unwrap_or_default();
    let mut top = Vec::with_capacity(received.len() + authentication.len() + 2);
    if !received.is_empty() {
        top.extend_from_slice(received.as_bytes());
        top.extend_from_slice(b"\r\n");
    }
    top.extend_from_slice(authentication.as_bytes());
    raw.reserve_exact((insert.len() + top.len()).saturating_sub(start));
    raw.splice(pos..pos, insert);
    raw.splice(0..start, top);
    Ok(raw)
}

/// Removes inbound `Authentication-Results` fields, and whole ARC sets, that claim to come
/// from `hostname`: only we write those, so anyone else's are forged. Runs before anything
/// reads them.
pub fn strip_forged_claims(raw: Vec<u8>, hostname: &str) -> Vec<u8> {
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => last.1 = end,
            _ => fields.push((pos, end)),
        }
        pos = end;
    }
    let value_of = |(s, e): (usize, usize)| -> Option<(String, String)> {
        let text = String::from_utf8_lossy(&raw[s..e]).into_owned();
        let (name, value) = text.split_once(':')?;
        Some((
            name.trim().to_ascii_lowercase(),
            value.replace(['\r', '\n'], " "),
        ))
    };
    let ours = |id: &str| {
        id.split_whitespace()
            .next()
            .is_some_and(|h| h.eq_ignore_ascii_case(hostname))
    };
    let instance = |value: &str| -> Option<String> {
        value
            .split(';')
            .map(str::trim)
            .find_map(|t| t.strip_prefix("i=").map(|i| i.trim().to_string()))
    };
    let mut forged_sets = Vec::new();
    let mut drop = Vec::new();
    for (n, span) in fields.iter().enumerate() {
        let Some((name, value)) = value_of(*span) else {
            continue;
        };
        if name == "authentication-results" && ours(value.split(';').next().unwrap_or_default()) {
            drop.push(n);
        } else if name == "arc-authentication-results"
            && ours(value.split(';').nth(1).unwrap_or_default())
            && let Some(i) = instance(&value)
        {
            forged_sets.push(i);
        }
    }
    for (n, span) in fields.iter().enumerate() {
        if let Some((name, value)) = value_of(*span)
            && name.starts_with("arc-")
            && instance(&value).is_some_and(|i| forged_sets.contains(&i))
        {
            drop.push(n);
        }
    }
    if drop.is_empty() {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut copied = 0;
    let mut spans: Vec<(usize, usize)> = drop.iter().map(|&n| fields[n]).collect();
    spans.sort_unstable();
    spans.dedup();
    for (s, e) in spans {
        out.extend_from_slice(&raw[copied..s]);
        copied = e;
    }
    out.extend_from_slice(&raw[copied..]);
    out
}

/// How many `Received` fields the header section has (bare LF line ends count too).
pub fn count_received(raw: &[u8]) -> usize {
    let mut count = 0;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line
            .get(..9)
            .is_some_and(|n| n.eq_ignore_ascii_case(b"received:"))
        {
            count += 1;
        }
    }
    count
}

/// The first line of `bytes`, without its CRLF.
fn first_line(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(bytes.len());
    &bytes[..end]
}

/// `name:` with a name of printable ASCII other than the colon (RFC 5322 ftext), optionally
/// followed by spaces before the colon (obsolete syntax).
fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = field_name(line);
    !name.is_empty()
        && name.iter().all(|b| (33..=126).contains(b))
        && line[name.len()..colon]
            .iter()
            .all(|b| *b == b' ' || *b == b'\t')
}

fn field_name(line: &[u8]) -> &[u8] {
    let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
    let name = &line[..colon];
    let trimmed = name
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    &name[..trimmed]
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn content_without_headers_is_malformed() {
        let err = ParsedMessage::parse(b"just text\r\n".to_vec()).expect_err("malformed");
        assert!(matches!(err, DomainError::MalformedMessage(_)));
    }

    fn arrival() -> Arrival<'static> {
        Arrival {
            mail_from: "bob@ext.test",
            id_domain: "reply.test",
            received: None,
            authentication: None,
            now: 1_796_000_000,
        }
    }

    fn repaired(raw: &[u8]) -> String {
        String::from_utf8(repair(raw.to_vec(), &arrival()).expect("accepted")).expect("utf-8")
    }

    #[test]
    fn what_an_mta_accepts_is_repaired_not_refused() {
        // No header section at all.
        let out = repaired(b"just text\r\nand more\r\n");
        assert!(
            out.starts_with(&format!(
                "From: \"{UNVERIFIED_SENDER}\" <bob@ext.test>\r\nDate: "
            )),
            "{out}"
        );
        assert!(
            out.contains("\r\nMessage-ID: <") && out.ends_with("\r\n\r\njust text\r\nand more\r\n"),
            "{out}"
        );
        // No blank line between headers and body.
        let out = repaired(b"From: a@ext.test\r\nSubject: hi\r\nthis is the body\r\n");
        assert!(out.contains("Subject: hi\r\nDate: "), "{out}");
        assert!(out.ends_with("\r\n\r\nthis is the body\r\n"), "{out}");
        assert!(!out.contains("Unverified"), "{out}");
        // An mbox separator first.
        let out = repaired(b"From bob@ext.test Sat Jan  1 12:00:00 2026\nFrom: a@ext.test\nDate: x\nMessage-ID: <1@x>\n\nbody\n");
        assert_eq!(
            out,
            "From: a@ext.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"
        );
        // Headers only.
        let out = repaired(b"From: a@ext.test\r\nDate: x\r\nMessage-ID: <1@x>");
        assert_eq!(
            out,
            "From: a@ext.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\n"
        );
        // Obsolete `From :` is a header, not an mbox line.
        let out = repaired(b"From : a@ext.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nb\r\n");
        assert_eq!(
            out,
            "From : a@ext.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nb\r\n"
        );
        // A complete message is untouched.
        let full = b"From: a@ext.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n";
        assert_eq!(repaired(full).as_bytes(), full);
        for (raw, _) in [(b"".as_slice(), ()), (b"\r\n\r\n", ())] {
            assert!(repair(raw.to_vec(), &arrival()).is_err());
        }
        // Every repaired message parses.
        for raw in [
            b"x".as_slice(),
            b"::::\r\n",
            b"\x00\x01\x02",
            b" leading space\r\n",
        ] {
            let out = repair(raw.to_vec(), &arrival()).expect("accepted");
            ParsedMessage::parse(out).expect("parses after repair");
        }
    }
}
