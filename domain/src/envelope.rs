//! What the MX learned about a message before its content.

use std::net::IpAddr;

/// One SMTP transaction's envelope, handed whole from the gateway to the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path; `""` is the null sender (bounces).
    pub mail_from: String,
    /// Accepted recipients, each once, in the order given.
    pub rcpt_to: Vec<String>,
    /// The client's address (IPv4-mapped IPv6 already unmapped).
    pub remote_ip: IpAddr,
    /// The name the client gave in EHLO/HELO.
    pub helo: String,
    /// Whether the message arrived over STARTTLS.
    pub tls: bool,
    /// `MAIL FROM:<..> SMTPUTF8`.
    pub smtputf8: bool,
    /// `MAIL FROM:<..> BODY=8BITMIME`.
    pub body_8bit: bool,
    /// The client is in `smtp.trusted_networks`: exempt from the per-client and per-alias
    /// rate limits.
    pub trusted: bool,
}

impl Envelope {
    /// A fresh transaction after `MAIL FROM`.
    pub fn new(mail_from: String, remote_ip: IpAddr, helo: String, tls: bool) -> Self {
        Self {
            mail_from,
            rcpt_to: Vec::new(),
            remote_ip: unmap(remote_ip),
            helo,
            tls,
            smtputf8: false,
            body_8bit: false,
            trusted: false,
        }
    }
}

/// `::ffff:a.b.c.d` (an IPv4 client on a dual-stack listener) becomes `a.b.c.d`.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
