//! The "authenticate" stage: SPF for the envelope sender (HELO for the null sender), every
//! DKIM signature, DMARC for the `From:` domain, and the received ARC chain, checked with
//! mail-auth through the shared caching resolver ([`crate::dns`]). The result is kept as an
//! owned summary and written into the message as our `Authentication-Results`.

use std::net::IpAddr;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, SpfResult,
    dmarc::verify::DmarcParameters, spf::verify::SpfParameters,
};

use crate::context::Context;
use crate::envelope::Envelope;

/// What one check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// SPF softfail and neutral: neither pass nor a hard failure.
    Weak,
    /// No record, no signature: nothing to check.
    None,
    /// The DNS could not answer: the check is unknown, not failed.
    TempError,
    /// A record or signature that cannot be used.
    PermError,
}

/// A DMARC policy, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

/// Everything the decisions need from the checks, owned.
#[derive(Debug, Clone)]
pub struct Checks {
    pub spf: Outcome,
    /// The domain SPF was checked for (the envelope sender's, or the HELO name).
    pub spf_domain: String,
    /// `d=` of every DKIM signature that verified.
    pub dkim_pass: Vec<String>,
    pub dkim: Outcome,
    pub dmarc: Outcome,
    pub dmarc_policy: DmarcPolicy,
    pub arc: Outcome,
    /// Our `Authentication-Results:` field, folded, with its CRLF.
    pub header: String,
}

impl Checks {
    /// DMARC failed and the domain asks for rejection.
    pub fn dmarc_rejects(&self) -> bool {
        self.dmarc == Outcome::Fail && self.dmarc_policy == DmarcPolicy::Reject
    }

    /// DMARC failed and the domain asks for quarantine.
    pub fn dmarc_quarantines(&self) -> bool {
        self.dmarc == Outcome::Fail && self.dmarc_policy == DmarcPolicy::Quarantine
    }

    /// The DMARC verdict is unknown because DNS failed: the decision needs the answer.
    pub fn dmarc_unknown(&self) -> bool {
        self.dmarc == Outcome::TempError
    }

    /// Whether the message authenticates for `domain`: SPF passed for it, or a DKIM
    /// signature of a domain aligned with it (relaxed: the same organisational domain,
    /// approximated as one being the other or a subdomain of it) verified.
    pub fn authenticates(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        (self.spf == Outcome::Pass && self.spf_domain.eq_ignore_ascii_case(&domain))
            || self.dkim_pass.iter().any(|d| aligned(d, &domain))
    }

    /// The owner-facing words for why a reply did not authenticate.
    pub fn summary(&self) -> String {
        format!(
            "spf={} dkim={} dmarc={}",
            word(self.spf),
            word(self.dkim),
            word(self.dmarc)
        )
    }
}

fn word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Weak => "softfail",
        Outcome::None => "none",
        Outcome::TempError => "temperror",
        Outcome::PermError => "permerror",
    }
}

fn aligned(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

fn spf_outcome(r: SpfResult) -> Outcome {
    match r {
        SpfResult::Pass => Outcome::Pass,
        SpfResult::Fail => Outcome::Fail,
        SpfResult::SoftFail | SpfResult::Neutral => Outcome::Weak,
        SpfResult::TempError => Outcome::TempError,
        SpfResult::PermError => Outcome::PermError,
        SpfResult::None => Outcome::None,
    }
}

fn dkim_outcome(r: &DkimResult) -> Outcome {
    match r {
        DkimResult::Pass => Outcome::Pass,
        DkimResult::Fail(_) => Outcome::Fail,
        DkimResult::Neutral(_) => Outcome::Weak,
        DkimResult::TempError(_) => Outcome::TempError,
        DkimResult::PermError(_) => Outcome::PermError,
        DkimResult::None => Outcome::None,
    }
}

fn dmarc_outcome(r: &DmarcResult) -> Outcome {
    match r {
        DmarcResult::Pass => Outcome::Pass,
        DmarcResult::Fail(_) => Outcome::Fail,
        DmarcResult::TempError(_) => Outcome::TempError,
        DmarcResult::PermError(_) => Outcome::PermError,
        DmarcResult::None => Outcome::None,
    }
}

/// Whether our verdict stored with the message (the first `Authentication-Results` field,
/// ours: forged ones in our name are removed on arrival) says the sender's DMARC policy asks
/// for quarantine and the message failed it.
pub fn quarantined(raw: &[u8], hostname: &str) -> bool {
    let mut field = String::new();
    let mut in_field = false;
    for line in raw.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        if line.is_empty() {
            break;
        }
        if in_field {
            if line.starts_with([' ', '\t']) {
                field.push_str(&line);
                continue;
            }
            break;
        }
        if let Some(value) = line
            .get(..23)
            .filter(|n| n.eq_ignore_ascii_case("Authentication-Results:"))
            .and_then(|_| line.get(23..))
        {
            field.push_str(value);
            in_field = true;
        }
    }
    let ours = field
        .split(';')
        .next()
        .is_some_and(|id| id.trim().eq_ignore_ascii_case(hostname));
    ours && field.contains("dmarc=fail") && field.contains("policy.dmarc=quarantine")
}

/// Runs every check on `raw` as received from the envelope's client.
pub async fn check(ctx: &Context, envelope: &Envelope, raw: &[u8]) -> Checks {
    let hostname = ctx.settings().mail.hostname.as_str();
    let auth = ctx.authenticator();
    let ip: IpAddr = envelope.remote_ip;
    let helo = if envelope.helo.is_empty() {
        "unknown"
    } else {
        envelope.helo.as_str()
    };
    let mail_from = envelope.mail_from.as_str();
    let mail_from_domain = mail_from
        .rsplit_once('@')
        .map_or(helo, |(_, d)| d)
        .to_ascii_lowercase();
    let spf = if mail_from.is_empty() {
        auth.verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname))
            .await
    } else {
        auth.verify_spf(SpfParameters::verify_mail_from(
            ip, helo, hostname, mail_from,
        ))
        .await
    };
    let Some(message) = AuthenticatedMessage::parse(raw) else {
        // Nothing mail-auth can read as a message (the repair stage makes one of it): no
        // signature can be checked, and there is no From domain for DMARC.
        let results = AuthenticationResults::new(hostname)
            .with_spf_mailfrom_result(&spf, ip, mail_from, helo);
        return Checks {
            spf: spf_outcome(spf.result()),
            spf_domain: mail_from_domain,
            dkim_pass: Vec::new(),
            dkim: Outcome::None,
            dmarc: Outcome::None,
            dmarc_policy: DmarcPolicy::None,
            arc: Outcome::None,
            header: results.to_header(),
        };
    };
    let dkim = auth.verify_dkim(&message).await;
    let arc = auth.verify_arc(&message).await;
    let dmarc = auth
        .verify_dmarc(DmarcParameters::new(
            &message,
            &dkim,
            &mail_from_domain,
            &spf,
        ))
        .await;
    let header_from = message.from().to_string();
    let results = AuthenticationResults::new(hostname)
        .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
        .with_dkim_results(&dkim, &header_from)
        .with_dmarc_result(&dmarc)
        .with_arc_result(&arc, ip);
    let mut header = results.to_header();
    if dkim.is_empty() {
        // Every method is named, even when there was nothing to check.
        header = header.replacen(";\r\n\tdmarc=", ";\r\n\tdkim=none;\r\n\tdmarc=", 1);
    }
    let dkim_pass: Vec<String> = dkim
        .iter()
        .filter(|o| o.result() == &DkimResult::Pass)
        .filter_map(|o| o.signature().map(|s| s.d.to_ascii_lowercase()))
        .collect();
    let dkim_summary = if !dkim_pass.is_empty() {
        Outcome::Pass
    } else {
        dkim.iter()
            .map(|o| dkim_outcome(o.result()))
            .find(|o| *o == Outcome::TempError)
            .or_else(|| dkim.first().map(|o| dkim_outcome(o.result())))
            .unwrap_or(Outcome::None)
    };
    let dmarc_result = dmarc_outcome(&dmarc.result());
    Checks {
        spf: spf_outcome(spf.result()),
        spf_domain: spf.domain().to_ascii_lowercase(),
        dkim_pass,
        dkim: dkim_summary,
        dmarc: dmarc_result,
        dmarc_policy: match dmarc.policy() {
            Policy::Quarantine => DmarcPolicy::Quarantine,
            Policy::Reject => DmarcPolicy::Reject,
            Policy::None | Policy::Unspecified => DmarcPolicy::None,
        },
        arc: dkim_outcome(arc.result()),
        header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_relaxed() {
        assert!(aligned("real.test", "real.test"));
        assert!(aligned("mail.real.test", "real.test"));
        assert!(aligned("real.test", "eu.real.test"));
        assert!(!aligned("evilreal.test", "real.test"));
        assert!(!aligned("other.test", "real.test"));
    }
}
