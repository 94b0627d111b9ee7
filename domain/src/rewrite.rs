//! Header rewriting for forwarded mail and for replies.
//!
//! Pure: bytes + context in, bytes out. Two passes: [`inspect`] collects the addresses
//! that need reverse aliases, the caller resolves them, then [`rewrite_forward`] or
//! [`rewrite_reply`] produces the new message. Header fields are located on the raw
//! bytes; mail-parser only parses individual field values. The body and every header
//! field that is not rewritten are copied byte-for-byte.

use std::collections::{HashMap, HashSet};

use mail_parser::{HeaderValue, MessageParser};

/// A parsed, validated mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Decoded display name (control characters replaced, whitespace collapsed).
    pub name: Option<String>,
    /// `local@domain`, domain lowercased, local part as found.
    pub address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    From,
    ReplyTo,
    To,
    Cc,
    /// An address a mail client may write to on the owner's behalf: read receipts,
    /// follow-ups, errors, and the mailto: links of mailing-list fields.
    Client,
}

/// Header facts the caller needs before rewriting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// First valid From mailbox.
    pub from: Option<Mailbox>,
    /// Every valid From/Reply-To/To/Cc address (groups flattened), header order, deduplicated per role.
    pub addresses: Vec<(Role, Mailbox)>,
    /// Without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Decoded, single line.
    pub subject: Option<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("message has no header/body separator or no headers")]
    Malformed,
    #[error("message has no usable sender (no valid From and no envelope fallback)")]
    MissingSender,
    #[error("no reverse alias for sender {0}")]
    MissingReverseAlias(String),
    #[error("recipient {0} is not a known contact")]
    UnknownRecipient(String),
}

pub struct ForwardContext<'a> {
    /// The alias address (lowercase).
    pub alias: &'a str,
    /// SMTP MAIL FROM, "" for the null sender.
    pub envelope_from: &'a str,
    /// The sender (From header or envelope fallback).
    pub original_from: Option<&'a Mailbox>,
    /// Lowercased external address → reverse alias.
    pub reverse_aliases: &'a HashMap<String, String>,
    /// Message-IDs we generated for replies → the owner client's original Message-ID.
    pub restore_ids: &'a HashMap<String, String>,
    /// How reverse aliases are shown.
    pub sender_format: SenderFormat,
    /// The sender's domain asks for quarantine and the message fails its DMARC check: the
    /// subject says so, and a header explains.
    pub warning: bool,
}

/// How a reverse alias's display name shows the original sender (SimpleLogin's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SenderFormat {
    /// `"Bob Smith - bob at ext.test"`.
    #[default]
    At,
    /// `"Bob Smith - bob(a)ext.test"`.
    A,
    /// `"Bob Smith"` (the address when there is no name).
    NameOnly,
    /// `"bob at ext.test"`.
    AtOnly,
    /// No display name at all.
    NoName,
}

impl SenderFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AT" => Self::At,
            "A" => Self::A,
            "NAME_ONLY" => Self::NameOnly,
            "AT_ONLY" => Self::AtOnly,
            "NO_NAME" => Self::NoName,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::At => "AT",
            Self::A => "A",
            Self::NameOnly => "NAME_ONLY",
            Self::AtOnly => "AT_ONLY",
            Self::NoName => "NO_NAME",
        }
    }
}

pub struct ReplyContext<'a> {
    pub alias: &'a str,
    /// The owner's mailbox the reply came from: its domain is treated as revealing.
    pub mailbox: &'a str,
    pub alias_name: Option<&'a str>,
    /// Lowercased reverse alias → real contact.
    pub contacts: &'a HashMap<String, Mailbox>,
    /// Without brackets, e.g. `abc123@alias.test`.
    pub new_message_id: &'a str,
    /// Ids to replace in In-Reply-To / References: id as it appears → replacement.
    pub map_ids: &'a HashMap<String, String>,
}

/// Fields dropped from forwarded mail; case-insensitive, a trailing `-` means prefix. The
/// upstream `Received` fields stay, under our own, so hops can be counted.
const FORWARD_DROP: &str = "DKIM-Signature Return-Path Delivered-To Sender X-Original-To \
    X-Postern-";

/// What a forward's subject starts with when the sender's DMARC policy asks for quarantine.
pub const WARNING_PREFIX: &str = "[Unverified sender] ";

/// Fields dropped from replies: anything that can carry the owner's mailbox address, the
/// client's host/IP or a client fingerprint. `Bcc` must never be transmitted.
const REPLY_DROP: &str = "Received Received-SPF User-Agent X-Mailer Reply-To Return-Path Sender \
    Bcc DKIM-Signature Authentication-Results Delivered-To X-Original-To Disposition-Notification-To \
    Return-Receipt-To X-Confirm-Reading-To Errors-To Mail-Followup-To Mail-Reply-To Autocrypt \
    OpenPGP X-Sender X-Received Envelope-To X-Envelope-From X-Envelope-To X-Apparently-To ARC- \
    X-Postern- X-Originating- X-Forwarded- X-MS- X-Microsoft- X-Google- X-Gm- X-Mozilla- \
    X-Authenticated- Resent- Message-ID";

/// Fields naming an address the owner's mail client may write to by itself (a read receipt,
/// a follow-up, an error report). In a forward each address becomes its reverse alias, or
/// is removed when it has none: the client must never write to it from the real mailbox.
const CLIENT_ADDRESS_FIELDS: [&str; 6] = [
    "Mail-Reply-To",
    "Mail-Followup-To",
    "Disposition-Notification-To",
    "Return-Receipt-To",
    "X-Confirm-Reading-To",
    "Errors-To",
];

/// RFC 2369 list fields, lists of `<URI>`: a client's Unsubscribe/Post/Help button writes to
/// their mailto: URIs. In a forward those go through reverse aliases; web links are kept
/// (and `List-Unsubscribe-Post`, RFC 8058 one-click, with them).
const LIST_URI_FIELDS: [&str; 5] = [
    "List-Unsubscribe",
    "List-Post",
    "List-Help",
    "List-Subscribe",
    "List-Owner",
];

/// Longest display name (in chars) we put in a generated header.
const MAX_NAME_CHARS: usize = 128;
/// Longest single token we emit; keeps every generated line under 998 octets.
const MAX_VALUE_BYTES: usize = 900;

/// One header field as found in the raw message.
struct Field<'a> {
    /// The whole field including folding and its line terminator (if any).
    raw: &'a [u8],
    name: &'a [u8],
    /// Everything after the colon, without the final line terminator.
    value: &'a [u8],
}

impl Field<'_> {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// Whether the name is in a whitespace-separated list (entries ending in `-` are prefixes).
    fn is_in(&self, list: &str) -> bool {
        list.split_whitespace().any(|n| match n.ends_with('-') {
            true => {
                (self.name.get(..n.len())).is_some_and(|h| h.eq_ignore_ascii_case(n.as_bytes()))
            }
            false => self.is(n),
        })
    }

    fn mailboxes(&self, canon: &str) -> Vec<Mailbox> {
        match parse_value(canon, self.value) {
            Some(HeaderValue::Address(list)) => list
                .iter()
                .filter_map(|a| {
                    let address = normalize_address(a.address.as_deref()?)?;
                    let name = a.name.as_deref().map(clean).filter(|n| !n.is_empty());
                    Some(Mailbox { name, address })
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Unstructured value: RFC 2047 decoded, unfolded, control characters removed.
    fn text(&self) -> String {
        parse_value("Subject", self.value)
            .and_then(|v| v.as_text().map(clean))
            .unwrap_or_default()
    }

    /// The name of this field if it is one of `names` (in their canonical spelling).
    fn one_of<const N: usize>(&self, names: &[&'static str; N]) -> Option<&'static str> {
        names.iter().copied().find(|n| self.is(n))
    }

    /// The URIs of a list field (`<uri>, <uri>`); `None` for a value such as `NO`.
    fn uris(&self) -> Option<Vec<String>> {
        let value: String = String::from_utf8_lossy(self.value)
            .chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect();
        let mut uris = Vec::new();
        let mut rest = value.as_str();
        while let Some(start) = rest.find('<') {
            let after = rest.get(start + 1..)?;
            let end = after.find('>')?;
            uris.push(after.get(..end)?.trim().to_string());
            rest = after.get(end + 1..)?;
        }
        (!uris.is_empty()).then_some(uris)
    }

    fn ids(&self, canon: &str) -> Vec<String> {
        parse_value(canon, self.value)
            .and_then(|v| {
                v.as_text_list()
                    .map(|l| l.iter().map(|s| s.to_string()).collect())
            })
            .unwrap_or_default()
    }
}

struct Parts<'a> {
    fields: Vec<Field<'a>>,
    /// The empty separator line ("" when the message is headers only without one).
    sep: &'a [u8],
    body: &'a [u8],
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether `raw` has a header section the rewriting can work with.
pub fn is_well_formed(raw: &[u8]) -> bool {
    split(raw).is_some()
}

/// Splits the message at the first empty line into header fields and body. A message
/// consisting only of well-formed header lines (no separator) is accepted with an empty
/// body. `None` for no headers, a line that is neither a field nor a continuation, or a
/// continuation line before the first field.
fn split(raw: &[u8]) -> Option<Parts<'_>> {
    let mut spans: Vec<(usize, usize, usize, usize)> = Vec::new(); // start, name end, colon, end
    let (mut sep, mut body): (&[u8], &[u8]) = (b"", b"");
    let mut pos = 0;
    while pos < raw.len() {
        let rest = raw.get(pos..)?;
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = raw.get(pos..end)?;
        let content = trim_eol(line);
        if content.is_empty() {
            sep = line;
            body = raw.get(end..)?;
            break;
        }
        if matches!(content.first(), Some(b' ' | b'\t')) {
            spans.last_mut()?.3 = end;
        } else {
            let colon = content.iter().position(|&b| b == b':')?;
            let name = content.get(..colon)?;
            let name_len = name.len()
                - name
                    .iter()
                    .rev()
                    .take_while(|b| **b == b' ' || **b == b'\t')
                    .count();
            let name = name.get(..name_len)?;
            if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
                return None;
            }
            spans.push((pos, pos + name_len, pos + colon, end));
        }
        pos = end;
    }
    if spans.is_empty() {
        return None;
    }
    let fields = spans
        .iter()
        .map(|&(start, name_end, colon, end)| {
            Some(Field {
                raw: raw.get(start..end)?,
                name: raw.get(start..name_end)?,
                value: trim_eol(raw.get(colon + 1..end)?),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Parts { fields, sep, body })
}

/// Parses one field value with mail-parser under a canonical header name.
fn parse_value(canon: &str, value: &[u8]) -> Option<HeaderValue<'static>> {
    let mut buf = Vec::with_capacity(canon.len() + value.len() + 5);
    buf.extend_from_slice(canon.as_bytes());
    buf.push(b':');
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n\r\n");
    let message = MessageParser::new().parse_headers(&buf)?;
    message
        .headers()
        .first()
        .map(|h| h.value.clone().into_owned())
}

/// Validates and normalizes an address: exactly one `@` outside quotes, non-empty
/// atext/quoted local part, a domain of at least two valid labels; domain lowercased.
fn normalize_address(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() > 254 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let (mut at, mut quoted, mut escaped) = (None, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '@' if !quoted && at.replace(i).is_some() => return None,
            _ => {}
        }
    }
    let at = at.filter(|_| !quoted)?;
    let (local, domain) = (s.get(..at)?, s.get(at + 1..)?);
    let local_ok = if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        true
    } else {
        local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
    };
    if local.is_empty() || local.len() > 64 || !local_ok {
        return None;
    }
    let domain = domain.to_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// Single-line text: control and other whitespace characters become one space,
/// bidi overrides are removed, ends trimmed.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// An address or id for use inside `<...>`: no whitespace, controls or brackets.
fn clean_token(s: &str) -> String {
    let s: String = s
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>'))
        .collect();
    truncate(&s, MAX_VALUE_BYTES).to_string()
}

fn truncate(s: &str, max: usize) -> &str {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    s.get(..i).unwrap_or_default()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An unstructured field value: as it is when printable ASCII, RFC 2047 encoded words
/// otherwise.
fn unstructured(text: &str) -> String {
    let text = clean(text);
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return truncate(&text, MAX_VALUE_BYTES).to_string();
    }
    encoded_words(&text)
}

/// RFC 2047 base64 encoded words, each at most 72 characters.
fn encoded_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() - start > 45 {
            words.push(text.get(start..i).unwrap_or_default());
            start = i;
        }
    }
    words.push(text.get(start..).unwrap_or_default());
    let words: Vec<String> = words
        .iter()
        .map(|w| format!("=?utf-8?b?{}?=", base64(w.as_bytes())))
        .collect();
    words.join(" ")
}

/// A display-name phrase: a quoted string for printable ASCII, RFC 2047 base64
/// encoded words (each at most 72 chars) otherwise. Input must already be `clean`.
fn phrase(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        return format!("\"{escaped}\"");
    }
    encoded_words(text)
}

fn display_name(name: Option<&str>) -> Option<String> {
    let name = clean(name?);
    let name: String = name.chars().take(MAX_NAME_CHARS).collect();
    Some(name.trim_end().to_string()).filter(|n| !n.is_empty())
}

/// `"Name" <address>`, or `<address>` without a (usable) name.
fn name_addr(name: Option<&str>, address: &str) -> String {
    match display_name(name) {
        Some(name) => format!("{} <{}>", phrase(&name), clean_token(address)),
        None => format!("<{}>", clean_token(address)),
    }
}

/// `"Bob Smith - bob at ext.test" <rev@reply.test>`; without a name (or name equal to
/// the address) `"bob at ext.test" <rev@reply.test>`. Non-ASCII names are RFC 2047
/// encoded. The result is a single line without CR/LF.
pub fn reverse_alias_display(original: &Mailbox, reverse_alias: &str) -> String {
    reverse_alias_display_as(original, reverse_alias, SenderFormat::At)
}

/// [`reverse_alias_display`] in the owner's chosen format.
pub fn reverse_alias_display_as(
    original: &Mailbox,
    reverse_alias: &str,
    format: SenderFormat,
) -> String {
    let address = clean_token(&original.address);
    let joiner = if format == SenderFormat::A {
        "(a)"
    } else {
        " at "
    };
    let at = match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}{joiner}{domain}"),
        None => address.clone(),
    };
    let name = display_name(original.name.as_deref())
        .filter(|name| name.to_lowercase() != address.to_lowercase());
    let text = match (format, name) {
        (SenderFormat::NoName, _) => return format!("<{}>", clean_token(reverse_alias)),
        (SenderFormat::AtOnly, _) => at,
        (SenderFormat::NameOnly, Some(name)) => name,
        (SenderFormat::NameOnly, None) => address.clone(),
        (_, Some(name)) => format!("{name} - {at}"),
        (_, None) => at,
    };
    format!("{} <{}>", phrase(&text), clean_token(reverse_alias))
}

/// `Name: value` CRLF, folded at spaces outside quoted strings to about 78 columns.
/// Every token in `value` is bounded, so no line exceeds 998 octets.
fn header_line(name: &str, value: &str) -> Vec<u8> {
    let line = format!("{name}: {value}");
    let bytes = line.as_bytes();
    let mut points = Vec::new();
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b' ' if !quoted && i > name.len() + 1 => {
                points.push((i, bytes.get(i - 1) == Some(&b',')))
            }
            _ => {}
        }
    }
    points.push((bytes.len(), true));
    // Greedy: break before the last space that fits, preferring spaces after a comma.
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let (mut start, mut prev, mut prev_comma) = (0, 0, 0);
    for (p, after_comma) in points {
        while p - start > 78 {
            let at = if prev_comma > start { prev_comma } else { prev };
            if at <= start {
                break;
            }
            out.extend_from_slice(bytes.get(start..at).unwrap_or_default());
            out.extend_from_slice(b"\r\n");
            start = at;
        }
        prev = p;
        if after_comma {
            prev_comma = p;
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    out
}

/// Copies a field verbatim, terminating a final field that had no line ending.
fn copy_field(out: &mut Vec<u8>, field: &Field) {
    out.extend_from_slice(field.raw);
    if !field.raw.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
}

fn finish(mut out: Vec<u8>, parts: &Parts) -> Vec<u8> {
    out.extend_from_slice(if parts.sep.is_empty() {
        b"\r\n"
    } else {
        parts.sep
    });
    out.extend_from_slice(parts.body);
    out
}

/// Canonical name for the address/id fields we rewrite.
fn canonical(field: &Field) -> Option<&'static str> {
    ["From", "Reply-To", "To", "Cc", "In-Reply-To", "References"]
        .into_iter()
        .find(|n| field.is(n))
}

/// In-Reply-To/References with ids replaced by `map` and ids whose host is in
/// `drop_hosts` removed. Unchanged fields are copied verbatim; `None` when none is left.
fn rewrite_ids(
    field: &Field,
    canon: &str,
    map: &HashMap<String, String>,
    drop_hosts: &[String],
) -> Option<Vec<u8>> {
    let ids = field.ids(canon);
    let dropped = |id: &str| {
        id.rsplit_once('@')
            .is_some_and(|(_, host)| drop_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
    };
    if !ids.iter().any(|id| map.contains_key(id) || dropped(id)) {
        let mut out = Vec::new();
        copy_field(&mut out, field);
        return Some(out);
    }
    let ids: Vec<String> = ids
        .iter()
        .filter_map(|id| match map.get(id) {
            Some(new) => Some(clean_token(new)),
            None if dropped(id) => None,
            None => Some(clean_token(id)),
        })
        .filter(|id| !id.is_empty())
        .map(|id| format!("<{id}>"))
        .collect();
    (!ids.is_empty()).then(|| header_line(canon, &ids.join(" ")))
}

fn first_from(parts: &Parts) -> Option<Mailbox> {
    parts
        .fields
        .iter()
        .filter(|f| f.is("From"))
        .find_map(|f| f.mailboxes("From").into_iter().next())
}

/// The addresses of a `mailto:` URI and the query after them (`?subject=…`, or "").
fn mailto(uri: &str) -> Option<(Vec<Mailbox>, String)> {
    let rest = uri
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
        .and_then(|_| uri.get(7..))?;
    let (to, query) = rest.split_once('?').map_or((rest, ""), |(t, q)| (t, q));
    let decoded = percent_decode(to);
    let addresses = decoded
        .split(',')
        .filter_map(normalize_address)
        .map(|address| Mailbox {
            name: None,
            address,
        })
        .collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", clean_token(query))
    };
    Some((addresses, query))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Collects header facts; never fails (garbage in → mostly empty [`Inspection`]).
pub fn inspect(raw: &[u8]) -> Inspection {
    let mut ins = Inspection::default();
    let Some(parts) = split(raw) else {
        return ins;
    };
    let mut seen = HashSet::new();
    for field in &parts.fields {
        let (role, canon) = match canonical(field) {
            Some(c @ "From") => (Role::From, c),
            Some(c @ "Reply-To") => (Role::ReplyTo, c),
            Some(c @ "To") => (Role::To, c),
            Some(c @ "Cc") => (Role::Cc, c),
            Some(c @ ("In-Reply-To" | "References")) => {
                let list = if c == "In-Reply-To" {
                    &mut ins.in_reply_to
                } else {
                    &mut ins.references
                };
                if list.is_empty() {
                    *list = field
                        .ids(c)
                        .iter()
                        .map(|id| clean_token(id))
                        .filter(|id| !id.is_empty())
                        .collect();
                }
                continue;
            }
            _ if field.one_of(&CLIENT_ADDRESS_FIELDS).is_some() => {
                for mailbox in field.mailboxes("Reply-To") {
                    if seen.insert((Role::Client, mailbox.address.to_lowercase())) {
                        ins.addresses.push((Role::Client, mailbox));
                    }
                }
                continue;
            }
            _ if field.one_of(&LIST_URI_FIELDS).is_some() => {
                for uri in field.uris().unwrap_or_default() {
                    for mailbox in mailto(&uri).map(|(m, _)| m).unwrap_or_default() {
                        if seen.insert((Role::Client, mailbox.address.to_lowercase())) {
                            ins.addresses.push((Role::Client, mailbox));
                        }
                    }
                }
                continue;
            }
            _ => {
                if field.is("Message-ID") && ins.message_id.is_none() {
                    let id = field.ids("Message-ID").first().map(|id| clean_token(id));
                    ins.message_id = id.filter(|id| !id.is_empty());
                } else if field.is("Subject") && ins.subject.is_none() {
                    ins.subject = Some(field.text());
                }
                continue;
            }
        };
        for mailbox in field.mailboxes(canon) {
            if role == Role::From && ins.from.is_none() {
                ins.from = Some(mailbox.clone());
            }
            if seen.insert((role, mailbox.address.to_lowercase())) {
                ins.addresses.push((role, mailbox));
            }
        }
    }
    ins
}

/// All valid To/Cc addresses of a reply, lowercased, groups flattened, deduplicated.
pub fn reply_recipients(raw: &[u8]) -> Vec<String> {
    let (mut out, mut seen) = (Vec::new(), HashSet::new());
    let Some(parts) = split(raw) else {
        return out;
    };
    for field in parts.fields.iter().filter(|f| f.is("To") || f.is("Cc")) {
        for mailbox in field.mailboxes("To") {
            let address = mailbox.address.to_lowercase();
            if seen.insert(address.clone()) {
                out.push(address);
            }
        }
    }
    out
}

/// Case-insensitive (ASCII) byte search. An empty needle is always found.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Rewrites an inbound message for delivery to the alias owner.
pub fn rewrite_forward(raw: &[u8], ctx: &ForwardContext) -> Result<Vec<u8>, RewriteError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rewrite_forward_at(raw, ctx, now)
}

fn rewrite_forward_at(raw: &[u8], ctx: &ForwardContext, now: u64) -> Result<Vec<u8>, RewriteError> {
    let parts = split(raw).ok_or(RewriteError::Malformed)?;
    let alias = ctx.alias.to_lowercase();
    let header_from = first_from(&parts);
    let sender = header_from
        .as_ref()
        .or(ctx.original_from)
        .ok_or(RewriteError::MissingSender)?;
    let reverse = ctx
        .reverse_aliases
        .get(&sender.address.to_lowercase())
        .ok_or_else(|| RewriteError::MissingReverseAlias(sender.address.clone()))?;
    let from_line = header_line(
        "From",
        &reverse_alias_display_as(sender, reverse, ctx.sender_format),
    );

    let from_values: Vec<String> = parts
        .fields
        .iter()
        .filter(|f| f.is("From"))
        .map(|f| f.text())
        .collect();
    let original = if from_values.iter().any(|v| !v.is_empty()) {
        clean(&from_values.join(", "))
    } else {
        match sender.name.as_deref() {
            Some(name) => clean(&format!("{name} <{}>", sender.address)),
            None => clean(&sender.address),
        }
    };
    let envelope = clean_token(ctx.envelope_from);

    let mut out = Vec::with_capacity(raw.len() + 1024);
    out.extend(header_line(
        "X-Postern-Original-From",
        truncate(&original, MAX_VALUE_BYTES),
    ));
    out.extend(header_line(
        "X-Postern-Envelope-From",
        if envelope.is_empty() { "<>" } else { &envelope },
    ));
    out.extend(header_line("X-Postern-Alias", &clean_token(&alias)));

    let mut from_done = false;
    let mut omitted = 0usize;
    let reverse_of = |m: &Mailbox| {
        ctx.reverse_aliases
            .get(&m.address.to_lowercase())
            .map(|rev| reverse_alias_display_as(m, rev, ctx.sender_format))
    };
    for field in &parts.fields {
        if field.is_in(FORWARD_DROP) {
            continue;
        }
        if let Some(name) = field.one_of(&CLIENT_ADDRESS_FIELDS) {
            let items: Vec<String> = field
                .mailboxes("Reply-To")
                .iter()
                .filter_map(reverse_of)
                .collect();
            if !items.is_empty() {
                out.extend(header_line(name, &items.join(", ")));
            }
            continue;
        }
        if let Some(name) = field.one_of(&LIST_URI_FIELDS) {
            match field.uris() {
                Some(uris) if uris.iter().any(|u| mailto(u).is_some()) => {
                    let kept: Vec<String> = uris
                        .iter()
                        .filter_map(|uri| match mailto(uri) {
                            Some((addresses, query)) => {
                                let revs = addresses
                                    .iter()
                                    .map(|m| ctx.reverse_aliases.get(&m.address.to_lowercase()))
                                    .collect::<Option<Vec<_>>>()
                                    .filter(|r| !r.is_empty())?;
                                let revs: Vec<String> =
                                    revs.iter().map(|r| clean_token(r)).collect();
                                Some(format!("<mailto:{}{query}>", revs.join(",")))
                            }
                            None => Some(format!("<{}>", clean_token(uri))),
                        })
                        .collect();
                    if !kept.is_empty() {
                        out.extend(header_line(name, &kept.join(", ")));
                    }
                }
                _ => copy_field(&mut out, field),
            }
            continue;
        }
        match canonical(field) {
            Some("From") => {
                if !from_done {
                    out.extend_from_slice(&from_line);
                    from_done = true;
                }
            }
            Some(canon @ ("In-Reply-To" | "References")) => {
                out.extend(rewrite_ids(field, canon, ctx.restore_ids, &[]).unwrap_or_default());
            }
            Some(canon) => {
                let mut seen = HashSet::new();
                let items: Vec<String> = field
                    .mailboxes(canon)
                    .into_iter()
                    .filter(|m| seen.insert(m.address.to_lowercase()))
                    .filter_map(|m| {
                        let key = m.address.to_lowercase();
                        if key == alias {
                            Some(name_addr(m.name.as_deref(), &m.address))
                        } else {
                            let shown = reverse_of(&m);
                            omitted += usize::from(shown.is_none());
                            shown
                        }
                    })
                    .collect();
                if !items.is_empty() {
                    out.extend(header_line(canon, &items.join(", ")));
                }
            }
            None if ctx.warning && field.is("Subject") => {
                let subject = format!("{WARNING_PREFIX}{}", field.text());
                out.extend(header_line("Subject", &unstructured(&subject)));
            }
            None => copy_field(&mut out, field),
        }
    }
    if !from_done {
        out.extend_from_slice(&from_line);
    }
    if ctx.warning {
        if !parts.fields.iter().any(|f| f.is("Subject")) {
            out.extend(header_line("Subject", WARNING_PREFIX.trim_end()));
        }
        out.extend(header_line(
            "X-Postern-Warning",
            "the sender's domain asks for quarantine, and this message fails its DMARC check: \
             it may not come from who it claims",
        ));
    }
    if omitted > 0 {
        // Reply-all must never reach someone without a reverse alias: they are left out,
        // and the owner is told how many.
        out.extend(header_line(
            "X-Postern-Omitted-Recipients",
            &format!("{omitted} address(es) left out of To/Cc/Reply-To: no reverse alias"),
        ));
    }
    if !parts.fields.iter().any(|f| f.is("Date")) {
        out.extend(header_line("Date", &rfc5322_date(now)));
    }
    let forward = finish(out, &parts);
    if ctx.warning {
        // The body says it too, where the reader looks (signed mail excepted).
        return Ok(crate::banner::add(&forward));
    }
    Ok(forward)
}

/// Rewrites the owner's reply so that it goes out from the alias to the real contacts.
pub fn rewrite_reply(raw: &[u8], ctx: &ReplyContext) -> Result<Vec<u8>, RewriteError> {
    let parts = split(raw).ok_or(RewriteError::Malformed)?;
    let alias = ctx.alias.to_lowercase();
    let alias_host = alias.rsplit_once('@').map_or("", |(_, h)| h);
    // The owner's mailbox domains (from From/Sender/Reply-To): unmapped ids on them are
    // removed from References, and any other copied field mentioning them is dropped.
    let mut owner_hosts: Vec<String> = Vec::new();
    if let Some((_, host)) = ctx.mailbox.to_lowercase().rsplit_once('@')
        && host != alias_host
    {
        owner_hosts.push(host.to_string());
    }
    for field in &parts.fields {
        if let Some(canon) = ["From", "Sender", "Reply-To"]
            .into_iter()
            .find(|n| field.is(n))
        {
            for mailbox in field.mailboxes(canon) {
                let host = mailbox.address.rsplit_once('@').map_or("", |(_, h)| h);
                if host != alias_host && !owner_hosts.iter().any(|h| h == host) {
                    owner_hosts.push(host.to_string());
                }
            }
        }
    }
    let leaks = |b: &[u8]| owner_hosts.iter().any(|h| contains_bytes(b, h.as_bytes()));

    let mut out = Vec::with_capacity(raw.len() + 512);
    out.extend(header_line("From", &name_addr(ctx.alias_name, &alias)));
    out.extend(header_line(
        "Message-ID",
        &format!("<{}>", clean_token(ctx.new_message_id)),
    ));
    for field in &parts.fields {
        if field.is_in(REPLY_DROP) {
            continue;
        }
        match canonical(field) {
            Some("From" | "Reply-To") => {}
            Some(canon @ ("In-Reply-To" | "References")) => {
                let ids = rewrite_ids(field, canon, ctx.map_ids, &owner_hosts);
                out.extend(ids.filter(|b| !leaks(b)).unwrap_or_default());
            }
            Some(canon) => {
                let mut items = Vec::new();
                let mut seen = HashSet::new();
                for mailbox in field.mailboxes(canon) {
                    let key = mailbox.address.to_lowercase();
                    if key == alias || !seen.insert(key.clone()) {
                        continue;
                    }
                    let contact = ctx
                        .contacts
                        .get(&key)
                        .ok_or(RewriteError::UnknownRecipient(mailbox.address))?;
                    items.push(name_addr(contact.name.as_deref(), &contact.address));
                }
                if !items.is_empty() {
                    out.extend(header_line(canon, &items.join(", ")));
                }
            }
            // Subject, Thread-Topic and Content-* are the owner's own content.
            None if leaks(field.raw) && !field.is_in("Subject Thread-Topic Content-") => {}
            None => copy_field(&mut out, field),
        }
    }
    Ok(finish(out, &parts))
}

/// `Thu, 01 Jan 1970 00:00:00 +0000` for seconds since the Unix epoch (UTC).
pub fn rfc5322_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), shifted so that years start in March.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = DAYS
        .get(usize::try_from(days.rem_euclid(7)).unwrap_or(0))
        .unwrap_or(&"Thu");
    let month_name = MONTHS
        .get(usize::try_from(month - 1).unwrap_or(0))
        .unwrap_or(&"Jan");
    format!(
        "{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/rewrite/",
                $name,
                ".eml"
            ))
            .as_slice()
        };
    }

    const ALIAS: &str = "shop@alias.test";
    const NOW: u64 = 1_700_000_000;

    fn mb(name: Option<&str>, address: &str) -> Mailbox {
        Mailbox {
            name: name.map(str::to_string),
            address: address.to_string(),
        }
    }

    /// The caller's first pass: a reverse alias `ra-<local>@reply.test` per external address.
    fn reverse_map(raw: &[u8]) -> HashMap<String, String> {
        let addresses = inspect(raw)
            .addresses
            .into_iter()
            .map(|(_, m)| m.address.to_lowercase());
        addresses
            .filter(|a| a != ALIAS)
            .map(|a| {
                let rev = format!("ra-{}@reply.test", a.split('@').next().unwrap_or_default());
                (a, rev)
            })
            .collect()
    }

    fn forward_with(
        raw: &[u8],
        fallback: Option<&Mailbox>,
        restore: &[(&str, &str)],
    ) -> Result<Vec<u8>, RewriteError> {
        let mut map = reverse_map(raw);
        if let Some(m) = fallback {
            map.insert(m.address.clone(), "ra-env@reply.test".into());
        }
        let restore: HashMap<String, String> = restore
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ctx = ForwardContext {
            alias: ALIAS,
            envelope_from: "bounce@ext.test",
            original_from: fallback,
            reverse_aliases: &map,
            restore_ids: &restore,
            sender_format: SenderFormat::At,
            warning: false,
        };
        rewrite_forward_at(raw, &ctx, NOW)
    }

    fn forward(raw: &[u8]) -> Vec<u8> {
        forward_with(raw, None, &[]).unwrap()
    }

    /// (header block, body) of a message.
    fn head_body(raw: &[u8]) -> (String, &[u8]) {
        let parts = split(raw).unwrap();
        let head_len = raw.len() - parts.body.len() - parts.sep.len();
        (
            String::from_utf8(raw[..head_len].to_vec()).unwrap(),
            parts.body,
        )
    }

    fn reply_ctx_parts() -> (HashMap<String, Mailbox>, HashMap<String, String>) {
        let contacts = HashMap::from([
            (
                "ra-news@reply.test".to_string(),
                mb(Some("Shop Team"), "news@ext.test"),
            ),
            (
                "ra-friend@reply.test".to_string(),
                mb(None, "friend@other.test"),
            ),
        ]);
        let ids = HashMap::from([("prev-5@real.test".to_string(), "r5@alias.test".to_string())]);
        (contacts, ids)
    }

    fn reply(
        raw: &[u8],
        contacts: &HashMap<String, Mailbox>,
        ids: &HashMap<String, String>,
    ) -> Result<Vec<u8>, RewriteError> {
        let ctx = ReplyContext {
            alias: ALIAS,
            mailbox: "me@real.test",
            alias_name: Some("Shop"),
            contacts,
            new_message_id: "new-1@alias.test",
            map_ids: ids,
        };
        rewrite_reply(raw, &ctx)
    }

    #[test]
    fn sender_formats() {
        let bob = Mailbox {
            name: Some("Bob Smith".into()),
            address: "bob@ext.test".into(),
        };
        let show = |f| reverse_alias_display_as(&bob, "r@reply.test", f);
        assert_eq!(
            show(SenderFormat::At),
            "\"Bob Smith - bob at ext.test\" <r@reply.test>"
        );
        assert_eq!(
            show(SenderFormat::A),
            "\"Bob Smith - bob(a)ext.test\" <r@reply.test>"
        );
        assert_eq!(show(SenderFormat::NameOnly), "\"Bob Smith\" <r@reply.test>");
        assert_eq!(
            show(SenderFormat::AtOnly),
            "\"bob at ext.test\" <r@reply.test>"
        );
        assert_eq!(show(SenderFormat::NoName), "<r@reply.test>");
    }

    #[test]
    fn forward_multipart_snapshot() {
        let raw = fixture!("multipart");
        let out = forward_with(raw, None, &[("r1@alias.test", "orig-1@real.test")]).unwrap();
        let (head, body) = head_body(&out);
        let expected = "X-Postern-Original-From: Shop Team <News@EXT.test>\r\n\
            X-Postern-Envelope-From: bounce@ext.test\r\n\
            X-Postern-Alias: shop@alias.test\r\n\
            Received: from mx.ext.test (mx.ext.test [203.0.113.5])\r\n\
            \tby mx.alias.test with ESMTPS id 1; Mon, 1 Jan 2024 10:00:00 +0000\r\n\
            Authentication-Results: mx.alias.test; spf=pass smtp.mailfrom=ext.test\r\n\
            ARC-Seal: i=1; a=rsa-sha256; cv=none\r\n\
            From: \"Shop Team - News at ext.test\" <ra-news@reply.test>\r\n\
            To: \"Me\" <shop@alias.test>\r\n\
            Cc: \"friend at other.test\" <ra-friend@reply.test>\r\n\
            Reply-To: \"support at ext.test\" <ra-support@reply.test>\r\n\
            Subject: Your order\r\n\
            Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
            Message-ID: <order-1@ext.test>\r\n\
            In-Reply-To: <orig-1@real.test>\r\n\
            References: <thread-0@ext.test> <orig-1@real.test>\r\n\
            MIME-Version: 1.0\r\n\
            List-Unsubscribe: <mailto:ra-unsub@reply.test>\r\n\
            X-Campaign: 42\r\n\
            Content-Type: multipart/mixed; boundary=\"outer\"\r\n";
        assert_eq!(head, expected);
        assert_eq!(body, head_body(raw).1);
    }

    #[test]
    fn inspect_collects_header_facts() {
        let ins = inspect(fixture!("multipart"));
        assert_eq!(ins.from, Some(mb(Some("Shop Team"), "News@ext.test")));
        let roles: Vec<(Role, &str)> = ins
            .addresses
            .iter()
            .map(|(r, m)| (*r, m.address.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                (Role::From, "News@ext.test"),
                (Role::To, "shop@alias.test"),
                (Role::Cc, "friend@other.test"),
                (Role::ReplyTo, "support@ext.test"),
                (Role::Client, "unsub@ext.test"),
            ]
        );
        assert_eq!(ins.message_id.as_deref(), Some("order-1@ext.test"));
        assert_eq!(ins.in_reply_to, ["r1@alias.test"]);
        assert_eq!(ins.references, ["thread-0@ext.test", "r1@alias.test"]);
        assert_eq!(ins.subject.as_deref(), Some("Your order"));
        assert_eq!(
            inspect(fixture!("encoded_name")).subject.as_deref(),
            Some("Grüße")
        );
        assert_eq!(
            inspect(fixture!("injection")).subject.as_deref(),
            Some("hi X-Injected: 1")
        );
        assert_eq!(inspect(b"garbage"), Inspection::default());
    }

    #[test]
    fn eight_bit_and_binary_body_is_byte_identical() {
        let raw = fixture!("eightbit");
        let out = forward(raw);
        let (head, body) = head_body(&out);
        assert_eq!(body, head_body(raw).1);
        assert!(contains_bytes(body, b"Caf\xe9 cr\xe8me") && contains_bytes(body, &[0, 1, 2, 3]));
        assert!(head.contains("From: =?utf-8?b?RnJhbsOnb2lzIC0gZnJhbmNvaXMgYXQgZXh0LnRlc3Q=?=\r\n <ra-francois@reply.test>\r\n"));
        assert!(
            head.contains("Subject: café\r\n"),
            "raw UTF-8 header copied verbatim"
        );
        assert!(
            head.ends_with("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"),
            "missing Date added"
        );
    }

    #[test]
    fn non_ascii_names_are_encoded() {
        for (raw, word, name) in [
            (
                fixture!("encoded_name"),
                "SsO2cmcgTcO8bGxlciAtIGpvcmcgYXQgZXh0LnRlc3Q=",
                "Jörg Müller - jorg at ext.test",
            ),
            (
                fixture!("utf8_name"),
                "Wm/DqyDDnG7Dr2NvZGUgLSB6b2UgYXQgZXh0LnRlc3Q=",
                "Zoë Ünïcode - zoe at ext.test",
            ),
        ] {
            let out = forward(raw);
            let (head, _) = head_body(&out);
            let head = head.replace("\r\n ", " ");
            let from = head.lines().find(|l| l.starts_with("From: ")).unwrap();
            assert!(
                from.starts_with(&format!("From: =?utf-8?b?{word}?= <ra-")),
                "{from}"
            );
            assert_eq!(inspect(&out).from.unwrap().name.as_deref(), Some(name));
        }
        let out = forward(fixture!("encoded_name"));
        assert!(
            head_body(&out)
                .0
                .contains("X-Postern-Original-From: Jörg Müller <jorg@ext.test>\r\n")
        );
        assert!(
            head_body(&out)
                .0
                .contains("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n")
        );
    }

    #[test]
    fn long_folded_to_is_mapped_and_refolded() {
        let raw = fixture!("long_to");
        let out = forward(raw);
        let (head, _) = head_body(&out);
        let to: Vec<String> = inspect(&out)
            .addresses
            .into_iter()
            .filter(|(r, _)| *r == Role::To)
            .map(|(_, m)| m.address)
            .collect();
        let local = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
        let mut expected: Vec<String> =
            local.iter().map(|l| format!("ra-{l}@reply.test")).collect();
        expected.push(ALIAS.into());
        expected.extend(
            ["heidi", "ivan", "judy"]
                .iter()
                .map(|l| format!("ra-{l}@reply.test")),
        );
        assert_eq!(to, expected);
        assert!(head.contains("To: \"Alice A. - alice at ext.test\" <ra-alice@reply.test>,"));
        assert!(
            head.split("\r\n ")
                .skip(1)
                .all(|l| l.starts_with('"') || l.starts_with('<')),
            "{head}"
        );
        for bad in ["not-an-address", "two.test", "localhost"] {
            assert!(!head.contains(bad), "{bad}");
        }
        assert!(head.split("\r\n").all(|l| l.len() <= 78), "{head}");
    }

    #[test]
    fn missing_from_uses_envelope_fallback_or_fails() {
        let raw = fixture!("no_from");
        let env = mb(Some("Env Sender"), "env@ext.test");
        let out = forward_with(raw, Some(&env), &[]).unwrap();
        let (head, _) = head_body(&out);
        assert!(head.starts_with("X-Postern-Original-From: Env Sender <env@ext.test>\r\n"));
        assert!(head.ends_with("From: \"Env Sender - env at ext.test\" <ra-env@reply.test>\r\n"));
        assert_eq!(
            forward_with(raw, None, &[]),
            Err(RewriteError::MissingSender)
        );
        let ctx = ForwardContext {
            alias: ALIAS,
            envelope_from: "",
            original_from: None,
            reverse_aliases: &HashMap::new(),
            restore_ids: &HashMap::new(),
            sender_format: SenderFormat::At,
            warning: false,
        };
        let err = rewrite_forward(fixture!("multi_from"), &ctx);
        assert_eq!(
            err,
            Err(RewriteError::MissingReverseAlias("first@ext.test".into()))
        );
    }

    #[test]
    fn multiple_from_headers_collapse_to_one() {
        let out = forward(fixture!("multi_from"));
        let (head, _) = head_body(&out);
        assert_eq!(head.matches("\r\nFrom:").count(), 1);
        assert!(head.contains("From: \"first at ext.test\" <ra-first@reply.test>\r\n"));
        assert!(
            head.contains("X-Postern-Original-From: first@ext.test, Second <second@ext.test>\r\n")
        );
    }

    #[test]
    fn groups_are_flattened_and_invalid_addresses_dropped() {
        let out = forward(fixture!("groups"));
        let (head, _) = head_body(&out);
        let expected = "X-Postern-Original-From: a@x.test\r\n\
            X-Postern-Envelope-From: bounce@ext.test\r\n\
            X-Postern-Alias: shop@alias.test\r\n\
            From: \"a at x.test\" <ra-a@reply.test>\r\n\
            Cc: \"a at x.test\" <ra-a@reply.test>, \"b at y.test\" <ra-b@reply.test>,\r\n <shop@alias.test>\r\n\
            Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n";
        assert_eq!(head, expected);
    }

    #[test]
    fn display_names_cannot_inject_headers() {
        let out = forward(fixture!("injection"));
        let (head, _) = head_body(&out);
        assert!(
            head.contains("From: \"evil Bcc: x@y - evil at ext.test\" <ra-evil@reply.test>\r\n")
        );
        assert!(head.contains("To: \"Bob \\\"The Builder\\\" \\\\ Smith - bob at ext.test\" <ra-bob@reply.test>,\r\n <shop@alias.test>\r\n"));
        assert!(
            head.contains(
                "Cc: \"x Bcc: victim@y.test - carl at ext.test\" <ra-carl@reply.test>\r\n"
            )
        );
        assert!(head.contains("X-Postern-Original-From: evil Bcc: x@y <evil@ext.test>\r\n"));
        for line in head.split("\r\n") {
            assert!(
                !line.starts_with("Bcc") && !line.starts_with("X-Injected"),
                "{line}"
            );
            assert!(!line.contains('\r') && !line.contains('\n'));
        }
    }

    #[test]
    fn reverse_alias_display_forms() {
        let bob =
            |name: Option<&str>| reverse_alias_display(&mb(name, "bob@ext.test"), "rev@reply.test");
        assert_eq!(
            bob(Some("Bob Smith")),
            "\"Bob Smith - bob at ext.test\" <rev@reply.test>"
        );
        assert_eq!(bob(None), "\"bob at ext.test\" <rev@reply.test>");
        assert_eq!(
            bob(Some(" BOB@ext.test ")),
            "\"bob at ext.test\" <rev@reply.test>"
        );
        assert_eq!(
            bob(Some("a\"b\\c")),
            "\"a\\\"b\\\\c - bob at ext.test\" <rev@reply.test>"
        );
        assert_eq!(
            bob(Some("evil\r\nBcc: x@y")),
            "\"evil Bcc: x@y - bob at ext.test\" <rev@reply.test>"
        );
        let rev = reverse_alias_display(&mb(None, "bob@ext.test"), "rev@reply.test\r\nBcc: x@y");
        assert_eq!(rev, "\"bob at ext.test\" <rev@reply.testBcc:x@y>");
        assert_eq!(
            name_addr(Some("a\r\nBcc: x"), "c@d.test"),
            "\"a Bcc: x\" <c@d.test>"
        );
        assert_eq!(
            name_addr(Some("Läden"), ALIAS),
            "=?utf-8?b?TMOkZGVu?= <shop@alias.test>"
        );
        assert_eq!(name_addr(Some(" \t"), ALIAS), "<shop@alias.test>");
        let long = bob(Some(&"ü".repeat(5000)));
        assert!(!long.contains('\r') && !long.contains('\n') && long.len() < 998);
        assert!(long.split(' ').all(|w| w.len() <= 75), "{long}");
        let line = header_line("From", &long);
        assert!(
            line.split(|b| *b == b'\n').all(|l| l.len() <= 79),
            "{}",
            String::from_utf8_lossy(&line)
        );
    }

    #[test]
    fn reply_hides_the_owner_mailbox() {
        let raw = fixture!("reply");
        let (contacts, ids) = reply_ctx_parts();
        let out = reply(raw, &contacts, &ids).unwrap();
        let (head, body) = head_body(&out);
        let expected = "From: \"Shop\" <shop@alias.test>\r\n\
            Message-ID: <new-1@alias.test>\r\n\
            To: \"Shop Team\" <news@ext.test>\r\n\
            Cc: <friend@other.test>\r\n\
            Subject: Re: Your order\r\n\
            Date: Tue, 2 Jan 2024 11:00:00 +0100\r\n\
            In-Reply-To: <order-1@ext.test>\r\n\
            References: <thread-0@ext.test> <order-1@ext.test> <r5@alias.test>\r\n\
            MIME-Version: 1.0\r\n\
            Content-Type: text/plain; charset=utf-8\r\n";
        assert_eq!(head, expected);
        for secret in [
            "me@real.test",
            "real.test",
            "192.0.2.44",
            "Thunderbird",
            "laptop",
        ] {
            assert!(
                !contains_bytes(head.as_bytes(), secret.as_bytes()),
                "{secret}"
            );
        }
        assert_eq!(body, head_body(raw).1);
        let ctx = ReplyContext {
            alias: ALIAS,
            mailbox: "me@real.test",
            alias_name: None,
            contacts: &contacts,
            new_message_id: "x@alias.test",
            map_ids: &ids,
        };
        assert!(
            rewrite_reply(raw, &ctx)
                .unwrap()
                .starts_with(b"From: <shop@alias.test>\r\n")
        );
    }

    #[test]
    fn reply_to_unknown_recipient_fails() {
        let raw = fixture!("reply");
        let recipients = reply_recipients(raw);
        assert_eq!(
            recipients,
            [
                "ra-news@reply.test",
                "ra-friend@reply.test",
                "shop@alias.test"
            ]
        );
        let (mut contacts, ids) = reply_ctx_parts();
        contacts.remove("ra-friend@reply.test");
        assert_eq!(
            reply(raw, &contacts, &ids),
            Err(RewriteError::UnknownRecipient(
                "ra-friend@reply.test".into()
            ))
        );
    }

    #[test]
    fn header_only_messages() {
        let out = forward(fixture!("header_only"));
        assert!(out.ends_with(b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\n"));
        let out = forward(b"From: a@ext.test\r\nTo: shop@alias.test");
        assert!(out.ends_with(
            b"\r\nTo: <shop@alias.test>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n"
        ));
    }

    #[test]
    fn bare_lf_message_keeps_copied_lines_and_body() {
        let raw = fixture!("bare_lf");
        let out = forward(raw);
        let expected_head = "X-Postern-Original-From: Lf <lf@ext.test>\r\n\
            X-Postern-Envelope-From: bounce@ext.test\r\n\
            X-Postern-Alias: shop@alias.test\r\n\
            From: \"Lf - lf at ext.test\" <ra-lf@reply.test>\r\n\
            To: <shop@alias.test>\r\n\
            Received: from x\n by y\n\
            Subject: unix\n\
            Date: Tue, 2 Jan 2024 10:00:00 +0000\n\
            \nline one\nline two\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected_head);
    }

    #[test]
    fn malformed_input_is_rejected() {
        let (contacts, ids) = reply_ctx_parts();
        for raw in [
            &b""[..],
            b"\r\n\r\nbody",
            b"no colon here\r\n\r\n",
            b" folded\r\nTo: a@b.test\r\n\r\n",
            b"Bad Name: x\r\n\r\n",
        ] {
            assert_eq!(forward_with(raw, None, &[]), Err(RewriteError::Malformed));
            assert_eq!(reply(raw, &contacts, &ids), Err(RewriteError::Malformed));
            assert_eq!(inspect(raw), Inspection::default());
            assert!(reply_recipients(raw).is_empty());
        }
    }

    #[test]
    fn untrusted_input_never_panics_and_lines_stay_bounded() {
        let (contacts, ids) = reply_ctx_parts();
        let huge = format!(
            "From: \"{}\" <a@ext.test>\r\nTo: {}\r\n\r\n",
            "x".repeat(3000),
            "é".repeat(2000)
        );
        let mut inputs: Vec<Vec<u8>> = vec![
            huge.into_bytes(),
            b"From: \"unterminated <a@b.test>\r\n\r\n".to_vec(),
            b"To: <<<@@@>>>, \"a@b\"@c.test, a@-x.test\r\nFrom: =?utf-8?b?!!!?= <a@b.test>\r\n\r\n"
                .to_vec(),
            b"References: <a> <b@ <c@d>\r\nIn-Reply-To: garbage\r\n\r\n".to_vec(),
        ];
        for raw in [
            fixture!("multipart"),
            fixture!("eightbit"),
            fixture!("reply"),
            fixture!("injection"),
            fixture!("bare_lf"),
        ] {
            inputs.extend((0..raw.len()).map(|n| raw[..n].to_vec()));
        }
        let env = mb(None, "env@ext.test");
        for raw in &inputs {
            let _ = inspect(raw);
            let _ = reply_recipients(raw);
            let _ = reply(raw, &contacts, &ids);
            if let Ok(out) = forward_with(raw, Some(&env), &[]) {
                let generated = &out[..out.len().min(1200)];
                assert!(
                    generated
                        .split(|b| *b == b'\n')
                        .take(4)
                        .all(|l| l.len() <= 998)
                );
            }
        }
    }

    #[test]
    fn address_validation() {
        let ok = |s: &str| normalize_address(s);
        assert_eq!(
            ok(" Bob.Smith@EXT.Test ").as_deref(),
            Some("Bob.Smith@ext.test")
        );
        assert_eq!(ok("\"a@b\"@x.test").as_deref(), Some("\"a@b\"@x.test"));
        assert_eq!(ok("user@bücher.test").as_deref(), Some("user@bücher.test"));
        for bad in [
            "",
            "a",
            "a@b",
            "@x.test",
            "a@",
            "a@@x.test",
            "a@x@y.test",
            "a b@x.test",
            "a@x..test",
            "a@-x.test",
            "a\r@x.test",
            "<a@x.test>",
            "a@x_y.test",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }

    #[test]
    fn helpers() {
        assert!(contains_bytes(b"Hello ME@Real.test", b"me@real.TEST"));
        assert!(!contains_bytes(b"me@real", b"me@real.test"));
        assert!(contains_bytes(b"", b""));
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(NOW), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
