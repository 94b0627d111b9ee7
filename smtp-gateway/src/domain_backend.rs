//! The gateway's [`Backend`]: the domain's pipeline.

use postern_config::Settings;
use postern_domain::pipeline::{self, RcptDecision, Receipt};
use postern_domain::{Context, Envelope};

use crate::backend::Backend;
use crate::config::GatewayConfig;

pub struct DomainBackend {
    ctx: Context,
}

impl DomainBackend {
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }
}

impl Backend for DomainBackend {
    async fn check_rcpt(&self, envelope: &Envelope, rcpt: &str) -> RcptDecision {
        pipeline::check_rcpt(&self.ctx, envelope, rcpt).await
    }

    async fn receive(&self, envelope: &Envelope, message: Vec<u8>) -> Receipt {
        pipeline::receive(&self.ctx, envelope, message).await
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
            max_errors: settings.smtp.max_errors,
            max_commands: settings.smtp.max_commands,
            max_session_duration: settings.smtp.max_session_duration,
            tarpit_after: settings.smtp.tarpit_after,
            max_connections_per_client: settings.smtp.max_connections_per_client,
            connections_per_minute_per_client: settings.smtp.connections_per_minute_per_client,
            trusted_networks: settings.smtp.trusted_networks.clone(),
        }
    }
}
