use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::Backend;
use crate::reply::Reply;
use crate::session::{Outcome, Phase, Read, Session};

enum Received {
    Message(Vec<u8>),
    TooBig,
    Closed,
    TimedOut,
}

impl<S, B> Session<S, B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    pub(crate) async fn handle_data(&mut self) -> Outcome {
        // The transaction ends with this DATA whatever happens to the content.
        let envelope = match std::mem::replace(&mut self.state.phase, Phase::Ready) {
            Phase::Transaction(transaction) if !transaction.rcpt_to.is_empty() => transaction,
            other => {
                let reply = if matches!(other, Phase::Transaction(_)) {
                    Reply::no_valid_recipients()
                } else {
                    Reply::need_mail()
                };
                self.state.phase = other;
                return self.protocol_error(reply);
            }
        };
        self.reply(Reply::start_data());
        if self.flush().await.is_err() {
            return Outcome::Close;
        }
        let message = match self.receive_message().await {
            Received::Message(message) => message,
            Received::TooBig => {
                tracing::debug!("message too big");
                return self.respond(Reply::too_big());
            }
            Received::Closed => return Outcome::Close,
            Received::TimedOut => {
                tracing::debug!("data timeout");
                self.reply(Reply::timeout());
                return Outcome::Close;
            }
        };
        let size = message.len();
        let receipt = self.backend.receive(&envelope, message).await;
        tracing::info!(
            size,
            recipients = envelope.rcpt_to.len(),
            ?receipt,
            "message received"
        );
        self.reply(Reply::from(&receipt));
        if self.flush().await.is_err() {
            return Outcome::Close;
        }
        Outcome::Continue
    }

    /// Reads the content up to CRLF.CRLF, unstuffing dots. Past the size limit the rest
    /// is read and dropped, so an oversized message costs no memory.
    async fn receive_message(&mut self) -> Received {
        let max = self.config.max_message_size;
        let mut receiver = DataReceiver::new();
        let mut message = Vec::new();
        // DataReceiver only sees a dot as special after a CRLF it has read itself, so
        // a first line of "." or ".." would be taken literally: prime it with one.
        receiver.ingest(&mut b"\r\n".iter(), &mut message);
        message.clear();
        let mut discard: Option<DummyDataReceiver> = None;
        loop {
            let mut bytes = self.state.input.iter();
            let done = match discard.as_mut() {
                Some(discard) => discard.ingest(&mut bytes),
                None => receiver.ingest(&mut bytes, &mut message),
            };
            let consumed = self.state.input.len() - bytes.len();
            self.state.input.drain(..consumed);
            // The final "\r" after the dot is removed only at the end, hence the one octet of slack.
            if discard.is_none() && message.len() > max.saturating_add(1) {
                discard = Some(DummyDataReceiver::new_data(&receiver));
                message = Vec::new();
            }
            if done {
                return if discard.is_some() || message.len() > max {
                    Received::TooBig
                } else {
                    Received::Message(message)
                };
            }
            match self.read_more(self.config.data_timeout).await {
                Read::Data => {}
                Read::Closed => return Received::Closed,
                Read::TimedOut => return Received::TimedOut,
            }
        }
    }
}
