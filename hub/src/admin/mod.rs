//! The hub's management surfaces: gRPC tracking and admin services, the HTTP health and
//! metrics endpoints, and the server that binds them all.

pub mod actions;
pub mod grpc;
pub mod health;
pub mod http;
