use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::backend::Backend;
use crate::config::GatewayConfig;
use crate::guard::Admission;
use crate::reply::Reply;
use crate::session::Session;

/// How long running sessions may take to finish once shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Pause after a failed accept (EMFILE and the like) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts SMTP connections until `shutdown` completes, then waits up to
/// [`SHUTDOWN_GRACE`] for running sessions before dropping them.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    config: Arc<GatewayConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(
        config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let admission = Admission::new(Arc::clone(&config));
    let mut sessions = JoinSet::new();
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "session task failed");
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                next_id += 1;
                let span = tracing::info_span!("smtp", session = next_id, peer = %peer);
                let ticket = match admission.admit(peer.ip()) {
                    Ok(ticket) => ticket,
                    Err(reply) => {
                        span.in_scope(|| tracing::info!(%reply, "client over its limits"));
                        refuse(&stream, reply);
                        continue;
                    }
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    span.in_scope(|| tracing::info!("too many connections"));
                    refuse(&stream, Reply::too_many_connections());
                    continue;
                };
                let session = Session::new(
                    stream,
                    peer.ip(),
                    Arc::clone(&config),
                    tls.clone(),
                    Arc::clone(&backend),
                );
                sessions.spawn(
                    async move {
                        tracing::debug!("session started");
                        session.run().await;
                        tracing::debug!("session ended");
                        drop(slot);
                        drop(ticket);
                    }
                    .instrument(span),
                );
            }
        }
    }

    drop(listener);
    tracing::info!(running = sessions.len(), "smtp shutting down");
    let drain = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            aborted = sessions.len(),
            "sessions still running at shutdown"
        );
        sessions.abort_all();
    }
}

/// Tells an over-limit client to come back later without spending a task on it: the
/// reply fits in a fresh socket's send buffer, so a non-blocking write suffices.
fn refuse(stream: &TcpStream, reply: Reply) {
    let mut bytes = Vec::new();
    reply.write_to(&mut bytes);
    if let Err(error) = stream.try_write(&bytes) {
        tracing::debug!(%error, "could not send busy reply");
    }
}
