//! The reply scrub: the owner's real addresses must not reach a contact anywhere in the
//! message — a header, an RFC 2047 encoded word, a base64 or quoted-printable part, an HTML
//! link, or an attached message (whose trace headers are removed too).
//!
//! Each MIME entity is walked; a leaf is decoded by its transfer encoding, searched, and
//! re-encoded only when something in it changed, so untouched parts stay byte-for-byte.
//! A match must stand alone as an address: `home@real.test` does not contain the mailbox
//! `me@real.test`, and neither does `me@real.test.example`.

use std::borrow::Cow;

use data_encoding::BASE64_MIME;
use mail_parser::HeaderValue;

/// Header fields removed from a message attached to a reply (`message/rfc822`): the trace
/// and provider fields that name the owner's host, IP address, mailbox or client. Case
/// insensitive; a trailing `-` means a prefix.
pub const ATTACHED_DROP: &str = "Received X-Received Received-SPF Return-Path DKIM-Signature \
    ARC- Authentication-Results X-Originating- X-Forwarded- Delivered-To X-Original-To \
    Envelope-To X-Envelope- X-Apparently-To X-Sender X-Mailer User-Agent X-MS- X-Microsoft- \
    X-Google- X-Gm- X-Mozilla- X-Authenticated- X-Postern- Autocrypt";

/// Nesting deeper than this is not walked further; what lies below is searched as bytes.
const MAX_DEPTH: usize = 16;

/// Finds the owner's addresses and writes the alias in their place.
pub struct Scrubber {
    /// Lowercase needles: each address, and its `%40` and `&#64;` spellings.
    needles: Vec<Vec<u8>>,
    replacement: Vec<u8>,
}

impl Scrubber {
    pub fn new<'a>(addresses: impl IntoIterator<Item = &'a str>, replacement: &str) -> Self {
        let mut needles = Vec::new();
        for address in addresses {
            let address = address.trim().to_ascii_lowercase();
            let Some((local, domain)) = address.rsplit_once('@') else {
                continue;
            };
            if local.is_empty() || domain.is_empty() {
                continue;
            }
            for at in ["@", "%40", "&#64;", "&#x40;"] {
                let needle = format!("{local}{at}{domain}").into_bytes();
                if !needles.contains(&needle) {
                    needles.push(needle);
                }
            }
        }
        // Longest first, so one address that contains another is replaced whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Self {
            needles,
            replacement: replacement.as_bytes().to_vec(),
        }
    }

    /// The whole message, scrubbed.
    pub fn message(&self, raw: &[u8]) -> Vec<u8> {
        self.entity(raw, false, 0).into_owned()
    }

    /// Replaces every standalone occurrence; `None` when there is none.
    pub fn text(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hit = self.needles.iter().find(|n| {
                bytes
                    .get(i..i + n.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(n))
                    && standalone(bytes, i, i + n.len())
            });
            match hit {
                Some(n) => {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
                    o.extend_from_slice(bytes.get(copied..i).unwrap_or_default());
                    o.extend_from_slice(&self.replacement);
                    i += n.len();
                    copied = i;
                }
                None => i += 1,
            }
        }
        out.map(|mut o| {
            o.extend_from_slice(bytes.get(copied..).unwrap_or_default());
            o
        })
    }

    fn entity<'a>(&self, raw: &'a [u8], attached: bool, depth: usize) -> Cow<'a, [u8]> {
        if depth > MAX_DEPTH {
            return self.text(raw).map_or(Cow::Borrowed(raw), Cow::Owned);
        }
        let (head, sep, body) = split_entity(raw);
        let fields = fields(head);
        let mut changed = false;
        let mut new_head = Vec::with_capacity(head.len());
        let mut content_type = None;
        let mut encoding = Encoding::Identity;
        for field in &fields {
            let name = field_name(field);
            if attached && in_list(name, ATTACHED_DROP) {
                changed = true;
                continue;
            }
            let value = field_value(field);
            if name.eq_ignore_ascii_case(b"Content-Type") {
                content_type = parse_content_type(value);
            } else if name.eq_ignore_ascii_case(b"Content-Transfer-Encoding") {
                encoding = Encoding::of(value);
            }
            match self.header(field) {
                Some(new) => {
                    changed = true;
                    new_head.extend_from_slice(&new);
                }
                None => new_head.extend_from_slice(field),
            }
        }
        let new_body = self.body(body, content_type.as_ref(), encoding, depth);
        if !changed && matches!(new_body, Cow::Borrowed(_)) {
            return Cow::Borrowed(raw);
        }
        let mut out = new_head;
        out.extend_from_slice(sep);
        out.extend_from_slice(&new_body);
        Cow::Owned(out)
    }

    /// A header field with the owner's address replaced, in plain text and inside RFC 2047
    /// encoded words (each word is decoded, and written anew when it held the address).
    fn header(&self, field: &[u8]) -> Option<Vec<u8>> {
        let plain = self.text(field);
        let current = plain.as_deref().unwrap_or(field);
        self.encoded_words(current).or(plain)
    }

    fn encoded_words(&self, field: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut i = 0;
        while let Some(start) = find(field, b"=?", i) {
            let Some(end) = encoded_word_end(field, start) else {
                i = start + 2;
                continue;
            };
            let word = field.get(start..end).unwrap_or_default();
            let scrubbed = decode_words(word).and_then(|d| self.text(d.as_bytes()));
            if let Some(new) = scrubbed {
                let o = out.get_or_insert_with(Vec::new);
                o.extend_from_slice(field.get(copied..start).unwrap_or_default());
                o.extend_from_slice(b"=?utf-8?b?");
                o.extend_from_slice(data_encoding::BASE64.encode(&new).as_bytes());
                o.extend_from_slice(b"?=");
                copied = end;
            }
            i = end;
        }
        out.map(|mut o| {
            o.extend_from_slice(field.get(copied..).unwrap_or_default());
            o
        })
    }

    fn body<'a>(
        &self,
        body: &'a [u8],
        content_type: Option<&ContentType>,
        encoding: Encoding,
        depth: usize,
    ) -> Cow<'a, [u8]> {
        let (kind, subtype) = content_type
            .map(|c| (c.kind.as_str(), c.subtype.as_str()))
            .unwrap_or(("text", "plain"));
        if kind == "multipart"
            && let Some(boundary) = content_type.and_then(|c| c.boundary.as_deref())
        {
            return self.multipart(body, boundary.as_bytes(), depth);
        }
        let decoded = match encoding.decode(body) {
            Some(d) => d,
            None => return self.text(body).map_or(Cow::Borrowed(body), Cow::Owned),
        };
        let scrubbed = if kind == "message" && matches!(subtype, "rfc822" | "global") {
            match self.entity(&decoded, true, depth + 1) {
                Cow::Borrowed(_) => None,
                Cow::Owned(o) => Some(o),
            }
        } else {
            self.text(&decoded)
        };
        match scrubbed {
            None => Cow::Borrowed(body),
            Some(new) => Cow::Owned(encoding.encode(&new)),
        }
    }

    fn multipart<'a>(&self, body: &'a [u8], boundary: &[u8], depth: usize) -> Cow<'a, [u8]> {
        let lines = delimiter_lines(body, boundary);
        if lines.is_empty() {
            return self.text(body).map_or(Cow::Borrowed(body), Cow::Owned);
        }
        let mut out = Vec::with_capacity(body.len());
        let mut changed = false;
        // The preamble is text no client shows, but text all the same.
        let first = lines.first().map_or(0, |l| l.0);
        let preamble = body.get(..first).unwrap_or_default();
        match self.text(preamble) {
            Some(p) => {
                changed = true;
                out.extend_from_slice(&p);
            }
            None => out.extend_from_slice(preamble),
        }
        for (i, &(start, end)) in lines.iter().enumerate() {
            out.extend_from_slice(body.get(start..end).unwrap_or_default());
            let next = lines.get(i + 1).map_or(body.len(), |l| l.0);
            let part = body.get(end..next).unwrap_or_default();
            let is_last = lines.get(i + 1).is_none();
            let scrubbed = if is_last {
                // The epilogue after the closing delimiter.
                self.text(part).map_or(Cow::Borrowed(part), Cow::Owned)
            } else {
                // The line break before the next delimiter belongs to the delimiter.
                let (content, eol) = strip_eol(part);
                match self.entity(content, false, depth + 1) {
                    Cow::Borrowed(_) => Cow::Borrowed(part),
                    Cow::Owned(mut o) => {
                        o.extend_from_slice(eol);
                        Cow::Owned(o)
                    }
                }
            };
            changed |= matches!(scrubbed, Cow::Owned(_));
            out.extend_from_slice(&scrubbed);
        }
        if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(body)
        }
    }
}

/// The delimiter lines of a multipart body: each one's start and the end of its line, up to
/// and including the closing one.
pub(crate) fn delimiter_lines(body: &[u8], boundary: &[u8]) -> Vec<(usize, usize)> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let end = body
            .get(pos..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(body.len(), |i| pos + i + 1);
        let line = body.get(pos..end).unwrap_or_default();
        if line.starts_with(&delimiter) {
            lines.push((pos, end));
            let rest = line.get(delimiter.len()..).unwrap_or_default();
            if rest.starts_with(b"--") {
                break;
            }
        }
        pos = end;
    }
    lines
}

/// Whether `bytes[start..end]` is a whole address: not the tail of a longer local part, nor
/// the head of a longer domain.
fn standalone(bytes: &[u8], start: usize, end: usize) -> bool {
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-.".contains(&b);
    let before_ok = start == 0 || bytes.get(start - 1).is_none_or(|&b| !atext(b));
    let after_ok = match bytes.get(end) {
        None => true,
        Some(b) if b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_' => false,
        Some(b'.') => !bytes
            .get(end + 1)
            .is_some_and(|b| b.is_ascii_alphanumeric()),
        Some(_) => true,
    };
    before_ok && after_ok
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The end of the encoded word `=?charset?X?text?=` that starts at `start`.
fn encoded_word_end(field: &[u8], start: usize) -> Option<usize> {
    let charset_end = find(field, b"?", start + 2)?;
    let kind = field.get(charset_end + 1)?;
    if !matches!(kind, b'b' | b'B' | b'q' | b'Q') || field.get(charset_end + 2) != Some(&b'?') {
        return None;
    }
    let text_start = charset_end + 3;
    let end = find(field, b"?=", text_start)?;
    let text = field.get(text_start..end)?;
    (!text.iter().any(|b| b.is_ascii_whitespace())).then_some(end + 2)
}

/// Header section (with its last line break), the empty separator line, and the body.
pub(crate) fn split_entity(raw: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw
            .get(pos..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(raw.len(), |i| pos + i + 1);
        let line = raw.get(pos..end).unwrap_or_default();
        if line == b"\r\n" || line == b"\n" {
            return (
                raw.get(..pos).unwrap_or_default(),
                line,
                raw.get(end..).unwrap_or_default(),
            );
        }
        pos = end;
    }
    (raw, b"", b"")
}

/// Each header field with its folded continuation lines and line break.
pub(crate) fn fields(head: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < head.len() {
        let end = head
            .get(pos..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(head.len(), |i| pos + i + 1);
        let continues = matches!(head.get(pos), Some(b' ' | b'\t'));
        match out.last_mut() {
            Some(last) if continues => last.1 = end,
            _ => out.push((pos, end)),
        }
        pos = end;
    }
    out.into_iter()
        .filter_map(|(s, e)| head.get(s..e))
        .collect()
}

pub(crate) fn field_name(field: &[u8]) -> &[u8] {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
    trim_ascii(field.get(..colon).unwrap_or_default())
}

pub(crate) fn field_value(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == b':') {
        Some(colon) => strip_eol(field.get(colon + 1..).unwrap_or_default()).0,
        None => b"",
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

pub(crate) fn strip_eol(b: &[u8]) -> (&[u8], &[u8]) {
    if b.ends_with(b"\r\n") {
        b.split_at(b.len() - 2)
    } else if b.ends_with(b"\n") {
        b.split_at(b.len() - 1)
    } else {
        (b, b"")
    }
}

fn in_list(name: &[u8], list: &str) -> bool {
    list.split_whitespace().any(|n| match n.strip_suffix('-') {
        Some(_) => name
            .get(..n.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(n.as_bytes())),
        None => name.eq_ignore_ascii_case(n.as_bytes()),
    })
}

/// An unstructured value with its RFC 2047 encoded words decoded.
fn decode_words(value: &[u8]) -> Option<String> {
    let mut buf = b"Subject:".to_vec();
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n\r\n");
    let message = mail_parser::MessageParser::new().parse_headers(&buf)?;
    match &message.headers().first()?.value {
        HeaderValue::Text(t) => Some(t.to_string()),
        _ => None,
    }
}

pub(crate) struct ContentType {
    pub(crate) kind: String,
    pub(crate) subtype: String,
    pub(crate) boundary: Option<String>,
}

pub(crate) fn parse_content_type(value: &[u8]) -> Option<ContentType> {
    let mut buf = b"Content-Type:".to_vec();
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n\r\n");
    let message = mail_parser::MessageParser::new().parse_headers(&buf)?;
    let HeaderValue::ContentType(ct) = &message.headers().first()?.value else {
        return None;
    };
    Some(ContentType {
        kind: ct.ctype().to_ascii_lowercase(),
        subtype: ct.subtype().unwrap_or_default().to_ascii_lowercase(),
        boundary: ct.attribute("boundary").map(str::to_string),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// 7bit, 8bit, binary, or unknown: the bytes are the content.
    Identity,
    Base64,
    QuotedPrintable,
}

impl Encoding {
    pub(crate) fn of(value: &[u8]) -> Self {
        let v = trim_ascii(value);
        if v.eq_ignore_ascii_case(b"base64") {
            Self::Base64
        } else if v.eq_ignore_ascii_case(b"quoted-printable") {
            Self::QuotedPrintable
        } else {
            Self::Identity
        }
    }

    pub(crate) fn decode<'a>(self, body: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        match self {
            Self::Identity => Some(Cow::Borrowed(body)),
            Self::Base64 => {
                let clean: Vec<u8> = body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                mail_parser::decoders::base64::base64_decode(&clean).map(Cow::Owned)
            }
            Self::QuotedPrintable => Some(Cow::Owned(qp_decode(body))),
        }
    }

    pub(crate) fn encode(self, content: &[u8]) -> Vec<u8> {
        match self {
            Self::Identity => content.to_vec(),
            Self::Base64 => {
                let mut out = BASE64_MIME.encode(content).into_bytes();
                if !out.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                }
                out
            }
            Self::QuotedPrintable => qp_encode(content),
        }
    }
}

/// Lenient quoted-printable: `=XX` is a byte, `=` at a line end is a soft break, anything
/// else is taken as it is.
fn qp_decode(body: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body.get(i) {
            Some(b'=') => match (body.get(i + 1), body.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => i += 3,
                (Some(b'\n'), _) => i += 2,
                (h, l) => match (hex(h), hex(l)) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                },
            },
            Some(&b) => {
                out.push(b);
                i += 1;
            }
            None => break,
        }
    }
    out
}

/// Quoted-printable with line breaks kept as hard breaks and lines of at most 76 characters.
fn qp_encode(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 8);
    let lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let plain =
                (b'!'..=b'~').contains(&b) && b != b'=' || (b == b' ' || b == b'\t') && !last;
            let piece: Vec<u8> = if plain {
                vec![b]
            } else {
                format!("={b:02X}").into_bytes()
            };
            if width + piece.len() > 75 {
                out.extend_from_slice(b"=\r\n");
                width = 0;
            }
            width += piece.len();
            out.extend_from_slice(&piece);
        }
        if n + 1 < lines.len() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(["me@real.test", "work@office.test"], "shop@alias.test")
    }

    fn has(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    }

    #[test]
    fn only_whole_addresses_are_replaced() {
        let s = scrubber();
        let out = s
            .text(b"Me@Real.test, home@real.test, me@real.test.example, <mailto:me%40real.test>, me&#64;real.test.")
            .expect("changed");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "shop@alias.test, home@real.test, me@real.test.example, <mailto:shop@alias.test>, shop@alias.test."
        );
        assert_eq!(s.text(b"nothing here"), None);
    }

    #[test]
    fn encoded_parts_headers_and_attached_messages_are_scrubbed() {
        let b64 = BASE64_MIME.encode(b"Write to me@real.test any time.\r\n");
        let attached = "Received: from laptop (203.0.113.9) by mx.real.test\r\n\
                        X-Originating-IP: [203.0.113.9]\r\n\
                        DKIM-Signature: v=1; d=real.test; b=xyz\r\n\
                        From: Me <me@real.test>\r\n\
                        Subject: old\r\n\
                        Content-Transfer-Encoding: quoted-printable\r\n\
                        \r\n\
                        quoted from work=40office.test\r\n";
        let raw = format!(
            "From: shop@alias.test\r\n\
             Subject: =?utf-8?b?{}?=\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
             \r\n\
             --b1\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\
             \r\n\
             {b64}\r\n\
             --b1\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             <a href=3D\"mailto:me=40real.test\">mail me</a>\r\n\
             --b1\r\n\
             Content-Type: message/rfc822\r\n\
             \r\n\
             {attached}\r\n\
             --b1\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             untouched home@real.test\r\n\
             --b1--\r\n",
            BASE64_MIME
                .encode("Réponse de me@real.test".as_bytes())
                .trim_end()
        );
        let out = scrubber().message(raw.as_bytes());
        let parsed = mail_parser::MessageParser::new()
            .parse(&out)
            .expect("still a message");
        let mut decoded = String::new();
        decoded.push_str(parsed.subject().unwrap_or_default());
        for part in parsed.parts.iter() {
            if let mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) = &part.body {
                decoded.push_str(t);
            }
        }
        // Nothing left that stands alone as the owner's address, decoded or not.
        assert_eq!(scrubber().text(decoded.as_bytes()), None, "{decoded}");
        assert_eq!(scrubber().text(&out), None);
        assert!(!has(&out, "me=40real.test"));
        assert!(!has(&out, "work=40office.test"));
        assert!(
            decoded.contains("Write to shop@alias.test any time."),
            "{decoded}"
        );
        assert!(decoded.contains("Réponse de shop@alias.test"), "{decoded}");
        for trace in [
            "Received:",
            "X-Originating-IP",
            "DKIM-Signature",
            "203.0.113.9",
        ] {
            assert!(!has(&out, trace), "{trace} left in the attached message");
        }
        assert!(has(&out, "untouched home@real.test"));
    }

    #[test]
    fn untouched_messages_are_returned_byte_for_byte() {
        let raw = b"From: a@b.test\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n";
        assert_eq!(scrubber().message(raw), raw.to_vec());
    }

    #[test]
    fn quoted_printable_round_trips() {
        let text = "a long line with = signs and ünïcödé ".repeat(5) + "\r\nsecond line \r\n";
        assert_eq!(qp_decode(&qp_encode(text.as_bytes())), text.as_bytes());
        assert!(
            qp_encode(text.as_bytes())
                .split(|&b| b == b'\n')
                .all(|l| l.len() <= 77)
        );
    }
}
