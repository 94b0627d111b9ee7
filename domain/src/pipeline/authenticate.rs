//! The "authenticate" stage: SPF for the envelope sender (HELO for the null sender), every
//! DKIM signature, DMARC for the `From:` domain, and the received ARC chain, checked with
//! mail-auth through the shared caching resolver ([`crate::dns`]). The result is kept as an
//! owned summary and written into the message as our `Authentication-Results`.

use std::net::IpAddr;

use mail_auth::common::headers::Header;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, SpfResult,
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

/// Whether our verdict stored with the message says the sender's DMARC policy asks for
/// quarantine and the message failed it.
pub fn quarantined(raw: &[u8], hostname: &str) -> bool {
    our_verdict(raw, hostname).is_some_and(|field| {
        field.contains("dmarc=fail") && field.contains("policy.dmarc=quarantine")
    })
}

/// Our verdict stored with the message: the value of its first `Authentication-Results`
/// field when that field is ours (forged ones in our name are removed on arrival), unfolded,
/// each run of white space one space.
fn our_verdict(raw: &[u8], hostname: &str) -> Option<String> {
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
    let field = field.split_whitespace().collect::<Vec<_>>().join(" ");
    let ours = field
        .split(';')
        .next()
        .is_some_and(|id| id.trim().eq_ignore_ascii_case(hostname));
    ours.then_some(field)
}

/// Who delivered a message to us: what SPF is checked with.
pub struct Client<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    /// The envelope sender, "" for the null sender.
    pub mail_from: &'a str,
}

/// mail-auth's outputs for one message, borrowing it.
struct Verified<'x> {
    spf: mail_auth::SpfOutput,
    dkim: Vec<mail_auth::DkimOutput<'x>>,
    arc: mail_auth::ArcOutput<'x>,
    dmarc: mail_auth::DmarcOutput,
    /// The `From:` named more domains than were checked.
    authors_unchecked: bool,
    results: AuthenticationResults<'x>,
}

/// `params` with the process's caches of parsed DNS answers.
macro_rules! cached {
    ($caches:expr, $params:expr) => {
        mail_auth::Parameters::new($params)
            .with_txt_cache(&$caches.txt)
            .with_mx_cache(&$caches.mx)
            .with_ipv4_cache(&$caches.ipv4)
            .with_ipv6_cache(&$caches.ipv6)
            .with_ptr_cache(&$caches.ptr)
    };
}

/// SPF, DKIM, ARC and DMARC of `message` from `client`, and the results header built of them.
async fn verify<'x>(
    auth: &mail_auth::MessageAuthenticator,
    caches: &'x crate::dns::AuthCaches,
    hostname: &'x str,
    message: &'x AuthenticatedMessage<'x>,
    client: &Client<'x>,
    mail_from_domain: &'x str,
) -> Verified<'x> {
    let spf = if client.mail_from.is_empty() {
        auth.verify_spf(cached!(
            caches,
            SpfParameters::verify_ehlo(client.ip, client.helo, hostname)
        ))
        .await
    } else {
        auth.verify_spf(cached!(
            caches,
            SpfParameters::verify_mail_from(client.ip, client.helo, hostname, client.mail_from)
        ))
        .await
    };
    let dkim = auth.verify_dkim(cached!(caches, message)).await;
    let arc = auth.verify_arc(cached!(caches, message)).await;
    let (dmarc, authors_unchecked) =
        verify_dmarc(auth, caches, message, &dkim, mail_from_domain, &spf).await;
    let results = AuthenticationResults::new(hostname)
        .with_spf_mailfrom_result(&spf, client.ip, client.mail_from, client.helo)
        .with_dkim_results(&dkim, message.from())
        .with_dmarc_result(&dmarc)
        .with_arc_result(&arc, client.ip);
    Verified {
        spf,
        dkim,
        arc,
        dmarc,
        authors_unchecked,
        results,
    }
}

/// At most this many `From:` domains are checked (each costs lookups); a message naming more
/// is treated as failing a `p=reject` policy: no real author list spans that many domains.
const MAX_AUTHOR_DOMAINS: usize = 10;

/// DMARC for the message's `From:` domains. mail-auth, as RFC 7489 (6.6.1) allows, exempts a
/// `From:` that names several domains, so a forger could add an author of their own (or a
/// second `From:` field) to carry a `p=reject` domain past the check. Each domain is checked
/// on its own instead and the most severe outcome counts: a failure under the strictest policy
/// first, then a temporary error (that domain's policy is unknown), then the rest; a pass
/// only when every domain passes. True with it when some domains were left unchecked
/// ([`MAX_AUTHOR_DOMAINS`]).
async fn verify_dmarc<'x>(
    auth: &mail_auth::MessageAuthenticator,
    caches: &'x crate::dns::AuthCaches,
    message: &'x AuthenticatedMessage<'x>,
    dkim: &'x [mail_auth::DkimOutput<'x>],
    mail_from_domain: &'x str,
    spf: &'x mail_auth::SpfOutput,
) -> (mail_auth::DmarcOutput, bool) {
    let mut domains: Vec<String> = Vec::new();
    for address in &message.from {
        if let Some((_, domain)) = address.rsplit_once('@') {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !domain.is_empty() && !domains.contains(&domain) {
                domains.push(domain);
            }
        }
    }
    if domains.len() <= 1 {
        let output = auth
            .verify_dmarc(cached!(
                caches,
                DmarcParameters::new(message, dkim, mail_from_domain, spf)
            ))
            .await;
        return (output, false);
    }
    let unchecked = domains.len() > MAX_AUTHOR_DOMAINS;
    domains.truncate(MAX_AUTHOR_DOMAINS);
    let mut worst: Option<(u8, mail_auth::DmarcOutput)> = None;
    for domain in domains {
        let mut author = message.clone();
        author.from = vec![format!("author@{domain}")];
        let output = auth
            .verify_dmarc(cached!(
                caches,
                DmarcParameters::new(&author, dkim, mail_from_domain, spf)
            ))
            .await;
        let rank = dmarc_severity(&output);
        if worst.as_ref().is_none_or(|(w, _)| rank > *w) {
            worst = Some((rank, output));
        }
    }
    let worst = worst.map(|(_, output)| output).unwrap_or_default();
    (worst, unchecked)
}

/// How much a DMARC outcome weighs when a message has several author domains.
fn dmarc_severity(output: &mail_auth::DmarcOutput) -> u8 {
    match (output.result(), output.policy()) {
        (DmarcResult::Fail(_), Policy::Reject) => 6,
        (DmarcResult::Fail(_), Policy::Quarantine) => 5,
        (DmarcResult::TempError(_), _) => 4,
        (DmarcResult::Fail(_), _) => 3,
        (DmarcResult::PermError(_), _) => 2,
        (DmarcResult::None, _) => 1,
        (DmarcResult::Pass, _) => 0,
    }
}

fn mail_from_domain(client: &Client<'_>) -> String {
    client
        .mail_from
        .rsplit_once('@')
        .map_or(client.helo, |(_, d)| d)
        .to_ascii_lowercase()
}

/// Seals a rewritten `forward` with an ARC set for `domain`, from `original` as stored: its
/// ARC-Authentication-Results repeat our verdict stored with it (nothing is checked a second
/// time), and the chain it arrived with is extended one instance up, `cv=pass` only when our
/// verdict says the chain verified. A chain whose last seal says `cv=fail` is not extended,
/// nor one that cannot be ([`received_chain`]). A message stored without our verdict gets
/// `none`, and its chain counts as unverified.
pub fn seal(
    ctx: &Context,
    original: &[u8],
    domain: &str,
    forward: Vec<u8>,
) -> crate::Result<Vec<u8>> {
    let Some(message) = AuthenticatedMessage::parse(original) else {
        return Ok(forward);
    };
    let hostname = ctx.settings().mail.hostname.as_str();
    let verdict = our_verdict(original, hostname)
        .map_or_else(|| format!("{hostname}; none"), |v| within_line_limit(&v));
    let Some(chain) = received_chain(&message, &verdict) else {
        return Ok(forward);
    };
    // The verdict goes in whole as the authserv-id: written on one line with single spaces,
    // it reads the same in the header and in its relaxed canonical form.
    let results = AuthenticationResults::new(verdict.as_str());
    ctx.signers().seal(domain, forward, &results, &chain)
}

/// RFC 8617's limit: no ARC set has an instance past 50.
const MAX_ARC_SETS: usize = 50;

/// The ARC chain `message` arrived with, as mail-auth's verifier groups it, with the result
/// our `verdict` recorded; an empty chain when it came with none. None when it came with one
/// that cannot be extended: malformed, incomplete, or already at [`MAX_ARC_SETS`]. Sealing
/// such a message would add a second `i=1` set beside the ones it carries, or an `i=51`, and
/// spoil the chain for every receiver; it goes on unsealed, still under our DKIM signatures.
fn received_chain<'x>(
    message: &'x AuthenticatedMessage<'x>,
    verdict: &str,
) -> Option<ArcOutput<'x>> {
    let result = match verdict
        .split(';')
        .find_map(|method| method.trim().strip_prefix("arc="))
        .and_then(|v| v.split_whitespace().next())
    {
        Some("pass") => DkimResult::Pass,
        Some("none") => DkimResult::None,
        _ => DkimResult::Fail(mail_auth::Error::Arc(mail_auth::arc::ArcError::BrokenChain)),
    };
    let sets = message.ams_headers.len();
    let arrived_with_arc = message.has_arc_errors
        || sets > 0
        || !message.as_headers.is_empty()
        || !message.aar_headers.is_empty();
    if !arrived_with_arc {
        return Some(ArcOutput::default().with_result(result));
    }
    if message.has_arc_errors
        || sets >= MAX_ARC_SETS
        || sets != message.as_headers.len()
        || sets != message.aar_headers.len()
    {
        return None;
    }
    let chain = message
        .as_headers
        .iter()
        .zip(&message.ams_headers)
        .zip(&message.aar_headers)
        .fold(
            ArcOutput::default().with_result(result),
            |chain, ((seal, sig), aar)| {
                chain.with_set(mail_auth::arc::Set {
                    signature: Header::new(sig.name, sig.value, &sig.header),
                    seal: Header::new(seal.name, seal.value, &seal.header),
                    results: Header::new(aar.name, aar.value, &aar.header),
                })
            },
        );
    Some(chain)
}

/// Our verdict on one line must stay within RFC 5322's 998 characters: past 900, DKIM
/// results after the first are left out (SPF, DMARC and ARC always stay).
fn within_line_limit(verdict: &str) -> String {
    const MAX: usize = 900;
    if verdict.len() <= MAX {
        return verdict.to_string();
    }
    let mut methods = verdict.split(';').map(str::trim);
    let mut kept = vec![methods.next().unwrap_or_default().to_string()];
    let (dkim, others): (Vec<&str>, Vec<&str>) = methods.partition(|m| m.starts_with("dkim="));
    let mut len = kept[0].len() + others.iter().map(|m| m.len() + 2).sum::<usize>();
    for (n, d) in dkim.iter().enumerate() {
        if n > 0 && len + d.len() + 2 > MAX {
            break;
        }
        len += d.len() + 2;
        kept.push((*d).to_string());
    }
    kept.extend(others.iter().map(|m| (*m).to_string()));
    kept.join("; ")
}

/// Runs every check on `raw` as received from the envelope's client.
pub async fn check(ctx: &Context, envelope: &Envelope, raw: &[u8]) -> Checks {
    let hostname = ctx.settings().mail.hostname.as_str();
    let helo = if envelope.helo.is_empty() {
        "unknown"
    } else {
        envelope.helo.as_str()
    };
    let client = Client {
        ip: envelope.remote_ip,
        helo,
        mail_from: envelope.mail_from.as_str(),
    };
    let mail_from_domain = mail_from_domain(&client);
    let Some(message) = AuthenticatedMessage::parse(raw) else {
        // Nothing mail-auth can read as a message (the repair stage makes one of it): no
        // signature can be checked, and there is no From domain for DMARC.
        let caches = ctx.auth_caches();
        let spf = ctx
            .authenticator()
            .verify_spf(cached!(
                caches,
                SpfParameters::verify_mail_from(client.ip, helo, hostname, client.mail_from)
            ))
            .await;
        let results = AuthenticationResults::new(hostname).with_spf_mailfrom_result(
            &spf,
            client.ip,
            client.mail_from,
            helo,
        );
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
    let Verified {
        spf,
        dkim,
        arc,
        dmarc,
        authors_unchecked,
        results,
    } = verify(
        ctx.authenticator(),
        ctx.auth_caches(),
        hostname,
        &message,
        &client,
        &mail_from_domain,
    )
    .await;
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
    let (dmarc_result, dmarc_policy) = if authors_unchecked {
        (Outcome::Fail, DmarcPolicy::Reject)
    } else {
        let policy = match dmarc.policy() {
            Policy::Quarantine => DmarcPolicy::Quarantine,
            Policy::Reject => DmarcPolicy::Reject,
            Policy::None | Policy::Unspecified => DmarcPolicy::None,
        };
        (dmarc_outcome(&dmarc.result()), policy)
    };
    Checks {
        spf: spf_outcome(spf.result()),
        spf_domain: spf.domain().to_ascii_lowercase(),
        dkim_pass,
        dkim: dkim_summary,
        dmarc: dmarc_result,
        dmarc_policy,
        arc: dkim_outcome(arc.result()),
        header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_verdict_is_read_unfolded_and_only_when_it_is_ours() {
        let raw = b"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=a@b.test;\r\n\tarc=none\r\nSubject: x\r\n\r\nbody";
        let v = our_verdict(raw, "mx.test").expect("ours");
        assert_eq!(v, "mx.test; spf=pass smtp.mailfrom=a@b.test; arc=none");
        assert_eq!(our_verdict(raw, "other.test"), None);
        assert_eq!(
            our_verdict(
                b"Subject: x\r\n\r\nAuthentication-Results: mx.test; x",
                "mx.test"
            ),
            None
        );
    }

    #[test]
    fn an_overlong_verdict_keeps_spf_dmarc_arc_and_the_first_dkim_result() {
        let dkim: Vec<String> = (0..40)
            .map(|n| format!("dkim=pass header.d=d{n}.test header.s=s header.b=AAAAAAAA"))
            .collect();
        let verdict = format!(
            "mx.test; spf=pass smtp.mailfrom=a@b.test; {}; dmarc=pass header.from=b.test; arc=none",
            dkim.join("; ")
        );
        let short = within_line_limit(&verdict);
        assert!(short.len() <= 900, "{}", short.len());
        assert!(
            short.starts_with("mx.test; dkim=pass header.d=d0.test"),
            "{short}"
        );
        for kept in ["spf=pass", "dmarc=pass", "arc=none"] {
            assert!(short.contains(kept), "{kept}: {short}");
        }
        assert!(!short.contains("d39.test"), "{short}");
        let fine = "mx.test; spf=none; arc=none";
        assert_eq!(within_line_limit(fine), fine);
    }

    #[test]
    fn alignment_is_relaxed() {
        assert!(aligned("real.test", "real.test"));
        assert!(aligned("mail.real.test", "real.test"));
        assert!(aligned("real.test", "eu.real.test"));
        assert!(!aligned("evilreal.test", "real.test"));
        assert!(!aligned("other.test", "real.test"));
    }
}
