//! Whether each of our domains publishes what mail to and from it needs: MX to our host, SPF,
//! DMARC, and every DKIM key that signs (or is about to). Checked daily by the worker, on
//! demand by `postern domain check`; the last findings are kept per domain.

use hickory_resolver::proto::rr::RData;
use postern_entity::domain_check;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, Set};

use crate::Result;
use crate::context::Context;

/// One domain's findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainReport {
    pub domain: String,
    pub ok: bool,
    /// One line each, `ok:`, `missing:`, `wrong:` or `pending:` first.
    pub findings: Vec<String>,
}

impl std::fmt::Display for DomainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {}",
            self.domain,
            if self.ok { "ok" } else { "needs attention" }
        )?;
        for line in &self.findings {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Checks `domain` now, with a fresh resolver (no cached answers), and keeps the findings.
pub async fn check(ctx: &Context, domain: &str) -> Result<DomainReport> {
    let settings = ctx.settings();
    let resolver = crate::dns::resolver(&settings.dns)?;
    let hosts = &settings.mail.mx_hosts;
    let host = hosts.join(" or ");
    let mut findings = Vec::new();
    let mut ok = true;
    let mut bad = |line: String, findings: &mut Vec<String>| {
        ok = false;
        findings.push(line);
    };
    let mx: Vec<String> = match resolver.mx_lookup(format!("{domain}.")).await {
        Ok(answer) => answer
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(
                    mx.exchange
                        .to_utf8()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                ),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let foreign: Vec<&str> = mx
        .iter()
        .filter(|h| !hosts.contains(h))
        .map(String::as_str)
        .collect();
    if mx.is_empty() {
        bad(
            format!("missing: MX record pointing to {host}"),
            &mut findings,
        );
    } else if foreign.is_empty() {
        findings.push(format!("ok: MX {}", mx.join(", ")));
    } else {
        // A host we do not run would receive (some of) the domain's mail.
        bad(
            format!(
                "wrong: MX points to {} instead of {host} (list it in mail.mx_hosts if it is yours)",
                foreign.join(", ")
            ),
            &mut findings,
        );
    }
    match crate::dns::txt_records(&resolver, domain)
        .await
        .into_iter()
        .find(|t| t.to_ascii_lowercase().starts_with("v=spf1"))
    {
        Some(spf) => findings.push(format!("ok: SPF {spf}")),
        None => bad(
            format!(
                "missing: SPF record (TXT \"v=spf1 mx a:{} ~all\")",
                settings.mail.hostname
            ),
            &mut findings,
        ),
    }
    match crate::dns::txt_records(&resolver, &format!("_dmarc.{domain}"))
        .await
        .into_iter()
        .find(|t| t.to_ascii_lowercase().starts_with("v=dmarc1"))
    {
        Some(dmarc) => findings.push(format!("ok: DMARC {dmarc}")),
        None => bad(
            format!("missing: DMARC record at _dmarc.{domain}"),
            &mut findings,
        ),
    }
    let states = crate::dkim::key_states(ctx.db(), domain).await?;
    for (name, value) in crate::dkim::dns_records(ctx.db(), domain).await? {
        let public = value.rsplit("p=").next().unwrap_or_default();
        let state = states
            .iter()
            .find(|(selector, _)| name.starts_with(&format!("{selector}.")))
            .map_or("active", |(_, state)| state.as_str());
        let published = crate::dkim::published(&resolver, &name, public).await;
        match (published, state) {
            (true, _) => findings.push(format!("ok: DKIM {name} ({state})")),
            (false, "pending") => findings.push(format!(
                "pending: DKIM {name} is not published yet; it signs once it is"
            )),
            (false, _) => bad(
                format!("missing: DKIM {name} ({state}): publish it, signatures fail without it"),
                &mut findings,
            ),
        }
    }
    let report = DomainReport {
        domain: domain.to_string(),
        ok,
        findings,
    };
    store(ctx.db(), &report).await?;
    Ok(report)
}

async fn store(db: &impl ConnectionTrait, report: &DomainReport) -> Result<()> {
    domain_check::Entity::insert(domain_check::ActiveModel {
        domain: Set(report.domain.clone()),
        checked_at: Set(chrono::Utc::now()),
        ok: Set(report.ok),
        findings: Set(report.findings.join("\n")),
    })
    .on_conflict(
        OnConflict::column(domain_check::Column::Domain)
            .update_columns([
                domain_check::Column::CheckedAt,
                domain_check::Column::Ok,
                domain_check::Column::Findings,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Checks every domain we serve; returns a one-line summary.
pub async fn check_all(ctx: &Context) -> Result<String> {
    let mut attention = Vec::new();
    let domains = ctx.signing_domains().to_vec();
    for domain in &domains {
        if !check(ctx, domain).await?.ok {
            attention.push(domain.clone());
        }
    }
    Ok(if attention.is_empty() {
        format!("checked {} domains: all ok", domains.len())
    } else {
        format!(
            "checked {} domains: {} need attention (postern domain check DOMAIN)",
            domains.len(),
            attention.join(", ")
        )
    })
}
