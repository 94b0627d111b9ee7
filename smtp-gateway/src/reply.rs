use std::borrow::Cow;
use std::fmt;

use postern_domain::pipeline::{RcptDecision, Receipt};

/// One SMTP reply. Every reply the server sends has a named constructor here, and every
/// 2xx/4xx/5xx reply after the greeting carries an enhanced status code (RFC 2034, RFC 3463).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<&'static str>,
    lines: Vec<Cow<'static, str>>,
}

impl Reply {
    fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    fn without_status(code: u16, lines: Vec<Cow<'static, str>>) -> Self {
        Self {
            code,
            status: None,
            lines,
        }
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, such as `5.1.1`.
    pub fn status(&self) -> Option<&'static str> {
        self.status
    }

    /// A 4xx reply: the client should try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// A 5xx reply: the client should not retry.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// Appends the wire form (CRLF-terminated lines) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (index, line) in self.lines.iter().enumerate() {
            let separator = if index == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{separator}", self.code).as_bytes());
            if let Some(status) = self.status {
                out.extend_from_slice(status.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    // --- Connection ---

    /// `220 {hostname} ESMTP Postern`: the greeting, customarily without an enhanced code.
    pub fn greeting(hostname: &str) -> Self {
        Self::without_status(
            220,
            vec![format!("{} ESMTP Postern", printable(hostname)).into()],
        )
    }

    pub fn too_many_connections() -> Self {
        Self::new(421, "4.7.0", "Too many connections, try again later")
    }

    pub fn timeout() -> Self {
        Self::new(421, "4.4.2", "Timeout, closing connection")
    }

    pub fn too_many_connections_from_client() -> Self {
        Self::new(
            421,
            "4.7.0",
            "Too many connections from your address, try again later",
        )
    }

    pub fn too_many_connections_per_minute() -> Self {
        Self::new(
            421,
            "4.7.0",
            "Too many new connections from your address, try again later",
        )
    }

    pub fn too_many_commands() -> Self {
        Self::new(421, "4.7.0", "Too many commands, closing connection")
    }

    pub fn session_too_long() -> Self {
        Self::new(421, "4.7.0", "Session too long, closing connection")
    }

    pub fn too_many_errors() -> Self {
        Self::new(421, "4.7.0", "Too many errors, closing connection")
    }

    pub fn quit() -> Self {
        Self::new(221, "2.0.0", "Bye")
    }

    // --- EHLO / HELO ---

    /// The multi-line EHLO reply; capability lines customarily carry no enhanced code.
    pub fn ehlo(hostname: &str, max_message_size: usize, starttls: bool) -> Self {
        let mut lines: Vec<Cow<'static, str>> = vec![
            printable(hostname).into(),
            "PIPELINING".into(),
            format!("SIZE {max_message_size}").into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if starttls {
            lines.push("STARTTLS".into());
        }
        Self::without_status(250, lines)
    }

    pub fn helo(hostname: &str) -> Self {
        Self::new(250, "2.0.0", printable(hostname))
    }

    // --- Transaction ---

    pub fn ok() -> Self {
        Self::new(250, "2.0.0", "OK")
    }

    pub fn reset() -> Self {
        Self::new(250, "2.0.0", "Reset")
    }

    pub fn sender_ok() -> Self {
        Self::new(250, "2.1.0", "Sender OK")
    }

    pub fn recipient_ok() -> Self {
        Self::new(250, "2.1.5", "Recipient OK")
    }

    /// `354`: an intermediate reply, which RFC 2034 leaves without an enhanced code.
    pub fn start_data() -> Self {
        Self::without_status(354, vec!["End data with <CR><LF>.<CR><LF>".into()])
    }

    pub fn queued(id: &str) -> Self {
        Self::new(250, "2.0.0", format!("Ok: queued as {}", printable(id)))
    }

    pub fn unknown_recipient() -> Self {
        Self::new(550, "5.1.1", "Recipient address rejected: no such alias")
    }

    pub fn relay_denied() -> Self {
        Self::new(550, "5.7.1", "Relay access denied")
    }

    pub fn temp_failure() -> Self {
        Self::new(451, "4.3.0", "Temporary failure, please try again later")
    }

    pub fn malformed_message() -> Self {
        Self::new(554, "5.6.0", "Malformed message")
    }

    pub fn too_big() -> Self {
        Self::new(552, "5.3.4", "Message too big")
    }

    pub fn too_many_recipients() -> Self {
        Self::new(452, "4.5.3", "Too many recipients")
    }

    pub fn no_valid_recipients() -> Self {
        Self::new(554, "5.5.1", "No valid recipients")
    }

    // --- Other verbs ---

    pub fn vrfy() -> Self {
        Self::new(252, "2.5.2", "Cannot VRFY user, but will accept message")
    }

    pub fn help() -> Self {
        Self::new(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")
    }

    pub fn ready_to_start_tls() -> Self {
        Self::new(220, "2.0.0", "Ready to start TLS")
    }

    // --- Protocol errors ---

    pub fn bad_sequence() -> Self {
        Self::new(503, "5.5.1", "Bad sequence of commands")
    }

    pub fn need_helo() -> Self {
        Self::new(503, "5.5.1", "Send EHLO or HELO first")
    }

    pub fn need_mail() -> Self {
        Self::new(503, "5.5.1", "Need MAIL command first")
    }

    pub fn nested_mail() -> Self {
        Self::new(503, "5.5.1", "Sender already specified")
    }

    pub fn tls_already_active() -> Self {
        Self::new(503, "5.5.1", "TLS already active")
    }

    pub fn not_implemented() -> Self {
        Self::new(502, "5.5.1", "Command not implemented")
    }

    pub fn unknown_command() -> Self {
        Self::new(500, "5.5.1", "Command unrecognized")
    }

    pub fn line_too_long() -> Self {
        Self::new(500, "5.5.2", "Line too long")
    }

    pub fn syntax_error() -> Self {
        Self::new(501, "5.5.4", "Syntax error in parameters or arguments")
    }

    pub fn bad_sender_syntax() -> Self {
        Self::new(501, "5.1.7", "Bad sender address syntax")
    }

    pub fn bad_recipient_syntax() -> Self {
        Self::new(501, "5.1.3", "Bad recipient address syntax")
    }

    pub fn unsupported_parameter() -> Self {
        Self::new(555, "5.5.4", "Unsupported parameter")
    }
}

/// The one place where the domain's recipient decision becomes a reply.
impl From<RcptDecision> for Reply {
    fn from(decision: RcptDecision) -> Self {
        match decision {
            RcptDecision::Accept => Reply::recipient_ok(),
            RcptDecision::Unknown => Reply::unknown_recipient(),
            RcptDecision::RelayDenied => Reply::relay_denied(),
            RcptDecision::TemporaryFailure => Reply::temp_failure(),
            RcptDecision::RateLimited => Reply::new(
                450,
                "4.7.1",
                "Too much mail for this recipient right now, try again later",
            ),
        }
    }
}

/// The one place where the domain's answer to a message becomes a reply.
impl From<&Receipt> for Reply {
    fn from(receipt: &Receipt) -> Self {
        match receipt {
            Receipt::Accepted { queue_id } => Reply::queued(queue_id),
            Receipt::TemporaryFailure => Reply::temp_failure(),
            Receipt::Malformed(_) => Reply::malformed_message(),
            Receipt::DnsTemporary => Reply::new(
                451,
                "4.4.3",
                "Could not check the sender's domain (DNS did not answer), try again later",
            ),
            Receipt::Rejected(status, why) => Reply::new(550, status, why.clone()),
            Receipt::Loop { hops } => Reply::new(
                554,
                "5.4.6",
                format!("Too many hops ({hops}): the message is in a mail loop"),
            ),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// Keeps configured or backend-supplied text from breaking the reply framing.
fn printable(text: &str) -> String {
    text.chars()
        .map(|ch| if ch.is_control() { '?' } else { ch })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_single_and_multi_line_replies() {
        assert_eq!(
            Reply::unknown_recipient().to_string(),
            "550 5.1.1 Recipient address rejected: no such alias\r\n"
        );
        assert_eq!(
            Reply::ehlo("mx.test", 10, true).to_string(),
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
             250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
        );
    }

    #[test]
    fn backend_text_cannot_inject_lines() {
        assert_eq!(
            Reply::queued("a\r\n250 b").to_string(),
            "250 2.0.0 Ok: queued as a??250 b\r\n"
        );
    }

    #[test]
    fn decisions_map_to_enhanced_codes() {
        let cases = [
            (RcptDecision::Accept, "250 2.1.5"),
            (RcptDecision::Unknown, "550 5.1.1"),
            (RcptDecision::RelayDenied, "550 5.7.1"),
            (RcptDecision::TemporaryFailure, "451 4.3.0"),
            (RcptDecision::RateLimited, "450 4.7.1"),
        ];
        for (decision, expected) in cases {
            assert!(Reply::from(decision).to_string().starts_with(expected));
        }
        let cases = [
            (
                Receipt::Accepted {
                    queue_id: "Q1".into(),
                },
                "250 2.0.0 Ok: queued as Q1",
            ),
            (Receipt::TemporaryFailure, "451 4.3.0"),
            (Receipt::Malformed("no headers".into()), "554 5.6.0"),
        ];
        for (receipt, expected) in cases {
            assert!(Reply::from(&receipt).to_string().starts_with(expected));
        }
    }
}
