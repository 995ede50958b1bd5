//! End-to-end tests: the real `edthub` binary, real files, real gRPC, the real CLI.

mod access;
mod amqp;
mod bad_input;
mod browser;
mod console;
mod crash;
mod failures;
mod formats;
mod mesh;
mod mllp;
mod mllp_out;
mod ops;
mod pathology;
mod receiver;
mod routing;
mod smtp;
mod spine;
