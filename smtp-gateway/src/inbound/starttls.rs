use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::Backend;
use crate::reply::Reply;
use crate::session::{Outcome, Phase, Session};

impl<S, B> Session<S, B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    B: Backend,
{
    pub(crate) fn handle_starttls(&mut self) -> Outcome {
        if self.state.tls_active {
            return self.protocol_error(Reply::tls_already_active());
        }
        if self.tls.is_none() {
            return self.protocol_error(Reply::not_implemented());
        }
        self.reply(Reply::ready_to_start_tls());
        // Whatever was pipelined after STARTTLS came in clear text, where anyone on the
        // path could have added it (CVE-2011-0411): it must never run inside TLS.
        self.state.input.clear();
        self.state.discarding_line = false;
        Outcome::StartTls
    }

    /// Sends the queued `220`, performs the handshake, and serves the rest of the
    /// session over `TlsStream<S>` with the same state, reset to "needs EHLO".
    pub(crate) async fn start_tls(mut self) {
        let Some(acceptor) = self.tls.clone() else {
            return self.close().await;
        };
        if self.flush().await.is_err() {
            return;
        }
        let Session {
            stream,
            config,
            backend,
            tls,
            remote_ip,
            mut state,
        } = self;
        let stream =
            match tokio::time::timeout(config.command_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
        tracing::debug!("TLS established");
        state.tls_active = true;
        state.phase = Phase::AwaitingHelo;
        state.helo.clear();
        state.input.clear();
        let mut session = Session {
            stream,
            config,
            backend,
            tls,
            remote_ip,
            state,
        };
        // `tls_active` makes a second STARTTLS a 503, so this loop never asks for TLS again.
        let _ = session.command_loop().await;
        session.close().await;
    }
}
