use std::future::Future;

use postern_domain::Envelope;
use postern_domain::pipeline::{RcptDecision, Receipt};

/// The domain layer as seen by the MX: the pipeline's decisions, mapped to replies in
/// `reply.rs`. Implemented on the domain by [`crate::DomainBackend`].
pub trait Backend: Send + Sync + 'static {
    /// Decide whether `rcpt` may be added to `envelope` (its sender, client and recipients so far).
    fn check_rcpt(
        &self,
        envelope: &Envelope,
        rcpt: &str,
    ) -> impl Future<Output = RcptDecision> + Send;

    /// Take a complete message (dot-unstuffed, ending in CRLF unless empty).
    fn receive(
        &self,
        envelope: &Envelope,
        message: Vec<u8>,
    ) -> impl Future<Output = Receipt> + Send;
}
