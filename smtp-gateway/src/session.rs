use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use postern_domain::Envelope;

use crate::backend::Backend;
use crate::config::GatewayConfig;
use crate::reply::Reply;

/// RFC 5321 section 4.5.3.1.6: a text line is at most 1000 octets including the CRLF;
/// no command line is longer, so anything beyond is refused without being buffered.
pub(crate) const MAX_COMMAND_LINE: usize = 1000;
const READ_CHUNK: usize = 8 * 1024;

/// What the session does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Continue,
    Close,
    /// The `220` for STARTTLS is queued: flush it, then hand the stream to TLS.
    StartTls,
}

/// Where the client is in the SMTP dialogue.
#[derive(Debug, Default)]
pub(crate) enum Phase {
    /// Connected (or just upgraded to TLS): only EHLO/HELO opens a transaction.
    #[default]
    AwaitingHelo,
    /// Greeted, no transaction open.
    Ready,
    /// After an accepted `MAIL FROM`: the envelope being built.
    Transaction(Envelope),
}

/// Everything about the dialogue that is not the stream, so it survives the STARTTLS swap.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) phase: Phase,
    pub(crate) helo: String,
    pub(crate) tls_active: bool,
    pub(crate) errors: usize,
    /// Commands so far, and recipients refused so far (they slow the session down).
    pub(crate) commands: usize,
    pub(crate) refused_recipients: usize,
    /// When the session began; it may last `max_session_duration`.
    pub(crate) started: Option<std::time::Instant>,
    /// Bytes read but not yet consumed; may hold several pipelined commands.
    pub(crate) input: Vec<u8>,
    /// Replies not yet written; flushed before every read.
    pub(crate) output: Vec<u8>,
    /// The rest of an over-long line is skipped up to its LF.
    pub(crate) discarding_line: bool,
}

pub(crate) enum Read {
    Data,
    Closed,
    TimedOut,
}

enum Line {
    Command(Vec<u8>),
    TooLong,
}

/// One inbound SMTP session, generic over its stream so tests can drive it in memory
/// and STARTTLS can continue it over `TlsStream<S>`.
pub struct Session<S, B> {
    pub(crate) stream: S,
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) backend: Arc<B>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) remote_ip: IpAddr,
    pub(crate) state: State,
}

impl<S, B> Session<S, B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    /// A session over an accepted connection; `tls` enables STARTTLS.
    pub fn new(
        stream: S,
        remote_ip: IpAddr,
        config: Arc<GatewayConfig>,
        tls: Option<Arc<rustls::ServerConfig>>,
        backend: Arc<B>,
    ) -> Self {
        Self {
            stream,
            config,
            backend,
            tls: tls.map(TlsAcceptor::from),
            remote_ip,
            state: State::default(),
        }
    }

    /// Greets the client and serves it until QUIT, a timeout, an error limit or EOF.
    pub async fn run(mut self) {
        self.state.started = Some(std::time::Instant::now());
        self.reply(Reply::greeting(&self.config.hostname));
        match self.command_loop().await {
            Outcome::StartTls => self.start_tls().await,
            Outcome::Close | Outcome::Continue => self.close().await,
        }
    }

    /// Serves commands until one ends the session or asks for TLS.
    pub(crate) async fn command_loop(&mut self) -> Outcome {
        loop {
            while let Some(line) = self.next_line() {
                let outcome = match line {
                    Line::Command(bytes) => self.handle_command(&bytes).await,
                    Line::TooLong => self.protocol_error(Reply::line_too_long()),
                };
                if outcome != Outcome::Continue {
                    return outcome;
                }
            }
            let left = self.session_time_left();
            if left.is_zero() {
                self.reply(Reply::session_too_long());
                return Outcome::Close;
            }
            match self.read_more(self.config.command_timeout.min(left)).await {
                Read::Data => {}
                Read::Closed => return Outcome::Close,
                Read::TimedOut if self.session_time_left().is_zero() => {
                    self.reply(Reply::session_too_long());
                    return Outcome::Close;
                }
                Read::TimedOut => {
                    tracing::debug!("command timeout");
                    self.reply(Reply::timeout());
                    return Outcome::Close;
                }
            }
        }
    }

    /// Takes the next complete line out of the input, or reports an over-long one once.
    fn next_line(&mut self) -> Option<Line> {
        loop {
            let Some(pos) = self.state.input.iter().position(|&b| b == b'\n') else {
                if self.state.input.len() > MAX_COMMAND_LINE || self.state.discarding_line {
                    self.state.input.clear();
                    if !std::mem::replace(&mut self.state.discarding_line, true) {
                        return Some(Line::TooLong);
                    }
                }
                return None;
            };
            let rest = self.state.input.split_off(pos + 1);
            let line = std::mem::replace(&mut self.state.input, rest);
            if std::mem::take(&mut self.state.discarding_line) {
                continue;
            }
            return Some(if line.len() > MAX_COMMAND_LINE {
                Line::TooLong
            } else {
                Line::Command(line)
            });
        }
    }

    /// What remains of `max_session_duration`.
    fn session_time_left(&self) -> Duration {
        let used = self.state.started.map_or(Duration::ZERO, |s| s.elapsed());
        self.config.max_session_duration.saturating_sub(used)
    }

    async fn handle_command(&mut self, line: &[u8]) -> Outcome {
        self.state.commands += 1;
        if self.state.commands > self.config.max_commands.max(1) {
            self.reply(Reply::too_many_commands());
            return Outcome::Close;
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(error) => {
                tracing::debug!(?error, "bad command");
                return self.protocol_error(parse_error_reply(&error));
            }
        };
        match request {
            Request::Ehlo { host } => self.handle_ehlo(&host),
            Request::Helo { host } => self.handle_helo(&host),
            Request::Mail { mut from } => {
                // smtp-proto wraps a SIZE too large for its integer around to a small one.
                if let Some(size) = declared_size(line) {
                    from.size = size;
                }
                self.handle_mail(from)
            }
            Request::Rcpt { mut to } => {
                // smtp-proto reads `<postmaster>` as an empty address; RFC 5321 section
                // 4.5.1 requires accepting it, while `<>` stays a syntax error.
                if to.address.is_empty() && names_bare_postmaster(line) {
                    to.address = "postmaster".into();
                }
                self.handle_rcpt(to).await
            }
            Request::Data => self.handle_data().await,
            Request::StartTls => self.handle_starttls(),
            Request::Rset => self.handle_rset(),
            Request::Noop { .. } => self.respond(Reply::ok()),
            Request::Vrfy { .. } => self.respond(Reply::vrfy()),
            Request::Help { .. } => self.respond(Reply::help()),
            Request::Quit => {
                self.reply(Reply::quit());
                Outcome::Close
            }
            // An MX offers no AUTH, no CHUNKING, no LMTP and no list expansion.
            Request::Auth { .. }
            | Request::Bdat { .. }
            | Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.protocol_error(Reply::not_implemented()),
        }
    }

    fn handle_rset(&mut self) -> Outcome {
        if !matches!(self.state.phase, Phase::AwaitingHelo) {
            self.state.phase = Phase::Ready;
        }
        self.respond(Reply::reset())
    }

    /// Queues a reply; it is written before the next read.
    pub(crate) fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.state.output);
    }

    pub(crate) fn respond(&mut self, reply: Reply) -> Outcome {
        self.reply(reply);
        Outcome::Continue
    }

    /// Replies to a bad command, and closes once the client has sent too many.
    pub(crate) fn protocol_error(&mut self, reply: Reply) -> Outcome {
        self.reply(reply);
        self.state.errors += 1;
        if self.state.errors >= self.config.max_errors.max(1) {
            tracing::debug!(errors = self.state.errors, "too many errors");
            self.reply(Reply::too_many_errors());
            return Outcome::Close;
        }
        Outcome::Continue
    }

    /// Writes the queued replies, bounded by the command timeout so a client that
    /// never reads cannot hold the session.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.state.output.is_empty() {
            return Ok(());
        }
        let stream = &mut self.stream;
        let output = &self.state.output;
        let write = async move {
            stream.write_all(output).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.config.command_timeout, write).await {
            Ok(result) => result?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
        self.state.output.clear();
        Ok(())
    }

    /// Flushes pending replies, then appends what the client sends next to the input.
    pub(crate) async fn read_more(&mut self, limit: Duration) -> Read {
        if let Err(error) = self.flush().await {
            tracing::debug!(%error, "write failed");
            return Read::Closed;
        }
        self.state.input.reserve(READ_CHUNK);
        match tokio::time::timeout(limit, self.stream.read_buf(&mut self.state.input)).await {
            Ok(Ok(0)) => Read::Closed,
            Ok(Ok(_)) => Read::Data,
            Ok(Err(error)) => {
                tracing::debug!(%error, "read failed");
                Read::Closed
            }
            Err(_) => Read::TimedOut,
        }
    }

    /// Sends what is left to send and closes the stream (a TLS close_notify included).
    pub(crate) async fn close(mut self) {
        if self.flush().await.is_ok() {
            let _ = tokio::time::timeout(self.config.command_timeout, self.stream.shutdown()).await;
        }
    }
}

/// The `SIZE=` a `MAIL` line declares, read here rather than trusted from the parser: a
/// number too large to hold is as large as can be.
fn declared_size(line: &[u8]) -> Option<usize> {
    let params = &line[line.iter().rposition(|&b| b == b'>')? + 1..];
    params.split(|b| b.is_ascii_whitespace()).find_map(|param| {
        let digits = param
            .get(..5)
            .filter(|key| key.eq_ignore_ascii_case(b"SIZE="))
            .map(|_| &param[5..])?;
        digits.iter().try_fold(0usize, |n, &d| {
            d.is_ascii_digit()
                .then(|| n.saturating_mul(10).saturating_add(usize::from(d - b'0')))
        })
    })
}

fn names_bare_postmaster(line: &[u8]) -> bool {
    line.windows(b"<postmaster>".len())
        .any(|window| window.eq_ignore_ascii_case(b"<postmaster>"))
}

fn parse_error_reply(error: &ParseError) -> Reply {
    match error {
        ParseError::UnknownCommand | ParseError::InvalidResponse { .. } => Reply::unknown_command(),
        ParseError::InvalidSenderAddress => Reply::bad_sender_syntax(),
        ParseError::InvalidRecipientAddress => Reply::bad_recipient_syntax(),
        ParseError::SyntaxError { syntax } if syntax.starts_with("RCPT") => {
            Reply::bad_recipient_syntax()
        }
        ParseError::SyntaxError { syntax } if syntax.starts_with("MAIL") => {
            Reply::bad_sender_syntax()
        }
        ParseError::UnsupportedParameter { .. } => Reply::unsupported_parameter(),
        ParseError::ResponseTooLong => Reply::line_too_long(),
        ParseError::SyntaxError { .. }
        | ParseError::InvalidParameter { .. }
        | ParseError::NeedsMoreData { .. } => Reply::syntax_error(),
    }
}
