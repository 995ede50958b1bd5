//! edthub: an electronic document transfer hub for NHS organisations.
//!
//! The modules follow the flow of a document: [`ingest`] (gRPC) → [`store`] (durable receipt)
//! → [`route`] (ODS directory) → [`bus`] (work queues) → [`deliver`] (one module per transport)
//! → [`acks`] (acknowledgements back from receivers) → [`track`] (the state machine). [`admin`]
//! serves tracking and ops over gRPC and HTTP; [`cli`] is the `edthub` command line.
// One exception, `cli::quiet_on_closed_pipe`, restores SIGPIPE for the CLI.
#![deny(unsafe_code)]

pub mod acks;
pub mod admin;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod deliver;
pub mod durable;
pub mod hub;
pub mod ingest;
pub mod memory;
pub mod notices;
pub mod password;
pub mod render;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod track;
pub mod wire;
