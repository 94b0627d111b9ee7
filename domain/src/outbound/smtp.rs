//! The SMTP client of the outbound transport: one message to one recipient per transaction.
//!
//! When the server offers PIPELINING (RFC 2920), `MAIL`, `RCPT` and `DATA` go out in one write,
//! so a message on a warm connection costs two round trips (the commands, then the body) where a
//! client that sends them one by one and probes a pooled connection with `NOOP` first spends
//! five. Fewer round trips also shorten the time a message is in doubt: sent, but its `250`
//! not yet read when the process dies.
//!
//! Also here: STARTTLS (opportunistic or required), AUTH PLAIN and LOGIN (never in clear unless
//! the operator said the link needs no TLS), `SIZE`, `8BITMIME` and `SMTPUTF8`, a timeout on
//! every step, and [`Pool`], the relay's warm connections.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;

use super::SendError;

/// A reply line longer than this is not SMTP (RFC 5321 allows 512 octets).
const MAX_LINE: u64 = 4096;
/// Lines of one multi-line reply, at most.
const MAX_LINES: usize = 200;
/// Bodies up to this size are dot-stuffed into one buffer and written at once; larger ones are
/// written in pieces, so a large message is not held twice.
const ONE_WRITE: usize = 64 * 1024;
/// How long the server may take to answer the end of the message (RFC 5321 4.5.3.2.6).
const END_OF_DATA_WAIT: Duration = Duration::from_secs(600);

/// How connections are secured: STARTTLS never, when offered, or always.
#[derive(Clone)]
pub enum Security {
    /// Plain text: a relay on loopback or a trusted network.
    None,
    /// STARTTLS when the server offers it.
    Opportunistic(Tls),
    /// STARTTLS or no delivery.
    Required(Tls),
}

/// A TLS client configuration and the name the server's certificate must carry.
#[derive(Clone)]
pub struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub name: ServerName<'static>,
}

/// Everything needed to open a session with one server.
#[derive(Clone)]
pub struct Dialer {
    /// Our name in `EHLO`.
    pub hello: String,
    /// For the connection and for each reply.
    pub timeout: Duration,
    pub security: Security,
    pub credentials: Option<(String, String)>,
}

/// What the server offered in its `EHLO` reply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Offers {
    pipelining: bool,
    starttls: bool,
    eight_bit: bool,
    smtputf8: bool,
    /// `SIZE n`; `Some(0)` means no stated limit.
    size: Option<u64>,
    auth: Vec<String>,
}

impl Offers {
    fn parse(reply: &Reply) -> Self {
        let mut offers = Offers::default();
        // The first line is the greeting; each later one is a keyword and its parameters.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split([' ', '=']).filter(|w| !w.is_empty());
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => offers.pipelining = true,
                "STARTTLS" => offers.starttls = true,
                "8BITMIME" => offers.eight_bit = true,
                "SMTPUTF8" => offers.smtputf8 = true,
                "SIZE" => {
                    offers.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                }
                "AUTH" => offers.auth.extend(words.map(|w| w.to_ascii_uppercase())),
                _ => {}
            }
        }
        offers
    }
}

/// One reply: its code and its text, line by line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The code and the text, for a log or a notice.
    fn describe(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }

    /// The reply as a failure of `step`: permanent for 5xx, temporary otherwise.
    fn failure(&self, step: &str) -> SendError {
        let text = format!("{step}: {}", self.describe());
        if (500..600).contains(&self.code) {
            SendError::Permanent(text)
        } else {
            SendError::Temporary(text)
        }
    }
}

/// Why a session ended without delivering.
#[derive(Debug)]
pub enum Failure {
    /// The connection was gone before the server answered anything about this message (an idle
    /// connection the server closed): nothing was accepted, so another connection may try.
    Stale(SendError),
    Failed(SendError),
}

impl From<Failure> for SendError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Stale(e) | Failure::Failed(e) => e,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open session, greeted, secured and authenticated as the [`Dialer`] asked.
pub struct Connection {
    io: BufReader<Box<dyn Io>>,
    offers: Offers,
    timeout: Duration,
    idle_since: Instant,
}

impl Dialer {
    /// Connects to `addr` and opens the session.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Connection, SendError> {
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| SendError::Temporary(format!("{addr}: connection timed out")))?
            .map_err(|e| SendError::Temporary(format!("{addr}: {e}")))?;
        // Commands are written whole: no reason to let a small one wait for an ACK.
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            io: BufReader::new(Box::new(tcp) as Box<dyn Io>),
            offers: Offers::default(),
            timeout: self.timeout,
            idle_since: Instant::now(),
        };
        let greeting = conn.reply("greeting").await?;
        if !greeting.is_positive() {
            // A server that will not talk now is worth trying again (or another MX), whatever
            // its code: nothing about the message has been refused.
            return Err(SendError::Temporary(format!(
                "greeting: {}",
                greeting.describe()
            )));
        }
        conn.hello(&self.hello).await?;
        let tls = match &self.security {
            Security::None => None,
            Security::Opportunistic(tls) if conn.offers.starttls => Some(tls),
            Security::Opportunistic(_) => None,
            Security::Required(_) if !conn.offers.starttls => {
                return Err(SendError::Temporary(
                    "TLS is required but the server does not offer STARTTLS".into(),
                ));
            }
            Security::Required(tls) => Some(tls),
        };
        let secured = match tls {
            Some(tls) => {
                conn = conn.start_tls(tls).await?;
                conn.hello(&self.hello).await?;
                true
            }
            None => false,
        };
        if let Some((user, password)) = &self.credentials {
            if !secured && !matches!(self.security, Security::None) {
                return Err(SendError::Temporary(
                    "the relay offers no STARTTLS, and credentials are never sent in clear \
                     (tls=none allows it, for a relay on a trusted network)"
                        .into(),
                ));
            }
            conn.authenticate(user, password).await?;
        }
        Ok(conn)
    }
}

impl Connection {
    /// Sends `body` from `from` to `rcpt`. The connection can carry another message after an
    /// `Ok`; after an error it should be dropped.
    pub async fn send(&mut self, from: &str, rcpt: &str, body: &[u8]) -> Result<(), Failure> {
        let params = self
            .mail_parameters(from, rcpt, body)
            .map_err(Failure::Failed)?;
        let mail = format!("MAIL FROM:<{from}>{params}\r\n");
        let rcpt_cmd = format!("RCPT TO:<{rcpt}>\r\n");
        // Until the server has answered `MAIL`, a dead connection has accepted nothing.
        let stale = Failure::Stale;
        let (mail_reply, rcpt_reply, data_reply) = if self.offers.pipelining {
            let mut batch = Vec::with_capacity(mail.len() + rcpt_cmd.len() + 6);
            batch.extend_from_slice(mail.as_bytes());
            batch.extend_from_slice(rcpt_cmd.as_bytes());
            batch.extend_from_slice(b"DATA\r\n");
            self.write(&batch).await.map_err(stale)?;
            let mail_reply = self.reply_or_stale("MAIL FROM").await?;
            let rcpt_reply = self.reply("RCPT TO").await.map_err(Failure::Failed)?;
            let data_reply = self.reply("DATA").await.map_err(Failure::Failed)?;
            (mail_reply, Some(rcpt_reply), Some(data_reply))
        } else {
            self.write(mail.as_bytes()).await.map_err(stale)?;
            let mail_reply = self.reply_or_stale("MAIL FROM").await?;
            if !mail_reply.is_positive() {
                (mail_reply, None, None)
            } else {
                let rcpt_reply = self
                    .command(&rcpt_cmd, "RCPT TO")
                    .await
                    .map_err(Failure::Failed)?;
                if !rcpt_reply.is_positive() {
                    (mail_reply, Some(rcpt_reply), None)
                } else {
                    let data_reply = self
                        .command("DATA\r\n", "DATA")
                        .await
                        .map_err(Failure::Failed)?;
                    (mail_reply, Some(rcpt_reply), Some(data_reply))
                }
            }
        };
        let refused = if !mail_reply.is_positive() {
            Some(mail_reply.failure("MAIL FROM"))
        } else {
            match &rcpt_reply {
                Some(r) if !r.is_positive() => Some(r.failure("RCPT TO")),
                _ => None,
            }
        };
        let Some(data_reply) = data_reply else {
            return Err(Failure::Failed(refused.unwrap_or_else(|| {
                SendError::Temporary("the session ended before DATA".into())
            })));
        };
        if data_reply.code != 354 {
            return Err(Failure::Failed(
                refused.unwrap_or_else(|| data_reply.failure("DATA")),
            ));
        }
        if let Some(refused) = refused {
            // A server that takes DATA after refusing the sender or recipient gets an empty
            // message, which it has no one to deliver to (RFC 2920 3.1).
            let _ = self.command(".\r\n", "end of data").await;
            return Err(Failure::Failed(refused));
        }
        self.write_body(body).await.map_err(Failure::Failed)?;
        // Long, as RFC 5321 4.5.3.2.6 asks: giving up early on a server that is still scanning
        // the message would send it again after it had been accepted.
        let end = self
            .reply_within("end of data", self.timeout.max(END_OF_DATA_WAIT))
            .await
            .map_err(Failure::Failed)?;
        if !end.is_positive() {
            return Err(Failure::Failed(end.failure("message")));
        }
        self.idle_since = Instant::now();
        Ok(())
    }

    /// Ends the session politely (best effort).
    pub async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply("QUIT").await;
        }
    }

    /// `MAIL FROM` parameters for this message, or why this server cannot take it.
    fn mail_parameters(&self, from: &str, rcpt: &str, body: &[u8]) -> Result<String, SendError> {
        let mut params = String::new();
        if let Some(limit) = self.offers.size {
            if limit > 0 && body.len() as u64 > limit {
                return Err(SendError::Permanent(format!(
                    "the message is {} bytes; the server takes at most {limit}",
                    body.len()
                )));
            }
            params.push_str(&format!(" SIZE={}", body.len()));
        }
        if self.offers.eight_bit && !body.is_ascii() {
            params.push_str(" BODY=8BITMIME");
        }
        if !from.is_ascii() || !rcpt.is_ascii() {
            if !self.offers.smtputf8 {
                return Err(SendError::Permanent(
                    "the address is internationalized and the server does not offer SMTPUTF8"
                        .into(),
                ));
            }
            params.push_str(" SMTPUTF8");
        }
        Ok(params)
    }

    /// `EHLO`, or `HELO` for a server that does not know it.
    async fn hello(&mut self, name: &str) -> Result<(), SendError> {
        let ehlo = self.command(&format!("EHLO {name}\r\n"), "EHLO").await?;
        if ehlo.is_positive() {
            self.offers = Offers::parse(&ehlo);
            return Ok(());
        }
        let helo = self.command(&format!("HELO {name}\r\n"), "HELO").await?;
        if !helo.is_positive() {
            return Err(SendError::Temporary(format!("HELO: {}", helo.describe())));
        }
        self.offers = Offers::default();
        Ok(())
    }

    async fn start_tls(mut self, tls: &Tls) -> Result<Connection, SendError> {
        let reply = self.command("STARTTLS\r\n", "STARTTLS").await?;
        if reply.code != 220 {
            return Err(SendError::Temporary(format!(
                "STARTTLS: {}",
                reply.describe()
            )));
        }
        if !self.io.buffer().is_empty() {
            // Bytes before the handshake would be read as if they had come over TLS.
            return Err(SendError::Temporary(
                "the server sent data after its STARTTLS reply".into(),
            ));
        }
        let plain = self.io.into_inner();
        let secured =
            tokio::time::timeout(self.timeout, tls.connector.connect(tls.name.clone(), plain))
                .await
                .map_err(|_| SendError::Temporary("TLS handshake timed out".into()))?
                .map_err(|e| SendError::Temporary(format!("TLS handshake: {e}")))?;
        Ok(Connection {
            io: BufReader::new(Box::new(secured) as Box<dyn Io>),
            offers: Offers::default(),
            timeout: self.timeout,
            idle_since: Instant::now(),
        })
    }

    /// AUTH PLAIN when offered, else LOGIN. A refusal is temporary: it is our configuration
    /// that is wrong, and the mail waits for it to be fixed rather than bounce.
    async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), SendError> {
        use data_encoding::BASE64;
        let refused = |r: &Reply| {
            SendError::Temporary(format!(
                "the relay refused our credentials: {}",
                r.describe()
            ))
        };
        let offered = |m: &str| self.offers.auth.iter().any(|a| a == m);
        let (plain, login) = (offered("PLAIN"), offered("LOGIN"));
        let done = if plain {
            let token = BASE64.encode(format!("\0{user}\0{password}").as_bytes());
            self.command(&format!("AUTH PLAIN {token}\r\n"), "AUTH")
                .await?
        } else if login {
            let r = self.command("AUTH LOGIN\r\n", "AUTH").await?;
            if r.code != 334 {
                return Err(refused(&r));
            }
            let r = self
                .command(&format!("{}\r\n", BASE64.encode(user.as_bytes())), "AUTH")
                .await?;
            if r.code != 334 {
                return Err(refused(&r));
            }
            self.command(
                &format!("{}\r\n", BASE64.encode(password.as_bytes())),
                "AUTH",
            )
            .await?
        } else {
            return Err(SendError::Temporary(
                "credentials are configured but the relay offers neither AUTH PLAIN nor LOGIN"
                    .into(),
            ));
        };
        if done.code != 235 {
            return Err(refused(&done));
        }
        Ok(())
    }

    async fn command(&mut self, line: &str, step: &str) -> Result<Reply, SendError> {
        self.write(line.as_bytes()).await?;
        self.reply(step).await
    }

    /// The first reply of a transaction: no answer at all, or `421`, on a connection that
    /// sat idle means the server had closed it.
    async fn reply_or_stale(&mut self, step: &str) -> Result<Reply, Failure> {
        match self.reply(step).await {
            Ok(r) if r.code == 421 => Err(Failure::Stale(r.failure(step))),
            Ok(r) => Ok(r),
            Err(e) => Err(Failure::Stale(e)),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let io = self.io.get_mut();
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| SendError::Temporary("timed out writing to the server".into()))?
            .map_err(|e| SendError::Temporary(format!("writing to the server: {e}")))
    }

    /// The body, dot-stuffed (RFC 5321 4.5.2), ending with CRLF and the lone dot.
    async fn write_body(&mut self, body: &[u8]) -> Result<(), SendError> {
        let tail: &[u8] = if body.is_empty() || body.ends_with(b"\r\n") {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        };
        if body.len() <= ONE_WRITE {
            let mut wire = Vec::with_capacity(body.len() + body.len() / 64 + 5);
            for piece in stuffed(body) {
                wire.extend_from_slice(piece);
            }
            wire.extend_from_slice(tail);
            return self.write(&wire).await;
        }
        // In slices, each with its own timeout: a slow link gets as long as it needs, as long
        // as it moves.
        for piece in stuffed(body) {
            for slice in piece.chunks(ONE_WRITE) {
                self.write(slice).await?;
            }
        }
        self.write(tail).await
    }

    async fn reply(&mut self, step: &str) -> Result<Reply, SendError> {
        self.reply_within(step, self.timeout).await
    }

    async fn reply_within(&mut self, step: &str, wait: Duration) -> Result<Reply, SendError> {
        tokio::time::timeout(wait, read_reply(&mut self.io))
            .await
            .map_err(|_| SendError::Temporary(format!("{step}: no reply in time")))?
            .map_err(|e| SendError::Temporary(format!("{step}: {e}")))
    }
}

/// The body as slices to write in order, with a dot added before each line that starts with
/// one (after any LF, so a server that ends lines at a bare LF reads it the same way).
fn stuffed(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = body;
    let mut at_line_start = true;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if at_line_start && rest[0] == b'.' {
            at_line_start = false;
            return Some(&b"."[..]);
        }
        // Up to and including the next LF that a dot follows, or everything.
        let cut = rest
            .windows(2)
            .position(|w| w == b"\n.")
            .map_or(rest.len(), |i| i + 1);
        let (piece, after) = rest.split_at(cut);
        rest = after;
        at_line_start = piece.ends_with(b"\n");
        Some(piece)
    })
}

/// Reads one reply: lines `NNN-text` up to the last, `NNN text` (or a bare `NNN`).
async fn read_reply<R: AsyncBufRead + Unpin>(io: &mut R) -> std::io::Result<Reply> {
    use std::io::{Error, ErrorKind};
    let mut lines = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *io)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        if !line.ends_with(b"\n") {
            return Err(Error::new(ErrorKind::InvalidData, "reply line too long"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let code = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c) || (100..200).contains(c))
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("not a reply: {text:?}")))?;
        let more = match text.as_bytes().get(3) {
            None | Some(b' ') => false,
            Some(b'-') => true,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("not a reply: {text:?}"),
                ));
            }
        };
        // The text ends up in logs, notices and bounces: no control characters from a server.
        let words = text.get(4..).unwrap_or_default();
        lines.push(words.chars().filter(|c| !c.is_control()).collect());
        if !more {
            return Ok(Reply { code, lines });
        }
        if lines.len() >= MAX_LINES {
            return Err(Error::new(
                ErrorKind::InvalidData,
                "reply has too many lines",
            ));
        }
    }
}

/// How long a connection may sit idle in the pool before it is closed rather than reused.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Warm connections to one server (the relay, or one address of a mail host), reused
/// message after message.
pub struct Pool {
    host: String,
    port: u16,
    dialer: Dialer,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Pool {
    pub fn new(host: String, port: u16, dialer: Dialer, max_idle: usize) -> Self {
        Self {
            host,
            port,
            dialer,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    pub async fn send(&self, from: &str, rcpt: &str, body: &[u8]) -> Result<(), SendError> {
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            match conn.send(from, rcpt, body).await {
                Ok(()) => {
                    self.checkin(conn);
                    return Ok(());
                }
                // The server closed it while it sat idle: the next one is fresher. The loop
                // ends, because the pool only shrinks and a new connection is never stale.
                Err(Failure::Stale(_)) if reused => continue,
                Err(f) => return Err(f.into()),
            }
        }
    }

    async fn connect(&self) -> Result<Connection, SendError> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| SendError::Temporary(format!("{}: {e}", self.host)))?;
        let mut last = SendError::Temporary(format!("{} has no address", self.host));
        for addr in addrs {
            match self.dialer.connect(addr).await {
                Ok(conn) => return Ok(conn),
                Err(e @ SendError::Permanent(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.idle_since.elapsed() < IDLE_LIMIT {
                return Some(conn);
            }
        }
        None
    }

    /// Closes the connections idle past [`IDLE_LIMIT`]; returns whether any is left.
    pub fn prune(&self) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|conn| conn.idle_since.elapsed() < IDLE_LIMIT);
        !idle.is_empty()
    }

    fn checkin(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn wire(body: &[u8]) -> Vec<u8> {
        stuffed(body).flat_map(|p| p.iter().copied()).collect()
    }

    #[test]
    fn lines_that_start_with_a_dot_get_another() {
        assert_eq!(wire(b"a\r\n.b\r\n"), b"a\r\n..b\r\n");
        assert_eq!(wire(b".x\r\n"), b"..x\r\n");
        assert_eq!(wire(b".\r\n.\r\n"), b"..\r\n..\r\n");
        assert_eq!(wire(b"a.b\r\nno dot\r\n"), b"a.b\r\nno dot\r\n");
        assert_eq!(wire(b"bare\n.lf"), b"bare\n..lf");
        assert_eq!(wire(b""), b"");
    }

    #[tokio::test]
    async fn replies_are_read_line_by_line_and_bad_ones_refused() {
        let read = |s: &'static [u8]| async move { read_reply(&mut BufReader::new(s)).await };
        let r = read(b"250-mx.test hi\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
            .await
            .expect("reply");
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["mx.test hi", "PIPELINING", "SIZE 1000"]);
        let offers = Offers::parse(&r);
        assert!(offers.pipelining && !offers.starttls);
        assert_eq!(offers.size, Some(1000));
        assert_eq!(read(b"354\r\n").await.expect("bare code").code, 354);
        let r = read(b"550 5.1.1 no\x1b[2J such\x07 user\r\n")
            .await
            .expect("reply");
        assert_eq!(
            r.lines,
            ["5.1.1 no[2J such user"],
            "control characters are dropped"
        );
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"250x\r\n",
            b"999 no\r\n",
            b"250-more\r\n",
        ] {
            assert!(
                read(bad).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"250 ".as_slice(), &[b'a'; 5000], b"\r\n"].concat();
        let long: &'static [u8] = Box::leak(long.into_boxed_slice());
        assert!(
            read(long).await.is_err(),
            "a reply line without end is refused"
        );
    }

    #[test]
    fn offers_read_auth_in_both_spellings() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "mx".into(),
                "AUTH=LOGIN".into(),
                "auth plain cram-md5".into(),
                "8BITMIME".into(),
                "SIZE".into(),
            ],
        };
        let offers = Offers::parse(&reply);
        assert_eq!(offers.auth, ["LOGIN", "PLAIN", "CRAM-MD5"]);
        assert!(offers.eight_bit);
        assert_eq!(offers.size, Some(0));
    }

    /// A scripted server on loopback. With `pipelining` it offers PIPELINING and insists on
    /// it: it answers `MAIL` only once `RCPT` and `DATA` have arrived too. It closes each
    /// connection after `per_connection` messages, and refuses recipients named `refused@…`.
    struct Fake {
        addr: SocketAddr,
        got: Arc<Mutex<Vec<Vec<u8>>>>,
        connections: Arc<std::sync::atomic::AtomicUsize>,
    }

    async fn fake(pipelining: bool, per_connection: usize) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let fake = Fake {
            addr: listener.local_addr().expect("addr"),
            got: Arc::default(),
            connections: Arc::default(),
        };
        let (got, connections) = (Arc::clone(&fake.got), Arc::clone(&fake.connections));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let got = Arc::clone(&got);
                tokio::spawn(session(stream, pipelining, per_connection, got));
            }
        });
        fake
    }

    async fn session(
        stream: TcpStream,
        pipelining: bool,
        per_connection: usize,
        got: Arc<Mutex<Vec<Vec<u8>>>>,
    ) -> std::io::Result<()> {
        let mut io = BufReader::new(stream);
        io.get_mut().write_all(b"220 fake ESMTP\r\n").await?;
        let mut delivered = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if io.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let upper = line.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") {
                let pipe = if pipelining { "250-PIPELINING\r\n" } else { "" };
                format!("250-fake\r\n{pipe}250-AUTH PLAIN\r\n250 8BITMIME")
            } else if upper.starts_with("AUTH PLAIN ") {
                let token = data_encoding::BASE64.encode(b"\0me\0secret");
                if line.trim_end().ends_with(&token) {
                    "235 2.7.0 ok".into()
                } else {
                    "535 5.7.8 bad credentials".into()
                }
            } else if upper.starts_with("MAIL FROM:") {
                "250 2.1.0 ok".into()
            } else if upper.starts_with("RCPT TO:") && upper.contains("REFUSED@") {
                "550 5.1.1 no such user".into()
            } else if upper.starts_with("RCPT TO:") {
                "250 2.1.5 ok".into()
            } else if upper.starts_with("DATA") {
                "354 go ahead".into()
            } else if upper.starts_with("QUIT") {
                io.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                "502 5.5.2 what".into()
            };
            if pipelining && upper.starts_with("MAIL FROM:") {
                // Answer nothing until the whole batch is here.
                let mut rest = [String::new(), String::new()];
                for next in &mut rest {
                    let read = io.read_line(next);
                    if tokio::time::timeout(Duration::from_secs(5), read)
                        .await
                        .is_err()
                    {
                        return Ok(()); // not pipelined: the client times out and says so
                    }
                }
                let rcpt = rest[0].to_ascii_uppercase();
                // `lenient-refused@`: a server that refuses the recipient yet says 354.
                let lenient = rcpt.contains("LENIENT-REFUSED@");
                let refused = !lenient && rcpt.contains("REFUSED@");
                let batch = if refused {
                    "250 2.1.0 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"
                } else if lenient {
                    "250 2.1.0 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n"
                } else {
                    "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"
                };
                io.get_mut().write_all(batch.as_bytes()).await?;
                if refused {
                    continue;
                }
            } else {
                io.get_mut()
                    .write_all(format!("{reply}\r\n").as_bytes())
                    .await?;
                if !upper.starts_with("DATA") {
                    continue;
                }
            }
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if io.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
            }
            got.lock().expect("lock").push(data);
            io.get_mut().write_all(b"250 2.0.0 queued\r\n").await?;
            delivered += 1;
            if delivered == per_connection {
                return Ok(());
            }
        }
    }

    fn pool(fake: &Fake) -> Pool {
        let dialer = Dialer {
            hello: "postern.test".into(),
            timeout: Duration::from_secs(10),
            security: Security::None,
            credentials: None,
        };
        Pool::new("127.0.0.1".into(), fake.addr.port(), dialer, 4)
    }

    const BODY: &[u8] = b"Subject: hi\r\n\r\n.starts with a dot\r\n..two\r\nend\r\n";

    #[tokio::test]
    async fn commands_are_pipelined_and_a_warm_connection_is_reused() {
        let fake = fake(true, usize::MAX).await;
        let pool = pool(&fake);
        for _ in 0..3 {
            pool.send("a@x.test", "b@y.test", BODY).await.expect("sent");
        }
        assert_eq!(*fake.got.lock().expect("lock"), vec![BODY.to_vec(); 3]);
        assert_eq!(
            fake.connections.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
    }

    #[tokio::test]
    async fn a_server_without_pipelining_gets_one_command_at_a_time() {
        let fake = fake(false, usize::MAX).await;
        let pool = pool(&fake);
        pool.send("a@x.test", "b@y.test", b"no final newline")
            .await
            .expect("sent");
        assert_eq!(
            *fake.got.lock().expect("lock"),
            vec![b"no final newline\r\n".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_without_losing_the_message() {
        for pipelining in [true, false] {
            let fake = fake(pipelining, 1).await;
            let pool = pool(&fake);
            for _ in 0..3 {
                pool.send("a@x.test", "b@y.test", BODY).await.expect("sent");
            }
            assert_eq!(fake.got.lock().expect("lock").len(), 3);
            assert_eq!(
                fake.connections.load(std::sync::atomic::Ordering::SeqCst),
                3
            );
        }
    }

    #[tokio::test]
    async fn a_refused_recipient_is_a_permanent_failure_with_the_servers_words() {
        for pipelining in [true, false] {
            let fake = fake(pipelining, usize::MAX).await;
            let pool = pool(&fake);
            let e = pool
                .send("a@x.test", "refused@y.test", BODY)
                .await
                .expect_err("refused");
            assert!(e.is_permanent(), "{e}");
            assert!(e.to_string().contains("550 5.1.1 no such user"), "{e}");
            assert!(fake.got.lock().expect("lock").is_empty());
        }
    }

    #[tokio::test]
    async fn a_server_that_says_354_after_refusing_the_recipient_gets_an_empty_message() {
        let fake = fake(true, usize::MAX).await;
        let pool = pool(&fake);
        let e = pool
            .send("a@x.test", "lenient-refused@y.test", BODY)
            .await
            .expect_err("refused");
        assert!(e.is_permanent(), "{e}");
        assert!(e.to_string().contains("550 5.1.1 no such user"), "{e}");
        // Nothing of the message went out: the server saw an empty one. The failed
        // transaction's connection is not reused (its server may still hold the sender), so
        // the next message goes whole over a new one.
        pool.send("a@x.test", "b@y.test", BODY).await.expect("sent");
        assert_eq!(
            *fake.got.lock().expect("lock"),
            vec![Vec::new(), BODY.to_vec()]
        );
        assert_eq!(
            fake.connections.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_a_temporary_failure() {
        let fake = fake(true, 1).await;
        let mut pool = pool(&fake);
        pool.port = 1;
        let e = pool
            .send("a@x.test", "b@y.test", BODY)
            .await
            .expect_err("no server");
        assert!(!e.is_permanent(), "{e}");
    }

    #[tokio::test]
    async fn credentials_go_only_over_tls_unless_the_link_needs_none() {
        let fake = fake(true, usize::MAX).await;
        let tls = Tls {
            connector: super::super::connector(super::super::Verify::Nothing).expect("tls"),
            name: ServerName::try_from("127.0.0.1").expect("name"),
        };
        let mut pool = pool(&fake);
        pool.dialer.credentials = Some(("me".into(), "secret".into()));
        pool.dialer.security = Security::Opportunistic(tls);
        let e = pool
            .send("a@x.test", "b@y.test", BODY)
            .await
            .expect_err("in clear");
        assert!(e.to_string().contains("never sent in clear"), "{e}");
        assert!(!e.is_permanent(), "{e}");

        pool.dialer.security = Security::None;
        pool.send("a@x.test", "b@y.test", BODY)
            .await
            .expect("tls=none: logged in and sent");
        pool.dialer.credentials = Some(("me".into(), "wrong".into()));
        let fresh = Pool::new("127.0.0.1".into(), fake.addr.port(), pool.dialer.clone(), 1);
        let e = fresh
            .send("a@x.test", "b@y.test", BODY)
            .await
            .expect_err("refused");
        assert!(
            e.to_string().contains("refused our credentials: 535"),
            "{e}"
        );
        assert!(!e.is_permanent(), "a wrong password waits to be fixed: {e}");
        assert_eq!(fake.got.lock().expect("lock").len(), 1);
    }
}
