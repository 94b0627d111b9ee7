use std::time::Duration;

/// Settings of the inbound MX. Built by the application from `postern-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Name announced in the greeting and the EHLO reply.
    pub hostname: String,
    /// Largest message accepted, in octets (advertised as `SIZE`).
    pub max_message_size: usize,
    /// Recipients accepted per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Concurrent sessions; more get `421 4.7.0` at connect time.
    pub max_connections: usize,
    /// How long the server waits for the next command.
    pub command_timeout: Duration,
    /// How long the server waits for the next chunk of message content.
    pub data_timeout: Duration,
    /// Close the session after this many bad commands.
    pub max_errors: usize,
}

impl Default for GatewayConfig {
    /// The RFC 5321 section 4.5.3 minimums and section 4.5.3.2 timeouts.
    fn default() -> Self {
        Self {
            hostname: "localhost".to_owned(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 256,
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            max_errors: 10,
        }
    }
}
