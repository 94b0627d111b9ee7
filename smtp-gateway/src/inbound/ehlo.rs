use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::Backend;
use crate::reply::Reply;
use crate::session::{Outcome, Phase, Session};

impl<S, B> Session<S, B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    /// EHLO resets any transaction (RFC 5321 section 4.1.4) and lists the extensions.
    pub(crate) fn handle_ehlo(&mut self, host: &str) -> Outcome {
        self.greeted(host);
        let starttls = self.tls.is_some() && !self.state.tls_active;
        self.respond(Reply::ehlo(
            &self.config.hostname,
            self.config.max_message_size,
            starttls,
        ))
    }

    pub(crate) fn handle_helo(&mut self, host: &str) -> Outcome {
        self.greeted(host);
        self.respond(Reply::helo(&self.config.hostname))
    }

    fn greeted(&mut self, host: &str) {
        host.clone_into(&mut self.state.helo);
        self.state.phase = Phase::Ready;
    }
}
