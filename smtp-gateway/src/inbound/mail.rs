use std::borrow::Cow;

use smtp_proto::{MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, MailFrom};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::Backend;
use crate::reply::Reply;
use postern_domain::Envelope;

use crate::session::{Outcome, Phase, Session};

impl<S, B> Session<S, B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    pub(crate) fn handle_mail(&mut self, from: MailFrom<Cow<'_, str>>) -> Outcome {
        match self.state.phase {
            Phase::AwaitingHelo => return self.protocol_error(Reply::need_helo()),
            Phase::Transaction(_) => return self.protocol_error(Reply::nested_mail()),
            Phase::Ready => {}
        }
        // BINARYMIME needs CHUNKING, which is not offered.
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return self.respond(Reply::unsupported_parameter());
        }
        // A declared size is refused before the client spends bandwidth on it (RFC 1870).
        if from.size > self.config.max_message_size {
            return self.respond(Reply::too_big());
        }
        let mut envelope = Envelope::new(
            from.address.into_owned(),
            self.remote_ip,
            self.state.helo.clone(),
            self.state.tls_active,
        );
        envelope.trusted = self.config.is_trusted(self.remote_ip);
        envelope.smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        envelope.body_8bit = from.flags & MAIL_BODY_8BITMIME != 0;
        self.state.phase = Phase::Transaction(envelope);
        self.respond(Reply::sender_ok())
    }
}
