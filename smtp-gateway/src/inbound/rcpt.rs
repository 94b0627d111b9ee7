use std::borrow::Cow;

use smtp_proto::RcptTo;
use tokio::io::{AsyncRead, AsyncWrite};

use postern_domain::pipeline::RcptDecision;

use crate::backend::Backend;
use crate::reply::Reply;
use crate::session::{Outcome, Phase, Session};

/// The tarpit: each refused recipient past `tarpit_after` waits this much more, up to
/// [`TARPIT_MAX`].
const TARPIT_STEP: std::time::Duration = std::time::Duration::from_millis(500);
const TARPIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

impl<S, B> Session<S, B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    pub(crate) async fn handle_rcpt(&mut self, to: RcptTo<Cow<'_, str>>) -> Outcome {
        let address = to.address;
        if address.is_empty() {
            return self.protocol_error(Reply::bad_recipient_syntax());
        }
        let Phase::Transaction(transaction) = &mut self.state.phase else {
            return self.protocol_error(Reply::need_mail());
        };
        // A repeated recipient gets one copy, so the backend never sees it twice.
        if transaction
            .rcpt_to
            .iter()
            .any(|known| known.eq_ignore_ascii_case(&address))
        {
            return self.respond(Reply::recipient_ok());
        }
        if transaction.rcpt_to.len() >= self.config.max_recipients {
            return self.respond(Reply::too_many_recipients());
        }
        let decision = self.backend.check_rcpt(transaction, &address).await;
        tracing::debug!(rcpt = %address, ?decision, "recipient checked");
        match decision {
            RcptDecision::Accept => transaction.rcpt_to.push(address.into_owned()),
            // Guessing addresses: each refusal counts as an error, and past a few each one
            // is answered more slowly.
            RcptDecision::Unknown | RcptDecision::RelayDenied => {
                self.state.refused_recipients += 1;
                let over = self
                    .state
                    .refused_recipients
                    .saturating_sub(self.config.tarpit_after);
                if over > 0 {
                    let delay = TARPIT_STEP.saturating_mul(over as u32).min(TARPIT_MAX);
                    tokio::time::sleep(delay).await;
                }
                return self.protocol_error(Reply::from(decision));
            }
            RcptDecision::TemporaryFailure | RcptDecision::RateLimited => {}
        }
        self.respond(Reply::from(decision))
    }
}
