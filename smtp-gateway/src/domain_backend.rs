//! The gateway's [`Backend`] on top of the domain's mail flows: the one place where domain
//! decisions become gateway verdicts.

use postern_config::Settings;
use postern_domain::mailflow::{Mailflow, RcptDecision, Receipt};

use crate::backend::{Backend, DataVerdict, Envelope, RcptVerdict, RejectReason};
use crate::config::GatewayConfig;

pub struct DomainBackend {
    flow: Mailflow,
}

impl DomainBackend {
    pub fn new(flow: Mailflow) -> Self {
        Self { flow }
    }
}

impl Backend for DomainBackend {
    async fn check_rcpt(&self, mail_from: &str, rcpt: &str) -> RcptVerdict {
        match self.flow.check_rcpt(mail_from, rcpt).await {
            RcptDecision::Accept => RcptVerdict::Accept,
            RcptDecision::Unknown => RcptVerdict::UnknownRecipient,
            RcptDecision::RelayDenied => RcptVerdict::RelayDenied,
            RcptDecision::NotOwner => RcptVerdict::NotAliasOwner,
            RcptDecision::TemporaryFailure => RcptVerdict::TemporaryFailure,
        }
    }

    async fn receive(&self, envelope: &Envelope, message: Vec<u8>) -> DataVerdict {
        match self
            .flow
            .receive(&envelope.mail_from, &envelope.rcpt_to, &message)
            .await
        {
            Receipt::Accepted { queue_id, .. } => DataVerdict::Accepted { id: queue_id },
            Receipt::TemporaryFailure => DataVerdict::TemporaryFailure,
            Receipt::Malformed(why) => {
                tracing::info!(reason = %why, "message rejected as malformed");
                DataVerdict::Rejected {
                    reason: RejectReason::Malformed,
                }
            }
        }
    }
}

impl GatewayConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        GatewayConfig {
            hostname: settings.mail.hostname.clone(),
            max_message_size: settings.smtp.max_message_size,
            max_recipients: settings.smtp.max_recipients,
            max_connections: settings.smtp.max_connections,
            command_timeout: settings.smtp.command_timeout,
            data_timeout: settings.smtp.data_timeout,
            ..GatewayConfig::default()
        }
    }
}
