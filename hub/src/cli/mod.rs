//! The `edthub` command line: `serve` runs a node; every other subcommand is an ops tool that
//! talks to a running hub over its gRPC admin API (`--hub` / `EDTHUB_ADDR`, bearer token from
//! `EDTHUB_TOKEN`).
//!
//! Exit codes: 0 success; 1 the hub refused or could not do what was asked (not found, invalid
//! argument, nothing replayed); 2 usage error; 3 the hub could not be reached or is
//! unavailable; 4 authentication or permission failure.

mod acks;
mod audit;
mod bench;
mod bench_console;
mod bench_mllp;
mod cancel;
pub(crate) mod client;
mod directory;
mod explain;
mod list;
mod mesh;
mod nodes;
mod output;
mod purge;
mod replay;
mod show;
mod stats;
mod submit;

use crate::config::Config;
use crate::config::ListenAddr;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "edthub",
    version,
    about = "Electronic document transfer hub for NHS organisations"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a hub node.
    Serve(ServeArgs),
    /// Find and inspect messages.
    #[command(subcommand)]
    Messages(MessagesCmd),
    /// Replay failed, rejected, unroutable, cancelled or overdue deliveries: by message id, or
    /// every message matching a filter.
    Replay(ReplayArgs),
    /// Cancel a delivery that has not reached a final state.
    Cancel(CancelArgs),
    /// Counts of messages and deliveries by state, queue depth, dead letters.
    Stats(StatsArgs),
    /// How documents would be routed, and why.
    #[command(subcommand)]
    Route(RouteCmd),
    /// The directory: reload it, look an organisation up.
    #[command(subcommand)]
    Directory(DirectoryCmd),
    /// Submit a document from a file (for trying the hub out and for scripts).
    Submit(SubmitArgs),
    /// Drive a running hub with a realistic document mix and print one `bench ...` line.
    Bench(bench::BenchArgs),
    /// RabbitMQ: print the topology the hub declares.
    #[command(subcommand)]
    Amqp(AmqpCmd),
    /// MESH: read the hub's inbox now.
    #[command(subcommand)]
    Mesh(MeshCmd),
    /// Acknowledgements the hub could not match or read (kept, never dropped).
    #[command(subcommand)]
    Acks(AcksCmd),
    /// Messages with a delivery that is overdue (no acknowledgement within the SLA).
    Overdue(OverdueArgs),
    /// Remove the payload bytes of old messages whose every delivery is final (metadata and
    /// timeline stay).
    Purge(PurgeArgs),
    /// The audit trail: who did what to which message, and when.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Print an Argon2id hash (PHC string) of a password read from stdin, for
    /// `smtp.users.password_hash`: `printf %s "$PASSWORD" | edthub hash-password`.
    HashPassword,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), e.g. `edthub man > edthub.1`.
    Man,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Every timeline event between two times, oldest first, as CSV or JSON (to stdout).
    Export(AuditArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum AuditFormat {
    Csv,
    Json,
}

#[derive(Args, Debug)]
struct AuditArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// From this long ago (e.g. 24h, 7d), a day (2026-02-28) or an RFC 3339 time.
    #[arg(long)]
    since: String,
    /// Up to this long ago or time (default: now).
    #[arg(long)]
    until: Option<String>,
    #[arg(long, value_enum, default_value = "csv")]
    format: AuditFormat,
    /// The same as --format json.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PurgeArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// Received longer ago than this (e.g. 30d, 12h). Default: the hub's
    /// retention.payload_days.
    #[arg(long)]
    older_than: Option<String>,
    /// Show what would go without removing anything.
    #[arg(long)]
    dry_run: bool,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct OverdueArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// At most this many messages.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum MeshCmd {
    /// Read the MESH inbox now: ITK3 responses and MESH reports are applied to deliveries.
    Poll(JsonArgs),
}

#[derive(Subcommand, Debug)]
enum AcksCmd {
    /// List unmatched or unreadable acknowledgements, newest first, with where each is kept.
    Unmatched(UnmatchedArgs),
}

#[derive(Args, Debug)]
struct UnmatchedArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum AmqpCmd {
    /// Print RabbitMQ definitions (JSON, for `rabbitmqctl import_definitions`) of every queue
    /// the hub nodes named declare: the shared deliver queue, each node's home and claims
    /// queues, with their dead-letter and delay queues, and the claims exchange. Uses the queue prefix and delivery limit of the
    /// config given (defaults otherwise).
    Definitions(DefinitionsArgs),
}

#[derive(Args, Debug)]
struct DefinitionsArgs {
    /// Config file whose [amqp] and [delivery] settings to use.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A hub node's name (its `node` setting); give it once per node.
    #[arg(long = "node", required = true)]
    nodes: Vec<String>,
    /// RabbitMQ virtual host.
    #[arg(long, default_value = "/")]
    vhost: String,
}

fn definitions(a: &DefinitionsArgs) -> anyhow::Result<ExitCode> {
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let defs = crate::bus::amqp::definitions(
        &config.amqp.queue_prefix,
        &a.vhost,
        &a.nodes,
        config.delivery.max_bus_deliveries,
    );
    println!("{}", serde_json::to_string_pretty(&defs)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Config file (TOML). Without one the hub runs on defaults with a sample directory.
    #[arg(long, env = "EDTHUB_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database; sample directory and drop folders when no directory file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address, HOST:PORT with an IP address or a host name (port 0 picks a free
    /// port).
    #[arg(long)]
    grpc_addr: Option<ListenAddr>,
    /// HTTP listen address for /healthz, /readyz and /metrics (HOST:PORT).
    #[arg(long)]
    http_addr: Option<ListenAddr>,
    /// Directory file (TOML) to route with.
    #[arg(long)]
    directory: Option<PathBuf>,
    /// SMTP listen address for mailed documents (overrides `smtp.listen`).
    #[arg(long)]
    smtp_addr: Option<ListenAddr>,
    /// MLLP listen address for HL7 v2 results (overrides `mllp.listen`).
    #[arg(long)]
    mllp_addr: Option<ListenAddr>,
    /// Use RabbitMQ at this URL as the bus (e.g. amqp://guest:guest@127.0.0.1:5672/%2f).
    #[arg(long, env = "EDTHUB_AMQP_URL")]
    amqp_url: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

/// Where the hub is and how to talk to it.
#[derive(Args, Debug, Clone)]
pub struct HubArgs {
    /// Address of a running hub's gRPC port. Give it more than once (or comma-separated in
    /// EDTHUB_ADDR) to work across the nodes of a cluster: lists merge, and a message or
    /// delivery id goes to the node that holds it.
    #[arg(
        long,
        env = "EDTHUB_ADDR",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ','
    )]
    pub hub: Vec<String>,
}

impl HubArgs {
    /// The first hub named: for commands that need only one node.
    pub fn first(&self) -> &str {
        self.hub
            .first()
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1:50051")
    }
}

#[derive(Subcommand, Debug)]
enum MessagesCmd {
    /// List messages, newest first.
    List(ListArgs),
    /// Show one message: its deliveries and full timeline (by its id, or any of its delivery
    /// ids, the names of the files in a drop folder).
    Show(ShowArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct Filter {
    /// Only messages with a delivery in this state (pending, sent, delivered, accepted,
    /// retrying, failed, rejected, overdue, cancelled, unroutable).
    #[arg(long)]
    pub state: Option<String>,
    /// Only messages to this ODS code.
    #[arg(long)]
    pub recipient: Option<String>,
    /// Only messages from this ODS code.
    #[arg(long)]
    pub sender: Option<String>,
    /// Only messages changed (with --state) or received within this long (e.g. 90s, 30m, 2h,
    /// 7d), or since a day (2026-02-28, from midnight UTC) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// ... and at or before this (a duration ago, a day, or an RFC 3339 time).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this document type (discharge-summary, outpatient-letter, ...).
    #[arg(long = "type")]
    pub doc_type: Option<String>,
    /// Only this patient's documents.
    #[arg(long)]
    pub nhs_number: Option<String>,
    /// Only documents that came in this way (grpc, smtp, mllp).
    #[arg(long)]
    pub channel: Option<String>,
    /// Only messages whose metadata contains this text (id, local id, title, file name,
    /// sender, recipients, content type).
    #[arg(long)]
    pub search: Option<String>,
    /// The next page: where the last one ended (the `--after` it names). A bare message id
    /// lists the messages received before it.
    #[arg(long)]
    pub after: Option<String>,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    hub: HubArgs,
    #[command(flatten)]
    filter: Filter,
    /// At most this many messages.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum RouteCmd {
    /// Show the routes a document would take now, with every rule that matched or was skipped.
    Explain(ExplainArgs),
}

#[derive(Args, Debug)]
struct ExplainArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// Recipient ODS code (repeat for several).
    #[arg(long = "to", required = true)]
    to: Vec<String>,
    /// Document type.
    #[arg(long = "type", default_value = "discharge-summary")]
    doc_type: String,
    /// Sender ODS code (checked against the registered senders).
    #[arg(long = "from")]
    from: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum DirectoryCmd {
    /// Load the directory files again (a file that does not load changes nothing).
    Reload(JsonArgs),
    /// What the hub knows about an organisation, and where each document type would go.
    Show(OrgArgs),
}

#[derive(Args, Debug)]
struct JsonArgs {
    #[command(flatten)]
    hub: HubArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct OrgArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// ODS code.
    ods: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ShowArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// Message id, or the id of one of its deliveries.
    id: String,
    #[arg(long)]
    json: bool,
    /// Also save each delivery's document as rendered for its receiver into this folder
    /// (`<delivery id>.<ext>`).
    #[arg(long, value_name = "DIR")]
    rendered: Option<PathBuf>,
    /// Also save the original document as received to this file.
    #[arg(long, value_name = "FILE")]
    original: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// Message ids to replay.
    ids: Vec<String>,
    #[command(flatten)]
    filter: Filter,
    /// Show what would be replayed without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Replay without asking even when many messages match (more than 20).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CancelArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// Delivery id.
    delivery_id: String,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StatsArgs {
    #[command(flatten)]
    hub: HubArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SubmitArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// Sender ODS code.
    #[arg(long = "from")]
    from: String,
    /// Recipient ODS code (repeat for several).
    #[arg(long = "to", required = true)]
    to: Vec<String>,
    /// Document type (discharge-summary, outpatient-letter, emergency-care-discharge,
    /// mental-health-discharge, order-result, generic-document).
    #[arg(long = "type", default_value = "discharge-summary")]
    doc_type: String,
    /// The document file.
    #[arg(long)]
    file: PathBuf,
    /// MIME type; guessed from the file extension when not given.
    #[arg(long)]
    content_type: Option<String>,
    /// The sender's id for this document (default: a new one).
    #[arg(long)]
    local_id: Option<String>,
    #[arg(long)]
    nhs_number: Option<String>,
    #[arg(long)]
    title: Option<String>,
    /// Follow the message until every delivery is final.
    #[arg(long)]
    watch: bool,
    #[arg(long)]
    json: bool,
}

/// A command whose output goes to `head` or `less` ends quietly when the reader stops
/// reading, as other command-line tools do, instead of panicking on a failed print. (The
/// server keeps Rust's default of ignoring SIGPIPE.)
#[allow(unsafe_code)]
fn quiet_on_closed_pipe() {
    // SAFETY: called at start-up before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if matches!(cli.command, Command::Serve(_)) {
        crate::memory::configure();
        runtime.on_thread_park(crate::memory::idle);
    } else {
        quiet_on_closed_pipe();
    }
    let rt = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edthub: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve(a).await,
            Command::Amqp(AmqpCmd::Definitions(a)) => definitions(&a),
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut cmd, "edthub", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
            Command::HashPassword => crate::password::hash_password_command(),
            Command::Man => {
                let cmd = <Cli as clap::CommandFactory>::command();
                clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Audit(AuditCmd::Export(a)) => {
                audit::audit_export(
                    &a.hub,
                    &a.since,
                    a.until.as_deref(),
                    a.json || matches!(a.format, AuditFormat::Json),
                )
                .await
            }
            Command::Purge(a) => {
                purge::purge(
                    &a.hub,
                    a.older_than.as_deref(),
                    a.dry_run,
                    &a.reason,
                    a.json,
                )
                .await
            }
            Command::Overdue(a) => {
                let filter = Filter {
                    state: Some("overdue".into()),
                    ..Default::default()
                };
                list::list(&a.hub, &filter, a.limit, a.json).await
            }
            Command::Messages(MessagesCmd::List(a)) => {
                list::list(&a.hub, &a.filter, a.limit, a.json).await
            }
            Command::Messages(MessagesCmd::Show(a)) => {
                show::show(
                    &a.hub,
                    &a.id,
                    a.json,
                    a.rendered.as_deref(),
                    a.original.as_deref(),
                )
                .await
            }
            Command::Replay(a) => {
                replay::replay(
                    &a.hub,
                    &a.ids,
                    &a.filter,
                    replay::ReplayOpts {
                        dry_run: a.dry_run,
                        yes: a.yes,
                        reason: &a.reason,
                        json: a.json,
                    },
                )
                .await
            }
            Command::Cancel(a) => cancel::cancel(&a.hub, &a.delivery_id, &a.reason, a.json).await,
            Command::Stats(a) => stats::stats(&a.hub, a.json).await,
            Command::Route(RouteCmd::Explain(a)) => {
                explain::explain(&a.hub, &a.to, &a.doc_type, a.from.as_deref(), a.json).await
            }
            Command::Directory(DirectoryCmd::Reload(a)) => directory::reload(&a.hub, a.json).await,
            Command::Mesh(MeshCmd::Poll(a)) => mesh::mesh_poll(&a.hub, a.json).await,
            Command::Acks(AcksCmd::Unmatched(a)) => acks::unmatched(&a.hub, a.limit, a.json).await,
            Command::Directory(DirectoryCmd::Show(a)) => {
                directory::organisation(&a.hub, &a.ods, a.json).await
            }
            Command::Submit(a) => {
                submit::submit(submit::SubmitOpts {
                    hub: &a.hub,
                    from: &a.from,
                    to: &a.to,
                    doc_type: &a.doc_type,
                    file: &a.file,
                    content_type: a.content_type.as_deref(),
                    local_id: a.local_id.as_deref(),
                    nhs_number: a.nhs_number.as_deref(),
                    title: a.title.as_deref(),
                    watch: a.watch,
                    json: a.json,
                })
                .await
            }
            Command::Bench(a) => bench::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edthub: {e:#}");
            ExitCode::from(client::exit_code_for(&e))
        }
    }
}

/// Where log lines go: stderr, whatever becomes of it. A line that cannot be written (a full
/// disk under the log file, a closed pipe) is counted and dropped; logging never fails, or
/// panics in, the request that logged.
struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            metrics::counter!("edthub_log_lines_lost_total").increment(1);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sled=warn,h2=warn,tower=warn")
    });
    // Colour only for a person at a terminal: a file, a pipe or journald gets plain text.
    let colour = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .log_internal_errors(false)
        .with_writer(|| LogSink);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(a.log_format);
    let mut config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = a.data_dir {
        config.data_dir = d;
    }
    if let Some(g) = a.grpc_addr {
        config.grpc_addr = g;
    }
    if let Some(h) = a.http_addr {
        config.http_addr = h;
    }
    if let Some(d) = a.directory {
        config.directory = Some(d);
    }
    if let Some(s) = a.smtp_addr {
        config.smtp.listen = Some(s);
    }
    if let Some(m) = a.mllp_addr {
        config.mllp.listen = Some(m);
    }
    if let Some(u) = a.amqp_url {
        config.bus = crate::config::BusKind::Amqp;
        config.amqp.url = u;
    }
    if config.admin_token.is_none() {
        config.admin_token = std::env::var("EDTHUB_TOKEN").ok().filter(|t| !t.is_empty());
    }
    config.validate()?;
    let data_dir = config.data_dir.clone();
    let (trigger, shutdown) = crate::shutdown::channel();
    let limit = std::time::Duration::from_secs(config.shutdown_timeout_secs);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        // Armed until the process ends.
        let _armed = crate::shutdown::watchdog(limit, "shutdown");
        trigger.fire();
    });
    crate::server::run(config, shutdown, |hub, bound| {
        use std::io::Write;
        let loaded = hub.directory.get();
        // Not println!, which panics where stdout cannot be written.
        let _ = writeln!(
            std::io::stdout(),
            "edthub {} listening grpc={} http={} smtp={} mllp={} node={} data_dir={} directory={} bus={}",
            env!("CARGO_PKG_VERSION"),
            bound.grpc,
            bound.http,
            bound
                .smtp
                .map_or_else(|| "off".to_string(), |a| a.to_string()),
            bound
                .mllp
                .map_or_else(|| "off".to_string(), |a| a.to_string()),
            hub.node,
            data_dir.display(),
            loaded.file.display(),
            match hub.config.bus {
                crate::config::BusKind::Embedded => "embedded",
                crate::config::BusKind::Amqp => "amqp",
            }
        );
        let _ = std::io::stdout().flush();
        tracing::info!(grpc = %bound.grpc, http = %bound.http, "hub ready");
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
