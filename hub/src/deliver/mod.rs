//! Delivery: the workers that take `deliver` work items off the bus and hand each document to
//! its endpoint's transport. One module per transport.

pub mod file;
pub mod mesh;
pub mod pull;
pub mod smtp;
pub mod worker;

pub use worker::{attempt, execute, reconcile, spawn_workers, Attempt};

pub use crate::clients::{SendError, Sent};
