//! Messages Postern itself writes to an owner: why a reply was not sent, why a delivery failed.

use data_encoding::BASE32_NOPAD;
use rand::RngCore;

/// A fresh, unguessable Message-ID (without brackets) on `domain`.
pub fn new_message_id(domain: &str) -> String {
    let mut bytes = [0u8; 15];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{}@{domain}",
        BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
    )
}

/// A plain-text notice from `noreply@reply_domain` to `to`.
pub fn build(reply_domain: &str, to: &str, subject: &str, text: &str) -> Vec<u8> {
    let subject: String = subject
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let subject = if subject.is_ascii() {
        subject
    } else {
        format!(
            "=?utf-8?b?{}?=",
            data_encoding::BASE64.encode(subject.as_bytes())
        )
    };
    let mut body = String::new();
    for line in text.lines() {
        // Dot-stuffing is the transport's job; keep lines CRLF-terminated and under 998 octets.
        let mut line = line.trim_end_matches('\r');
        while line.len() > 900 {
            let mut cut = 900;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            body.push_str(&line[..cut]);
            body.push_str("\r\n");
            line = &line[cut..];
        }
        body.push_str(line);
        body.push_str("\r\n");
    }
    format!(
        "From: \"Postern\" <noreply@{reply_domain}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{mid}>\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {body}",
        date = chrono::Utc::now().to_rfc2822(),
        mid = new_message_id(reply_domain),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn notice_is_well_formed() {
        let raw = super::build(
            "reply.test",
            "me@real.test",
            "Réponse non envoyée",
            "line one\nline two",
        );
        let text = String::from_utf8(raw).expect("ascii");
        assert!(text.contains("To: <me@real.test>\r\n"));
        assert!(text.contains("Subject: =?utf-8?b?"));
        assert!(text.contains("\r\n\r\n"));
        assert!(text.lines().all(|l| l.len() <= 998));
    }
}
