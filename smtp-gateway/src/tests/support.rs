use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use postern_domain::Envelope;
use postern_domain::pipeline::{RcptDecision, Receipt};

use crate::{Backend, GatewayConfig, Session};

/// Generous bound on any single wait, so a broken server fails a test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

pub(crate) const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

/// Accepts `*@alias.test`, with a few addresses that answer otherwise; records messages.
#[derive(Default)]
pub(crate) struct TestBackend {
    received: Mutex<Vec<(Envelope, Vec<u8>)>>,
}

impl TestBackend {
    pub(crate) fn received(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The one message received so far.
    pub(crate) fn only_message(&self) -> (Envelope, Vec<u8>) {
        let mut received = self.received();
        assert_eq!(received.len(), 1, "expected exactly one message");
        received.remove(0)
    }
}

impl Backend for TestBackend {
    async fn check_rcpt(&self, _envelope: &Envelope, rcpt: &str) -> RcptDecision {
        match rcpt {
            "nobody@alias.test" => RcptDecision::Unknown,
            "tempfail@alias.test" => RcptDecision::TemporaryFailure,
            "postmaster" => RcptDecision::Accept,
            rcpt if rcpt.ends_with("@alias.test") => RcptDecision::Accept,
            _ => RcptDecision::RelayDenied,
        }
    }

    async fn receive(&self, envelope: &Envelope, message: Vec<u8>) -> Receipt {
        let contains = |needle: &[u8]| message.windows(needle.len()).any(|w| w == needle);
        if contains(b"X-Verdict: malformed") {
            return Receipt::Malformed("test".into());
        }
        if contains(b"X-Verdict: tempfail") {
            return Receipt::TemporaryFailure;
        }
        let mut received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        received.push((envelope.clone(), message));
        Receipt::Accepted {
            queue_id: format!("Q{}", received.len()),
        }
    }
}

pub(crate) fn test_config() -> GatewayConfig {
    GatewayConfig {
        hostname: "mx.alias.test".to_owned(),
        max_message_size: 10_000,
        max_recipients: 3,
        max_connections: 4,
        command_timeout: WAIT,
        data_timeout: WAIT,
        max_errors: 5,
        ..GatewayConfig::default()
    }
}

/// The client end of an SMTP dialogue: `client.send("NOOP").await.expect("250").await`.
pub(crate) struct Client<T> {
    io: BufReader<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    pub(crate) fn new(io: T) -> Self {
        Self {
            io: BufReader::new(io),
        }
    }

    pub(crate) fn into_inner(self) -> T {
        assert!(self.io.buffer().is_empty(), "unread server output");
        self.io.into_inner()
    }

    /// Sends one command line; CRLF is added.
    pub(crate) async fn send(&mut self, line: &str) -> &mut Self {
        self.send_raw(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends bytes exactly as given, in one write.
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) -> &mut Self {
        let io = self.io.get_mut();
        io.write_all(bytes).await.expect("write to server");
        io.flush().await.expect("flush to server");
        self
    }

    /// Reads one reply (all its lines) and checks how it starts; returns its text.
    pub(crate) async fn expect(&mut self, prefix: &str) -> String {
        let reply = self.read_reply().await;
        assert!(
            reply.starts_with(prefix),
            "expected a reply starting with {prefix:?}, got {reply:?}"
        );
        reply
    }

    pub(crate) async fn cmd(&mut self, line: &str, prefix: &str) -> String {
        self.send(line).await.expect(prefix).await
    }

    async fn read_reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, self.io.read_line(&mut line))
                .await
                .expect("reply within the wait")
                .expect("read reply");
            assert!(read > 0, "connection closed; reply so far: {reply:?}");
            assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
            let bytes = line.as_bytes();
            assert!(
                bytes.len() >= 5 && bytes[..3].iter().all(u8::is_ascii_digit),
                "malformed reply line: {line:?}"
            );
            let last = bytes[3] == b' ';
            reply.push_str(&line);
            if last {
                return reply;
            }
        }
    }

    /// The server has closed the connection without sending anything more.
    pub(crate) async fn expect_closed(&mut self) {
        let mut rest = String::new();
        let read = tokio::time::timeout(WAIT, self.io.read_line(&mut rest))
            .await
            .expect("close within the wait");
        if let Ok(read) = read {
            assert_eq!(read, 0, "expected EOF, got {rest:?}");
        }
    }

    pub(crate) async fn ehlo(&mut self) -> String {
        self.cmd("EHLO client.example.org", "250-mx.alias.test")
            .await
    }

    /// MAIL, one RCPT and DATA up to the 354.
    pub(crate) async fn start_message(&mut self, from: &str, to: &str) {
        self.cmd(&format!("MAIL FROM:<{from}>"), "250 2.1.0").await;
        self.cmd(&format!("RCPT TO:<{to}>"), "250 2.1.5").await;
        self.cmd("DATA", "354").await;
    }
}

/// A running session over an in-memory stream, with its greeting already read.
pub(crate) struct Harness<T = DuplexStream> {
    pub(crate) client: Client<T>,
    pub(crate) backend: Arc<TestBackend>,
    session: JoinHandle<()>,
}

impl Harness {
    pub(crate) async fn start(config: GatewayConfig) -> Self {
        Self::start_with_tls(config, None).await
    }

    pub(crate) async fn start_with_tls(
        config: GatewayConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let backend = Arc::new(TestBackend::default());
        let session = Session::new(
            server_io,
            CLIENT_IP,
            Arc::new(config),
            tls,
            Arc::clone(&backend),
        );
        let session = tokio::spawn(session.run());
        let mut client = Client::new(client_io);
        client.expect("220 mx.alias.test ESMTP Postern\r\n").await;
        Self {
            client,
            backend,
            session,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Harness<T> {
    /// After the server's `220` to STARTTLS: the TLS handshake, as a real client does it.
    pub(crate) async fn upgrade(self, connector: &TlsConnector) -> Harness<TlsStream<T>> {
        let Self {
            client,
            backend,
            session,
        } = self;
        let name = rustls::pki_types::ServerName::try_from("mx.alias.test").expect("server name");
        let stream = tokio::time::timeout(WAIT, connector.connect(name, client.into_inner()))
            .await
            .expect("handshake within the wait")
            .expect("TLS handshake");
        Harness {
            client: Client::new(stream),
            backend,
            session,
        }
    }

    /// Hangs up, waits for the session to end and checks it did not panic.
    pub(crate) async fn finished(self) -> Arc<TestBackend> {
        let Self {
            client,
            backend,
            session,
        } = self;
        drop(client);
        tokio::time::timeout(WAIT, session)
            .await
            .expect("session ends within the wait")
            .expect("session did not panic");
        backend
    }

    /// QUIT, then the session must end cleanly.
    pub(crate) async fn quit(mut self) -> Arc<TestBackend> {
        self.client.cmd("QUIT", "221 2.0.0 Bye").await;
        self.client.expect_closed().await;
        self.finished().await
    }
}

/// A scratch directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "postern-smtp-gateway-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server config with a fresh self-signed certificate, and a client that trusts it.
pub(crate) fn tls_pair(dir: &TempDir) -> (Arc<rustls::ServerConfig>, TlsConnector) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert_path = dir.path().join("cert.pem");
    let server =
        crate::load_or_create_tls(&cert_path, &dir.path().join("key.pem"), "mx.alias.test")
            .expect("server TLS config");
    let pem = std::fs::read(&cert_path).expect("read certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.expect("PEM certificate"))
            .expect("trust certificate");
    }
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, TlsConnector::from(Arc::new(client)))
}
