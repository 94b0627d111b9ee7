//! The warning banner of a forward whose sender fails a DMARC `p=quarantine` check: a line at
//! the top of the first plain-text part and of the first HTML part the reader sees (decoded,
//! changed, encoded again; attachments and attached messages untouched). A signed or encrypted
//! message (multipart/signed, multipart/encrypted, S/MIME, inline PGP) keeps its body: a
//! banner would break its signature, so it has only the subject prefix.

use std::borrow::Cow;

use crate::scrub::{
    ContentType, Encoding, delimiter_lines, field_name, field_value, fields, parse_content_type,
    split_entity, strip_eol,
};

const TEXT: &str = "WARNING: this message failed its sender's DMARC check. It may not come \
                    from who it claims to be: do not trust its links or attachments.";

const MAX_DEPTH: usize = 20;

/// `raw` with the banner added, or as it is when it is signed or encrypted.
pub fn add(raw: &[u8]) -> Vec<u8> {
    if signed_or_encrypted(raw) {
        return raw.to_vec();
    }
    let mut state = Added::default();
    entity(raw, &mut state, 0).into_owned()
}

#[derive(Default)]
struct Added {
    text: bool,
    html: bool,
}

fn signed_or_encrypted(raw: &[u8]) -> bool {
    let (head, _, body) = split_entity(raw);
    let top = fields(head)
        .into_iter()
        .find(|f| field_name(f).eq_ignore_ascii_case(b"Content-Type"))
        .and_then(|f| parse_content_type(field_value(f)));
    let signed_type = top.as_ref().is_some_and(|ct| {
        matches!(
            (ct.kind.as_str(), ct.subtype.as_str()),
            ("multipart", "signed" | "encrypted")
                | (
                    "application",
                    "pkcs7-mime" | "x-pkcs7-mime" | "pgp-encrypted"
                )
        )
    });
    // Inline PGP: the body itself begins with the armour (not a quote of it further down).
    let inline_pgp = {
        let start = body
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        let rest = body.get(start..).unwrap_or_default();
        rest.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----")
            || rest.starts_with(b"-----BEGIN PGP MESSAGE-----")
    };
    signed_type || inline_pgp
}

fn entity<'a>(raw: &'a [u8], state: &mut Added, depth: usize) -> Cow<'a, [u8]> {
    if depth > MAX_DEPTH || (state.text && state.html) {
        return Cow::Borrowed(raw);
    }
    let (head, sep, body) = split_entity(raw);
    let mut content_type: Option<ContentType> = None;
    let mut encoding = Encoding::Identity;
    let mut attachment = false;
    for field in fields(head) {
        let (name, value) = (field_name(field), field_value(field));
        if name.eq_ignore_ascii_case(b"Content-Type") {
            content_type = parse_content_type(value);
        } else if name.eq_ignore_ascii_case(b"Content-Transfer-Encoding") {
            encoding = Encoding::of(value);
        } else if name.eq_ignore_ascii_case(b"Content-Disposition") {
            attachment = String::from_utf8_lossy(value)
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("attachment");
        }
    }
    let (kind, subtype) = content_type
        .as_ref()
        .map_or(("text", "plain"), |c| (c.kind.as_str(), c.subtype.as_str()));
    let new_body: Option<Vec<u8>> = match (kind, subtype) {
        ("multipart", _) => content_type
            .as_ref()
            .and_then(|c| c.boundary.as_deref())
            .and_then(|b| multipart(body, b.as_bytes(), state, depth)),
        ("text", "plain") if !attachment && !state.text => {
            state.text = true;
            banner(body, encoding, false)
        }
        ("text", "html") if !attachment && !state.html => {
            state.html = true;
            banner(body, encoding, true)
        }
        _ => None,
    };
    match new_body {
        None => Cow::Borrowed(raw),
        Some(new) => {
            let mut out = Vec::with_capacity(raw.len() + 256);
            out.extend_from_slice(head);
            out.extend_from_slice(sep);
            out.extend_from_slice(&new);
            Cow::Owned(out)
        }
    }
}

fn multipart(body: &[u8], boundary: &[u8], state: &mut Added, depth: usize) -> Option<Vec<u8>> {
    let lines = delimiter_lines(body, boundary);
    let mut out = Vec::with_capacity(body.len() + 256);
    let mut changed = false;
    out.extend_from_slice(body.get(..lines.first()?.0).unwrap_or_default());
    for (i, &(start, end)) in lines.iter().enumerate() {
        out.extend_from_slice(body.get(start..end).unwrap_or_default());
        let next = lines.get(i + 1).map_or(body.len(), |l| l.0);
        let part = body.get(end..next).unwrap_or_default();
        if lines.get(i + 1).is_none() {
            out.extend_from_slice(part);
            continue;
        }
        let (content, eol) = strip_eol(part);
        match entity(content, state, depth + 1) {
            Cow::Borrowed(_) => out.extend_from_slice(part),
            Cow::Owned(new) => {
                changed = true;
                out.extend_from_slice(&new);
                out.extend_from_slice(eol);
            }
        }
    }
    changed.then_some(out)
}

/// The part's content with the banner first, encoded as it was.
fn banner(body: &[u8], encoding: Encoding, html: bool) -> Option<Vec<u8>> {
    let decoded = encoding.decode(body)?;
    let mut content = Vec::with_capacity(decoded.len() + 300);
    if html {
        let notice = format!(
            "<div style=\"border:2px solid #b00020;background:#fff4f4;color:#000;padding:8px;\
             margin:0 0 12px 0;font-family:sans-serif\"><strong>{TEXT}</strong></div>"
        );
        // Right after <body …> when there is one, else first.
        let lower = decoded.to_ascii_lowercase();
        let at = lower
            .windows(5)
            .position(|w| w == b"<body")
            .and_then(|start| {
                lower[start..]
                    .iter()
                    .position(|&b| b == b'>')
                    .map(|e| start + e + 1)
            })
            .unwrap_or(0);
        content.extend_from_slice(&decoded[..at]);
        content.extend_from_slice(notice.as_bytes());
        content.extend_from_slice(&decoded[at..]);
    } else {
        content.extend_from_slice(TEXT.as_bytes());
        content.extend_from_slice(b"\r\n\r\n");
        content.extend_from_slice(&decoded);
    }
    Some(encoding.encode(&content))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(raw: &[u8], needle: &str) -> bool {
        raw.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn plain_and_html_parts_get_it_once_attachments_never() {
        let raw = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\
Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--a\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGh0bWw+PGJvZHkgY2xhc3M9eD5oaTwvYm9keT48L2h0bWw+\r\n--a--\r\n\
--m\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=x.txt\r\n\r\nnotes\r\n--m--\r\n";
        let out = add(raw);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(
            text.matches("WARNING: this message failed").count(),
            1,
            "{text}"
        );
        assert!(has(&out, "\r\n\r\nWARNING: this message failed"));
        assert!(
            has(&out, "\r\n\r\nnotes\r\n"),
            "the attachment is untouched"
        );
        // The HTML part, decoded, has it right after <body>.
        let b64 = text
            .split("base64\r\n\r\n")
            .nth(1)
            .and_then(|r| r.split("\r\n--a--").next())
            .expect("html part");
        let html = Encoding::Base64.decode(b64.as_bytes()).expect("base64");
        let html = String::from_utf8_lossy(&html);
        assert!(html.starts_with("<html><body class=x><div"), "{html}");
        assert!(html.ends_with("hi</body></html>"), "{html}");
    }

    #[test]
    fn signed_and_encrypted_messages_keep_their_body() {
        for raw in [
            &b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=s\r\n\r\n--s\r\n\r\nx\r\n--s--\r\n"[..],
            b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIAGCSqG\r\n",
            b"Content-Type: text/plain\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n",
        ] {
            assert_eq!(add(raw), raw.to_vec());
        }
    }

    #[test]
    fn a_quoted_signature_further_down_does_not_hide_the_banner() {
        let raw = b"Content-Type: text/plain\r\n\r\nPay now.\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nfake\r\n";
        assert!(has(&add(raw), "WARNING: this message failed"));
    }

    #[test]
    fn a_single_part_and_quoted_printable() {
        let out =
            add(b"Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("WARNING: this message failed"), "{text}");
        assert!(text.contains("caf=C3=A9"), "{text}");
    }
}
