//! edthub: an electronic document transfer hub for NHS organisations.
//!
//! The modules follow one document through the hub, in order:
//!
//! 1. [`ingest`]: the front doors. [`ingest::grpc`] and [`ingest::smtp`] check what they were
//!    given, then [`ingest::accept`] checks content against its label, answers repeats,
//!    plans the deliveries and stores everything in one transaction, answering once it is
//!    on disk.
//! 2. [`route`]: the ODS directory (reloaded as it changes) and [`route::plan`], which turns
//!    recipients into planned deliveries with the reason each goes where it goes.
//! 3. [`store`]: messages, payloads, deliveries, timelines and indexes (sled), with
//!    [`durable`] (group commit, the durability watermark, shared rounds of file syncs)
//!    shared with the bus and the file transport.
//! 4. [`bus`]: work queues, embedded or RabbitMQ, and the messages nodes send each other
//!    ([`bus::messages`]).
//! 5. [`deliver`]: the worker ([`deliver::worker`]: claim, [`render`] once, send, record) and
//!    one module per transport (file drop, MESH, SMTP, gRPC pull), over the peers' clients in
//!    [`clients`].
//! 6. [`acks`]: every acknowledgement intake (ack files, MESH responses and reports, gRPC
//!    acknowledgements, those another node took) converging on [`acks::apply`]; silence
//!    becomes `overdue`. [`notices`] tells mail senders what failed.
//! 7. [`track`]: the model and the delivery state machine every stage records into.
//!
//! Around the flow: [`cluster`] (home-node events, shared work, the broker relay), [`admin`]
//! (tracking and ops over gRPC and HTTP, and the ops actions: replay, cancel, purge),
//! [`console`] (the same, as HTML pages for people, on the HTTP listener), [`wire`]
//! (records to and from the gRPC types), [`auth`] and [`password`] (who may do what),
//! [`config`], [`hub`] (the shared state every stage is built from), [`server`] (binds it all)
//! and [`cli`] (the `edthub` command line).
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
pub mod console;
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
