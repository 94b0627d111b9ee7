//! A real SMTP server on a loopback port that keeps what it receives: the relay in tests.
//!
//! It can be taken down and brought back on the same port, and told to refuse recipients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of the first header `name` (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines = head.split("\r\n").peekable();
        while let Some(line) = lines.next() {
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                let mut value = v.trim().to_string();
                while let Some(next) = lines.peek() {
                    if next.starts_with(' ') || next.starts_with('\t') {
                        value.push(' ');
                        value.push_str(next.trim());
                        lines.next();
                    } else {
                        break;
                    }
                }
                return Some(value);
            }
        }
        None
    }

    /// The body: everything after the first empty line.
    pub fn body(&self) -> &[u8] {
        let pos = self
            .data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or(self.data.len());
        &self.data[pos..]
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Recipients answered with `550 5.1.1` at RCPT.
    refuse: Mutex<Vec<String>>,
    arrived: Notify,
    /// Connections accepted so far.
    connections: std::sync::atomic::AtomicUsize,
}

pub struct Sink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// Offers STARTTLS with this (self-signed) certificate when set.
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let mut sink = Sink {
            addr,
            shared: Arc::new(Shared::default()),
            tls: None,
            stop: None,
            task: None,
        };
        sink.run(listener);
        sink
    }

    /// A sink that offers STARTTLS with a self-signed certificate for `sink.test`, made in
    /// `dir`: a relay that no system root vouches for.
    pub async fn start_tls(dir: &std::path::Path) -> Sink {
        let config = postern_smtp_gateway::load_or_create_tls(
            &dir.join("sink-cert.pem"),
            &dir.join("sink-key.pem"),
            "sink.test",
        )
        .expect("sink certificate");
        Self::start_with_tls(config).await
    }

    /// A sink that requires STARTTLS with `config`'s certificate.
    pub async fn start_with_tls(config: std::sync::Arc<rustls::ServerConfig>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let mut sink = Sink {
            addr,
            shared: Arc::new(Shared::default()),
            tls: Some(tokio_rustls::TlsAcceptor::from(config)),
            stop: None,
            task: None,
        };
        sink.run(listener);
        sink
    }

    fn run(&mut self, listener: TcpListener) {
        let (tx, mut rx) = watch::channel(false);
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = rx.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        shared.connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let (shared, tls) = (shared.clone(), tls.clone());
                        tokio::spawn(async move { let _ = session(stream, shared, tls).await; });
                    }
                }
            }
        }));
    }

    /// Stops listening: connections to the port are refused until `resume`.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind sink");
        self.run(listener);
    }

    pub fn refuse(&self, rcpt: &str) {
        self.shared
            .refuse
            .lock()
            .expect("lock")
            .push(rcpt.to_lowercase());
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Waits until at least `n` messages arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let now = self.received();
            if now.len() >= n {
                return now;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "sink: expected {n} message(s) within {timeout:?}, got {}",
                    self.received().len()
                );
            }
        }
    }

    /// Messages received for `rcpt`.
    pub fn for_rcpt(&self, rcpt: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.rcpts.iter().any(|x| x.eq_ignore_ascii_case(rcpt)))
            .collect()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(b"220 sink.test ESMTP\r\n")
        .await?;
    let mut line = Vec::new();
    if let Some(acceptor) = tls {
        // Until STARTTLS: EHLO offers it, anything else is refused.
        loop {
            line.clear();
            if stream.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let upper = String::from_utf8_lossy(&line)
                .trim_end()
                .to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-sink.test\r\n250 STARTTLS\r\n"
            } else if upper == "STARTTLS" {
                stream.get_mut().write_all(b"220 2.0.0 Ready\r\n").await?;
                let secured = acceptor.accept(stream.into_inner()).await?;
                return dialogue(BufReader::new(secured), shared).await;
            } else if upper == "QUIT" {
                stream.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            } else {
                b"530 5.7.0 Must issue a STARTTLS command first\r\n"
            };
            stream.get_mut().write_all(reply).await?;
        }
    }
    dialogue(stream, shared).await
}

async fn dialogue<S>(mut reader: BufReader<S>, shared: Arc<Shared>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut mail_from = String::new();
    let mut rcpts = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 100000000"
                .into()
        } else if upper.starts_with("HELO") {
            "250 sink.test".into()
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = angle(&cmd[10..]);
            rcpts.clear();
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = angle(&cmd[8..]);
            if shared
                .refuse
                .lock()
                .expect("lock")
                .contains(&rcpt.to_lowercase())
            {
                "550 5.1.1 No such user".into()
            } else {
                rcpts.push(rcpt);
                "250 2.1.5 Ok".into()
            }
        } else if upper == "DATA" && rcpts.is_empty() {
            // As Postfix answers a pipelined DATA whose recipients were all refused.
            "554 5.5.1 Error: no valid recipients".into()
        } else if upper == "DATA" {
            reader
                .get_mut()
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = Vec::new();
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                let content = if line.starts_with(b"..") {
                    &line[1..]
                } else {
                    &line[..]
                };
                data.extend_from_slice(content);
            }
            shared.received.lock().expect("lock").push(Received {
                mail_from: mail_from.clone(),
                rcpts: std::mem::take(&mut rcpts),
                data,
            });
            shared.arrived.notify_waiters();
            "250 2.0.0 Ok: queued".into()
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            reader.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized".into()
        };
        let w = reader.get_mut();
        w.write_all(reply.as_bytes()).await?;
        w.write_all(b"\r\n").await?;
    }
}

fn angle(s: &str) -> String {
    let s = s.trim();
    let inner = s.strip_prefix('<').unwrap_or(s);
    inner.split('>').next().unwrap_or_default().to_string()
}
