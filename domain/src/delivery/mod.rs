//! Delivery: the queue, and one attempt of one delivery (render, send, record).

pub mod attempt;
pub mod journal;
pub mod queue;
pub mod status;

pub use attempt::{Attempt, Source, attempt, run_due, spawn};
