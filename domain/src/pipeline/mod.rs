//! How one SMTP transaction becomes deliveries, one stage per module:
//! authenticate, parse ([`crate::message`]), resolve, decide, plan (the flows), commit, then
//! deliver.

pub mod authenticate;
pub mod commit;
pub mod decide;
pub mod receive;
pub mod resolve;

pub use decide::{Decision, RcptDecision};
pub use receive::{Receipt, check_rcpt, receive};
