//! A plain SMTP client over TCP, so tests read like transcripts:
//! `client.cmd("RCPT TO:<nobody@alias.test>").await` → `"550 5.1.1 …"`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SmtpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pub greeting: String,
}

impl SmtpClient {
    pub async fn connect(addr: SocketAddr) -> SmtpClient {
        let stream = TcpStream::connect(addr).await.expect("connect to gateway");
        Self::over(stream).await
    }

    /// Connects from a given loopback address (`127.0.0.2` is another client than
    /// `127.0.0.1`) and reads the greeting (or the refusal).
    pub async fn connect_from(addr: SocketAddr, local: std::net::IpAddr) -> SmtpClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(local, 0))
            .expect("bind a loopback source address");
        let stream = socket.connect(addr).await.expect("connect to gateway");
        Self::over(stream).await
    }

    async fn over(stream: TcpStream) -> SmtpClient {
        let (read, writer) = stream.into_split();
        let mut client = SmtpClient {
            reader: BufReader::new(read),
            writer,
            greeting: String::new(),
        };
        client.greeting = client.reply().await;
        client
    }

    /// Connects and says EHLO.
    pub async fn ready(addr: SocketAddr) -> SmtpClient {
        let mut c = Self::connect(addr).await;
        let ehlo = c.cmd("EHLO client.ext.test").await;
        assert!(ehlo.starts_with("250"), "EHLO: {ehlo}");
        c
    }

    /// Reads one (possibly multi-line) reply; returns its lines joined with `\n`.
    pub async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_line(&mut line))
                .await
                .expect("reply timed out")
                .expect("read reply");
            if n == 0 {
                lines.push("<closed>".to_string());
                break;
            }
            let line = line.trim_end().to_string();
            let last = line.len() < 4 || line.as_bytes()[3] != b'-';
            lines.push(line);
            if last {
                break;
            }
        }
        lines.join("\n")
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// DATA with dot-stuffing; returns the final reply.
    pub async fn data(&mut self, message: &[u8]) -> String {
        self.timed_data(message).await.0
    }

    /// DATA with dot-stuffing; returns the final reply and how long it took to come after
    /// the message's last byte was written.
    pub async fn timed_data(&mut self, message: &[u8]) -> (String, std::time::Duration) {
        let go = self.cmd("DATA").await;
        assert!(go.starts_with("354"), "DATA: {go}");
        let mut out = Vec::with_capacity(message.len() + 16);
        let mut at_line_start = true;
        for &b in message {
            if at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            at_line_start = b == b'\n';
        }
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.send_raw(&out).await;
        let sent = std::time::Instant::now();
        let reply = self.reply().await;
        (reply, sent.elapsed())
    }

    /// A whole transaction; returns the reply to DATA (or the first failing reply).
    pub async fn send_mail(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        if !r.starts_with("250") {
            return r;
        }
        for rcpt in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            if !r.starts_with("250") {
                let _ = self.cmd("RSET").await;
                return r;
            }
        }
        self.data(message).await
    }
}

/// One message over a fresh connection; returns the reply to DATA.
pub async fn send(addr: SocketAddr, from: &str, rcpts: &[&str], message: &[u8]) -> String {
    let mut c = SmtpClient::ready(addr).await;
    let r = c.send_mail(from, rcpts, message).await;
    let _ = c.cmd("QUIT").await;
    r
}
