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
    /// Close the session after this many bad commands (refused recipients count).
    pub max_errors: usize,
    /// Close the session after this many commands.
    pub max_commands: usize,
    /// Close the session after this long.
    pub max_session_duration: Duration,
    /// Refused recipients after which each further one is answered more slowly.
    pub tarpit_after: usize,
    /// Concurrent sessions per client (IPv4 address or IPv6 /64).
    pub max_connections_per_client: usize,
    /// New connections per client per minute.
    pub connections_per_minute_per_client: u32,
    /// Clients exempt from the per-client limits.
    pub trusted_networks: Vec<ipnet::IpNet>,
}

impl GatewayConfig {
    /// Whether `ip` is in `trusted_networks`.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        let ip = postern_domain::envelope::unmap(ip);
        self.trusted_networks.iter().any(|net| net.contains(&ip))
    }
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
            max_commands: 1000,
            max_session_duration: Duration::from_secs(30 * 60),
            tarpit_after: 3,
            max_connections_per_client: 20,
            connections_per_minute_per_client: 120,
            trusted_networks: Vec::new(),
        }
    }
}
