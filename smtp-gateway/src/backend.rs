use std::future::Future;
use std::net::IpAddr;

/// What the MX learned about a message before its content: handed to [`Backend::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path; `""` is the null sender (bounces).
    pub mail_from: String,
    /// Accepted recipients, each once, in the order given.
    pub rcpt_to: Vec<String>,
    pub remote_ip: IpAddr,
    /// The name the client gave in EHLO/HELO.
    pub helo: String,
    /// Whether the message arrived over STARTTLS.
    pub tls: bool,
    /// `MAIL FROM:<..> SMTPUTF8`.
    pub smtputf8: bool,
    /// `MAIL FROM:<..> BODY=8BITMIME`.
    pub body_8bit: bool,
}

/// The domain's answer to one `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptVerdict {
    Accept,
    /// No such alias on a domain we serve: `550 5.1.1`.
    UnknownRecipient,
    /// A domain we do not serve: `550 5.7.1`.
    RelayDenied,
    /// A reverse alias written to by someone other than its alias's owner: `550 5.7.1`.
    NotAliasOwner,
    /// The answer is not known right now (database down): `451 4.3.0`.
    TemporaryFailure,
}

/// The domain's answer to a complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataVerdict {
    /// Stored for forwarding: `250 2.0.0 Ok: queued as {id}`.
    Accepted { id: String },
    /// Could not be stored now; the sender retries: `451 4.3.0`.
    TemporaryFailure,
    /// Refused for good; the sender bounces.
    Rejected { reason: RejectReason },
}

/// Why a message was refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Policy refused it (spam, blocked sender, disabled alias): `550 5.7.1`.
    MessageRejected,
    /// The content could not be parsed as a message: `554 5.6.0`.
    Malformed,
}

/// The domain layer as seen by the MX. Implemented by `postern-domain`.
pub trait Backend: Send + Sync + 'static {
    /// Decide whether `rcpt` may receive mail from `mail_from` (`""` for the null sender).
    fn check_rcpt(&self, mail_from: &str, rcpt: &str) -> impl Future<Output = RcptVerdict> + Send;

    /// Take a complete message (dot-unstuffed, ending in CRLF unless empty).
    fn receive(
        &self,
        envelope: &Envelope,
        message: Vec<u8>,
    ) -> impl Future<Output = DataVerdict> + Send;
}
