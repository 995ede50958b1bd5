//! `edthub bench`: submits a realistic mix of documents to a running hub, waits until every
//! delivery has reached its file drop, and prints exactly one line:
//!
//! ```text
//! bench docs=2000 secs=1.23 docs_per_s=1626.0 p50_ms=3.1 p99_ms=12.0 e2e_p50_ms=40.2 e2e_p99_ms=95.0 ...
//! ```
//!
//! `docs_per_s` is documents per second durable end to end (first submit to last delivery
//! sent); `p50_ms`/`p99_ms` are receipt latencies (submit call to durable receipt);
//! `e2e_*` are submit to the hub's recorded `sent` time. `client_cpu_ms_per_doc` is this
//! process's own CPU time per document (`client_submit_cpu_ms_per_doc` counts only the
//! submissions, not the status checks while waiting for deliveries);
//! `machine_cpu_ms_per_doc` is the busy time of every core of the machine (hub, broker, this
//! client and anything else) per document, with the machine's `cores`; time the hypervisor
//! stole from this virtual machine is not in it, but in `machine_steal_ms_per_doc`.
//! `hub_cpu_ms_per_doc` is the hub processes' own CPU time per document (summed over the
//! hubs, from their stats, wherever they run). With
//! `--raw-amqp`, `raw_client_cpu_ms_per_msg` and `raw_machine_cpu_ms_per_msg` are the same for
//! the raw broker run.
//!
//! Disk figures: `syncs_per_doc` is the hubs' own count of fsync, fdatasync, syncfs and
//! database flush calls per document; `broker_msgs_per_doc` the messages they published to
//! RabbitMQ per document. Before driving the hub, the bench measures the disk in the same run
//! (in `--scratch-dir`): `sled_ceiling_docs_per_s`, raw sled inserts of the same size made
//! durable by group commit at the same concurrency, with `ratio` the hub's `docs_per_s` over
//! it; and `disk_write_mb_per_s`, one sequential write and fdatasync, with `mb_ratio` the
//! hub's end-to-end `mb_per_s` over it. `hub_resident_mb_before` and `hub_resident_mb_after`
//! are the hubs' resident memory (summed) before the first document and after the last
//! delivery: run the bench twice against one hub (10,000 documents, then 90,000) to see how
//! memory follows the documents stored. A benchmark, not a test: it asserts nothing.

use super::client;
use crate::wire as convert;
use clap::Args;
use edt_proto::v1;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub(super) hub: super::HubArgs,
    /// Documents to submit.
    #[arg(long, default_value_t = 2000)]
    pub(super) docs: usize,
    /// Submissions in flight at once.
    #[arg(long, default_value_t = 32)]
    pub(super) concurrency: usize,
    /// Payload file (default: generated 20 KB PDF-like documents).
    #[arg(long)]
    pub(super) payload: Option<PathBuf>,
    /// Payload size in bytes when generating.
    #[arg(long, default_value_t = 20 * 1024)]
    pub(super) payload_bytes: usize,
    /// Submit at this many documents per second overall (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub(super) rate: f64,
    /// Sender ODS code (must be a registered sender).
    #[arg(long, default_value = "RX1")]
    pub(super) sender: String,
    /// Recipient ODS codes, used in turn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "A81001,A81002,A81004,A81005,A81006"
    )]
    pub(super) recipients: Vec<String>,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub(super) timeout_secs: u64,
    /// Measure routing in this process instead of driving a hub: directory load time and
    /// resolve() decisions per second on one core.
    #[arg(long)]
    pub(super) routing: bool,
    /// Before driving the hub, measure raw RabbitMQ at this URL on the same machine: persistent
    /// messages of --payload-bytes published with confirms (--concurrency in flight) and
    /// consumed with manual acks, on a quorum queue. The line then carries both figures.
    #[arg(long)]
    pub(super) raw_amqp: Option<String>,
    /// Measure the document formats in this process instead of driving a hub, on one core:
    /// FHIR XML parsing, XML→JSON and writing, ITK3 reading (a 60 KB message), HL7 v2 ORU^R01
    /// parsing (a 1 KB message).
    #[arg(long)]
    pub(super) transform: bool,
    /// Drive the hub's SMTP listener at this address instead of gRPC: --connections
    /// connections each mail documents (a --payload-bytes PDF attachment, one recipient in
    /// turn) with pipelined MAIL/RCPT/DATA; the line gives messages accepted (250) per second.
    #[arg(long, value_name = "ADDR")]
    pub(super) smtp: Option<String>,
    /// Drive the hub's MLLP listener at this address instead of gRPC: --connections
    /// connections each send 1 KB ORU^R01 results (facility --sender, practices
    /// --recipients in turn), one at a time, at --rate results per second overall (0: as fast
    /// as acknowledged); the line gives the acknowledgement (AA) latency and results sent on
    /// end to end per second.
    #[arg(long, value_name = "ADDR")]
    pub(super) mllp: Option<String>,
    /// With --smtp or --mllp: connections in parallel.
    #[arg(long, default_value_t = 8)]
    pub(super) connections: usize,
    /// With --smtp: the envelope sender (one of the hub's `smtp.senders`).
    #[arg(long, default_value = "letters@trust.nhs.uk")]
    pub(super) smtp_from: String,
    /// Fill a stopped node's data directory (--data-dir) with this many messages spread over
    /// the last 30 days, their deliveries mostly accepted (some failed, rejected, overdue),
    /// then time list queries on it in process. Start the hub on the directory afterwards to
    /// measure it over gRPC.
    #[arg(long, value_name = "N")]
    pub(super) seed: Option<usize>,
    /// Time the ops console's pages on the running hub whose HTTP listener is at this URL
    /// (`http://127.0.0.1:9090`), signed in with EDTHUB_TOKEN: the first overview, then
    /// --rounds of the overview, a filtered page of messages and --practice's page; the
    /// hub's memory (stats over --hub) afterwards.
    #[arg(long, value_name = "URL")]
    console: Option<String>,
    /// With --console: times each page is fetched.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// With --console: the practice whose page is timed.
    #[arg(long, default_value = "A81001")]
    practice: String,
    /// With --seed: the data directory to fill.
    #[arg(long)]
    pub(super) data_dir: Option<PathBuf>,
    /// With --routing: the directory file (default: the sample directory, with the national
    /// practice file, in a temporary folder).
    #[arg(long)]
    pub(super) directory: Option<PathBuf>,
    /// Where the disk baselines (raw sled ceiling, sequential write) are measured: a folder on
    /// the same disk as the hub's data directory (default: the system's temporary folder).
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
}

/// `bench --routing`: one line with load time and resolve throughput.
fn routing(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let tmp;
    let file = match &a.directory {
        Some(f) => f.clone(),
        None => {
            tmp = std::env::temp_dir()
                .join(format!("edthub-bench-{}", crate::track::new_id().simple()));
            let f = tmp.join("directory.toml");
            crate::route::write_sample(&f)?;
            f
        }
    };
    let loads = 10;
    let t = Instant::now();
    let mut d = None;
    for _ in 0..loads {
        d = Some(edt_routers::Directory::load(&file)?);
    }
    let load_ms = t.elapsed().as_secs_f64() * 1000.0 / loads as f64;
    let d = d.expect("loaded");
    let recipients: Vec<Vec<String>> = a.recipients.iter().map(|r| vec![r.clone()]).collect();
    let n = 2_000_000usize;
    let t = Instant::now();
    let mut routed = 0usize;
    for i in 0..n {
        let r = d.resolve(&edt_routers::RouteRequest {
            sender_ods: &a.sender,
            recipients: &recipients[i % recipients.len()],
            document_type: edt_transforms::DocumentType::DischargeSummary,
            today: crate::route::today(),
        });
        routed += r.routes.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "bench routing organisations={} rules={} load_ms={:.1} resolves={} secs={:.3} resolve_per_s={:.0} resolve_ns={:.0} routed={}",
        d.organisation_count(),
        d.rules().len(),
        load_ms,
        n,
        secs,
        n as f64 / secs,
        secs * 1e9 / n as f64,
        routed
    );
    if a.directory.is_none() {
        let _ = std::fs::remove_dir_all(file.parent().expect("folder"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Raw lapin on a quorum queue: (messages per second end to end, messages).
async fn raw_amqp(url: &str, n: usize, bytes: usize, concurrency: usize) -> anyhow::Result<f64> {
    use futures::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let queue = format!("edthub-bench-raw-{}", crate::track::new_id().simple());
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    publish
        .queue_declare(queue.clone().into(), QueueDeclareOptions::durable(), args)
        .await?;
    let consume = conn.create_channel().await?;
    consume.basic_qos(32, BasicQosOptions::default()).await?;
    let mut consumer = consume
        .basic_consume(
            queue.clone().into(),
            "edthub-bench-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let body = Arc::new(generated_payload(bytes, 7));
    let start = Instant::now();
    let consumed = tokio::spawn(async move {
        let mut got = 0usize;
        while got < n {
            match consumer.next().await {
                Some(Ok(d)) => {
                    d.ack(BasicAckOptions::default()).await?;
                    got += 1;
                }
                Some(Err(e)) => return Err(anyhow::Error::from(e)),
                None => anyhow::bail!("the consumer was cancelled after {got} messages"),
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    let next = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (ch, q, body, next) = (publish.clone(), queue.clone(), body.clone(), next.clone());
        publishers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let confirm = ch
                    .basic_publish(
                        "".into(),
                        q.clone().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?
                    .await?;
                anyhow::ensure!(confirm.is_ack(), "the broker refused a message");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for p in publishers {
        p.await??;
    }
    consumed.await??;
    let secs = start.elapsed().as_secs_f64();
    publish
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "bench done".into()).await;
    Ok(n as f64 / secs)
}

/// The raw sled ceiling: `n` values of `bytes` inserted by `concurrency` writers into a fresh
/// database in `dir`, each insert made durable by the hub's own group commit (one flush for
/// every writer waiting). Documents (values) per second.
async fn sled_ceiling(
    dir: &std::path::Path,
    n: usize,
    bytes: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let tmp = tempfile::tempdir_in(dir)?;
    let db = sled::Config::new()
        .path(tmp.path())
        .flush_every_ms(Some(1000))
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let tree = db.open_tree("ceiling")?;
    let commit = crate::durable::GroupCommit::start(
        db.clone(),
        Arc::new(crate::durable::Signals::default()),
    );
    let body = Arc::new(generated_payload(bytes, 9));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (tree, commit, body, next) = (tree.clone(), commit.clone(), body.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                tree.insert((i as u64).to_be_bytes(), body.as_slice())?;
                commit.flush().await.map_err(anyhow::Error::msg)?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for w in writers {
        w.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The disk's sequential write speed in `dir`: `total` bytes written to one file in 1 MB
/// writes, then one fdatasync. Megabytes per second.
fn disk_write_mb_per_s(dir: &std::path::Path, total: usize) -> anyhow::Result<f64> {
    use std::io::Write;
    let mut f = tempfile::tempfile_in(dir)?;
    let block = generated_payload(1 << 20, 11);
    let start = Instant::now();
    let mut left = total.max(1 << 20);
    while left > 0 {
        let k = left.min(block.len());
        f.write_all(&block[..k])?;
        left -= k;
    }
    f.sync_data()?;
    Ok(total.max(1 << 20) as f64 / 1e6 / start.elapsed().as_secs_f64())
}

/// Summed over the hubs: disk syncs, broker messages and CPU time since each started, and
/// resident memory now.
#[derive(Debug, Clone, Copy, Default)]
struct HubCounters {
    syncs: u64,
    broker: u64,
    cpu_ms: u64,
    resident_bytes: u64,
}

async fn hub_counters(hub: &super::HubArgs) -> anyhow::Result<HubCounters> {
    let mut sum = HubCounters::default();
    for addr in &hub.hub {
        let s = client::admin(addr)
            .await?
            .get_stats(v1::GetStatsRequest {})
            .await
            .map_err(client::status_error)?
            .into_inner();
        sum.syncs += s.disk_syncs;
        sum.broker += s.broker_messages;
        sum.cpu_ms += s.cpu_ms;
        sum.resident_bytes += s.resident_bytes;
    }
    Ok(sum)
}

/// CPU time spent so far: this process's and the whole machine's (busy time summed over every
/// core), in milliseconds, read from `/proc`. `None` where `/proc` cannot be read. Time stolen
/// by the hypervisor (a virtual core ready to run while the host ran something else) is not
/// this machine's work: it is kept apart.
#[derive(Debug, Clone, Copy)]
struct CpuClock {
    own_ms: f64,
    machine_ms: f64,
    steal_ms: f64,
}

impl CpuClock {
    fn now() -> Option<Self> {
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        Self::read(&own, &stat, rustix::param::clock_ticks_per_second())
    }

    /// From a process's `stat` and the machine's `/proc/stat`, counted in `ticks` per second.
    fn read(own: &str, stat: &str, ticks: u64) -> Option<Self> {
        let tick_ms = 1000.0 / ticks.max(1) as f64;
        let own_ticks = crate::admin::grpc::process_cpu_ticks(own)?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if cpu.len() < 8 {
            return None;
        }
        // user nice system idle iowait irq softirq steal: busy is user to softirq but idle
        // and iowait.
        let busy = cpu[..7].iter().sum::<u64>() - cpu[3] - cpu[4];
        Some(Self {
            own_ms: own_ticks as f64 * tick_ms,
            machine_ms: busy as f64 * tick_ms,
            steal_ms: cpu[7] as f64 * tick_ms,
        })
    }

    /// Milliseconds of (own, machine) CPU per unit of work since `self`.
    fn per(self, units: usize) -> Option<(f64, f64)> {
        self.per_with_steal(units).map(|(o, m, _)| (o, m))
    }

    /// Milliseconds of (own, machine, stolen) CPU per unit of work since `self`.
    fn per_with_steal(self, units: usize) -> Option<(f64, f64, f64)> {
        let now = Self::now()?;
        let n = units.max(1) as f64;
        Some((
            (now.own_ms - self.own_ms) / n,
            (now.machine_ms - self.machine_ms) / n,
            (now.steal_ms - self.steal_ms) / n,
        ))
    }
}

/// The machine's cores, as the scheduler sees them.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A time-ordered id for a moment in the past, tagged with this node.
fn id_at(ms: u64) -> uuid::Uuid {
    let mut b = *uuid::Uuid::now_v7().as_bytes();
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[14..16].copy_from_slice(&crate::track::own_tag().to_be_bytes());
    uuid::Uuid::from_bytes(b)
}

/// `bench --seed N --data-dir DIR`.
async fn seed(n: usize, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use crate::store::{ListQuery, Store};
    use crate::track::DeliveryState;
    let node = crate::config::Config::default().node_name();
    crate::track::set_node_tag(crate::track::node_tag(&node));
    let store = crate::store::SledStore::open(&dir.join("db"), &dir.join("payloads"), 64)?;
    let now = crate::track::now_ms();
    let span: u64 = 30 * 86_400_000;
    let practices = ["A81001", "A81002", "A81004", "A81005", "A81006"];
    let payload = generated_payload(1024, 11);
    let t = Instant::now();
    for i in 0..n {
        let received = now - span + span * i as u64 / n.max(1) as u64;
        let recipient = practices[i % practices.len()];
        let mut new = crate::store::fixtures::sample("RX1", &format!("SEED-{i}"), &[recipient]);
        let id = id_at(received);
        new.message.id = id;
        new.message.received_ms = received;
        new.message.payload_size = payload.len() as u64;
        new.message.payload_sha256 = edt_transforms::sha256_hex(&payload);
        new.payload = payload.clone();
        for e in &mut new.audit {
            e.message_id = id;
            e.at_ms = received;
        }
        for d in &mut new.deliveries {
            d.id = id_at(received);
            d.message_id = id;
            d.endpoint = Some(format!("{}-drop", recipient.to_ascii_lowercase()));
            d.state = match i % 100 {
                0..=4 => DeliveryState::Failed,
                5..=7 => DeliveryState::Rejected,
                8..=9 => DeliveryState::Overdue,
                _ => DeliveryState::Accepted,
            };
            d.attempts = 1;
            d.created_ms = received;
            d.sent_ms = Some(received + 1_000);
            d.updated_ms = (received + 60_000).min(now);
        }
        // A timeline as a delivered message has one: created, sent, then its outcome.
        let d = new.deliveries[0].clone();
        for (at, event, from, to) in [
            (received, "created", None, Some(DeliveryState::Pending)),
            (
                received + 1_000,
                "sent",
                Some(DeliveryState::Pending),
                Some(DeliveryState::Sent),
            ),
            (
                d.updated_ms,
                "outcome",
                Some(DeliveryState::Sent),
                Some(d.state),
            ),
        ] {
            new.audit.push(crate::track::AuditEvent {
                at_ms: at,
                message_id: id,
                delivery_id: Some(d.id),
                event: event.into(),
                from,
                to,
                actor: "seed".into(),
                reason: String::new(),
            });
        }
        store.submit(new).await?;
        if i % 100_000 == 99_999 {
            store.flush().await?;
        }
    }
    store.flush().await?;
    let secs = t.elapsed().as_secs_f64();
    // List queries as `messages list` makes them (newest first, a page of 100).
    let time = |q: ListQuery| -> anyhow::Result<(f64, usize)> {
        let t = Instant::now();
        let (ids, _) = store.list(&q)?;
        Ok((t.elapsed().as_secs_f64() * 1000.0, ids.len()))
    };
    let page = |state, since| ListQuery {
        state,
        since_ms: since,
        limit: 100,
        ..Default::default()
    };
    let (failed_day_ms, failed_day) =
        time(page(Some(DeliveryState::Failed), Some(now - 86_400_000)))?;
    let (failed_all_ms, _) = time(page(Some(DeliveryState::Failed), None))?;
    let (newest_ms, _) = time(page(None, None))?;
    let (week_ms, _) = time(page(None, Some(now - 7 * 86_400_000)))?;
    let size: u64 = walk_size(&dir.join("db"));
    println!(
        "bench seed messages={n} secs={secs:.1} msgs_per_s={:.0} db_bytes={size} list_failed_last_day_ms={failed_day_ms:.1} list_failed_last_day_hits={failed_day} list_failed_ms={failed_all_ms:.1} list_newest_ms={newest_ms:.1} list_last_week_ms={week_ms:.1}",
        n as f64 / secs
    );
    Ok(ExitCode::SUCCESS)
}

fn walk_size(p: &std::path::Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|d| d.flatten().map(|e| walk_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// `bench --smtp`: mails documents over several connections; one line with the rate of 250s.
async fn smtp(a: &BenchArgs, addr: &str) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let attachment = edt_transforms::itk3::base64_encode(&generated_payload(a.payload_bytes, 5));
    let wrapped: Vec<&str> = attachment
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let attachment = Arc::new(wrapped.join("\r\n"));
    let run_id = crate::track::new_id().simple().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.connections.max(1) {
        let (addr, from, attachment, next, run_id) = (
            addr.to_string(),
            a.smtp_from.clone(),
            attachment.clone(),
            next.clone(),
            run_id.clone(),
        );
        let (docs, recipients) = (a.docs, a.recipients.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let (r, mut w) = tcp.into_split();
            let mut r = BufReader::new(r);
            // Reads one (possibly multi-line) reply; returns its first line.
            async fn reply(
                r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
            ) -> anyhow::Result<String> {
                let mut first = String::new();
                loop {
                    let mut line = String::new();
                    anyhow::ensure!(r.read_line(&mut line).await? > 0, "connection closed");
                    if first.is_empty() {
                        first = line.trim_end().to_string();
                    }
                    if line.as_bytes().get(3) != Some(&b'-') {
                        return Ok(first);
                    }
                }
            }
            let greeting = reply(&mut r).await?;
            let domain = greeting
                .split_whitespace()
                .nth(1)
                .unwrap_or("localhost")
                .to_string();
            w.write_all(format!("EHLO bench-{c}\r\n").as_bytes()).await?;
            reply(&mut r).await?;
            let mut latencies = Vec::new();
            let mut refused = 0usize;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= docs {
                    break;
                }
                let to = &recipients[n % recipients.len()];
                let t = Instant::now();
                let message = format!(
                    "MAIL FROM:<{from}>\r\nRCPT TO:<{to}@{domain}>\r\nDATA\r\n"
                );
                w.write_all(message.as_bytes()).await?;
                for _ in 0..3 {
                    reply(&mut r).await?;
                }
                let body = format!(
                    "From: <{from}>\r\nTo: <{to}@{domain}>\r\nSubject: Discharge summary \
                     [nhs:9434765919] [type:discharge-summary]\r\nMessage-ID: <bench-{run_id}-{n}@{domain}>\r\n\
                     MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
                     --b\r\nContent-Type: text/plain\r\n\r\nLetter attached.\r\n\
                     --b\r\nContent-Type: application/pdf\r\n\
                     Content-Disposition: attachment; filename=\"letter-{n}.pdf\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--b--\r\n.\r\n"
                );
                w.write_all(body.as_bytes()).await?;
                let done = reply(&mut r).await?;
                if done.starts_with("250") {
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    refused += 1;
                    if refused == 1 {
                        eprintln!("bench: refused: {done}");
                    }
                }
            }
            w.write_all(b"QUIT\r\n").await?;
            Ok::<_, anyhow::Error>((latencies, refused))
        }));
    }
    let mut latencies = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (l, r) = t.await??;
        latencies.extend(l);
        refused += r;
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "bench smtp messages={} connections={} attachment_bytes={} secs={:.2} accepted_per_s={:.1} p50_ms={:.1} p99_ms={:.1} refused={}",
        latencies.len(),
        a.connections,
        a.payload_bytes,
        secs,
        latencies.len() as f64 / secs,
        pct(0.5),
        pct(0.99),
        refused
    );
    Ok(ExitCode::SUCCESS)
}

/// (content type, document type, file extension) in the proportions a trust sends.
const MIX: [(&str, v1::DocumentType, &str); 5] = [
    ("application/pdf", v1::DocumentType::DischargeSummary, "pdf"),
    ("application/pdf", v1::DocumentType::OutpatientLetter, "pdf"),
    (
        "application/fhir+xml",
        v1::DocumentType::DischargeSummary,
        "xml",
    ),
    ("application/pdf", v1::DocumentType::OutpatientLetter, "pdf"),
    ("application/hl7-v2", v1::DocumentType::OrderResult, "hl7"),
];

/// Runs `f` repeatedly for about a second; returns runs per second.
fn per_second(f: impl FnMut()) -> f64 {
    per_second_and_cpu(f, Duration::from_secs(1)).0
}

/// Runs `f` repeatedly for about `secs`; returns runs per second of wall time and per second
/// of this process's CPU time (the bench runs on one thread, so that is one core's rate
/// whatever else the machine is doing).
fn per_second_and_cpu(mut f: impl FnMut(), secs: Duration) -> (f64, Option<f64>) {
    f();
    let cpu = CpuClock::now();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < secs {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    let wall = n as f64 / t.elapsed().as_secs_f64();
    let per_cpu = cpu.zip(CpuClock::now()).and_then(|(a, b)| {
        let ms = b.own_ms - a.own_ms;
        (ms > 0.0).then(|| n as f64 * 1000.0 / ms)
    });
    (wall, per_cpu)
}

/// `bench --transform`: one line with the format figures.
fn transform() -> anyhow::Result<ExitCode> {
    use edt_transforms::{fhir, hl7};
    // A Send Document of about 60 KB (a 43 KB PDF, base64-encoded) and a 1 KB lab result.
    let (itk, _) = structured_documents(&generated_payload(43 * 1024, 3));
    let xml = itk[0].clone();
    let mut oru = String::from_utf8(structured_documents(b"x").1[0].clone())?;
    let mut k = 0;
    while oru.len() < 1000 {
        k += 1;
        oru.push_str(&format!("NTE|{k}||Comment line {k} on the result\r"));
    }
    anyhow::ensure!(
        hl7::parse_oru(oru.as_bytes()).is_ok(),
        "bench ORU does not parse"
    );
    let mb = |bytes: usize, per_s: f64| bytes as f64 * per_s / 1e6;
    let parse = per_second(|| {
        std::hint::black_box(fhir::parse_xml(&xml).expect("parses"));
    });
    let to_json = per_second(|| {
        std::hint::black_box(fhir::xml_to_json(&xml).expect("converts"));
    });
    let tree = fhir::parse_xml(&xml)?;
    let render = per_second(|| {
        std::hint::black_box(fhir::to_xml(&tree));
    });
    let read_itk = per_second(|| {
        std::hint::black_box(
            edt_transforms::itk3::read_message(&xml, edt_transforms::itk3::Format::Xml)
                .expect("reads"),
        );
    });
    let meta = edt_transforms::DocumentMeta {
        message_id: "bench".into(),
        sender_ods: "RX1".into(),
        document_type: edt_transforms::DocumentType::GenericDocument,
        content_type: "application/fhir+xml".into(),
        local_id: "bench".into(),
        nhs_number: None,
        file_name: None,
        title: None,
        payload_size: xml.len() as u64,
        payload_sha256: String::new(),
        received_at: "2026-11-25T09:00:00Z".into(),
    };
    let delivery = edt_transforms::render::Delivery {
        id: "0195d1a4-0000-7000-8000-000000000001",
        recipient_ods: "A81001",
        recipient_type: edt_transforms::itk3::RecipientType::ForAction,
        created_at: "2026-11-25T09:00:01Z",
        source_endpoint: Some("RX1EDT001"),
    };
    anyhow::ensure!(
        edt_transforms::render::render(
            edt_transforms::ReceiverFormat::Itk3,
            &meta,
            &xml,
            &delivery,
        )
        .is_ok(),
        "bench ITK3 message does not render"
    );
    let render_itk = per_second(|| {
        std::hint::black_box(
            edt_transforms::render::render(
                edt_transforms::ReceiverFormat::Itk3,
                &meta,
                &xml,
                &delivery,
            )
            .expect("renders"),
        );
    });
    let hl7_parse = per_second(|| {
        std::hint::black_box(hl7::Message::parse(&oru).expect("parses"));
    });
    let hl7_oru = per_second(|| {
        std::hint::black_box(hl7::parse_oru(oru.as_bytes()).expect("reads"));
    });
    let result = super::bench_mllp::oru("RX1", "BENCH-FHIR", "A81001", 0);
    let pathology = edt_transforms::fhir::r4::pathology::Context {
        seed: "0195d1a4-0000-7000-8000-000000000002",
        timestamp: "2026-11-25T09:00:01Z",
        sender_ods: "RX1",
    };
    let (oru_to_fhir, oru_to_fhir_cpu) = per_second_and_cpu(
        || {
            std::hint::black_box(
                fhir::r4::pathology::bundle_json(result.as_bytes(), &pathology).expect("builds"),
            );
        },
        Duration::from_secs(3),
    );
    println!(
        "bench transform itk3_bytes={} fhir_xml_parse_mb_s={:.1} fhir_xml_to_json_mb_s={:.1} fhir_tree_to_xml_mb_s={:.1} itk3_read_message_mb_s={:.1} itk3_render_mb_s={:.1} hl7_bytes={} hl7_parse_msgs_s={:.0} hl7_oru_read_msgs_s={:.0} oru_to_fhir_r4_json_reports_s={:.0} oru_to_fhir_r4_json_reports_per_cpu_s={}",
        xml.len(),
        mb(xml.len(), parse),
        mb(xml.len(), to_json),
        mb(xml.len(), render),
        mb(xml.len(), read_itk),
        mb(xml.len(), render_itk),
        oru.len(),
        hl7_parse,
        hl7_oru,
        oru_to_fhir,
        oru_to_fhir_cpu.map_or("unknown".to_string(), |r| format!("{r:.0}")),
    );
    Ok(ExitCode::SUCCESS)
}

/// Waits until every message of `waiting` (message id, wall time submitted in ms, hub index)
/// has all its deliveries sent: returns the end-to-end times (ms), when the last was sent
/// (wall ms) and how many never were.
pub(super) async fn wait_sent(
    channels: &[tonic::transport::Channel],
    mut waiting: Vec<(String, f64, usize)>,
    concurrency: usize,
    timeout_secs: u64,
) -> anyhow::Result<(Vec<f64>, f64, usize)> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    waiting.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut e2e = Vec::with_capacity(waiting.len());
    let mut last_sent_ms = 0f64;
    let mut undelivered = 0usize;
    while !waiting.is_empty() {
        let mut still = Vec::new();
        // Deliveries finish roughly in the order documents were submitted: a round stops at
        // the first batch with nothing finished, and leaves the rest for the next round, so
        // status checks stay near one per document and do not take the hub's CPU.
        let mut rest = waiting.chunks(concurrency * 4);
        for batch in rest.by_ref() {
            let before = still.len();
            let mut checks = Vec::new();
            for (id, w, ix) in batch.iter().cloned() {
                let mut t = v1::tracking_client::TrackingClient::new(channels[ix].clone());
                checks.push(tokio::spawn(async move {
                    let r = t
                        .get_message(v1::GetMessageRequest {
                            message_id: id.clone(),
                        })
                        .await;
                    (id, w, ix, r)
                }));
            }
            for c in checks {
                let (id, w, ix, r) = c.await?;
                let s = match r {
                    Ok(s) => s.into_inner(),
                    Err(_) => {
                        still.push((id, w, ix));
                        continue;
                    }
                };
                let sent: Vec<f64> = s
                    .deliveries
                    .iter()
                    .filter_map(|d| d.sent_at.as_ref().map(|t| convert::ms(t) as f64))
                    .collect();
                if !s.deliveries.is_empty() && sent.len() == s.deliveries.len() {
                    let done = sent.iter().cloned().fold(0.0, f64::max);
                    e2e.push(done - w);
                    last_sent_ms = last_sent_ms.max(done);
                } else if s.complete {
                    undelivered += 1;
                } else {
                    still.push((id, w, ix));
                }
            }
            if still.len() - before == batch.len() {
                break;
            }
        }
        still.extend(rest.flatten().cloned());
        waiting = still;
        if Instant::now() > deadline {
            undelivered += waiting.len();
            break;
        }
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((e2e, last_sent_ms, undelivered))
}

/// For each NHS number of the mix: a GP Connect Send Document (ITK3 XML) wrapping `pdf`, and
/// an HL7 v2 ORU^R01 result, as trusts send them.
fn structured_documents(pdf: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut itk = Vec::new();
    let mut oru = Vec::new();
    for (n, nhs) in NHS_NUMBERS.iter().enumerate() {
        let sample = edt_transforms::samples::Itk3Sample {
            n,
            nhs_number: nhs,
            title: "Discharge summary",
            sender_name: "Bench Trust",
            discharge: false,
        };
        itk.push(edt_transforms::samples::itk3_message(&sample, pdf));
        oru.push(
            format!(
                "MSH|^~\\&|LAB|RX1|GP||20261125093000||ORU^R01|BENCH-{n}|P|2.4\r\
                 PID|||{nhs}^^^NHS^NH||SMITH^JOHN||19700101|M\r\
                 OBR|1|||PT^Prothrombin Time INR^HAE\r\
                 OBX|1|NM|PT^Prothrombin Time||10.0|s|||||F\r\
                 OBX|2|NM|INR^I.N.R.||2.5||||||F\r\
                 NTE|1||Target range 2.0-3.0\r"
            )
            .into_bytes(),
        );
    }
    (itk, oru)
}

/// Valid NHS numbers (Modulus 11) for the mix.
const NHS_NUMBERS: [&str; 4] = ["9434765919", "4010232137", "9990000018", "9876543210"];

fn generated_payload(n: usize, seed: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n% edthub bench document\n".to_vec();
    let mut x = seed as u64 | 1;
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n.max(16));
    v
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(super) fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

pub async fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    if a.routing {
        return tokio::task::spawn_blocking(move || routing(&a)).await?;
    }
    if let Some(n) = a.seed {
        let dir = a
            .data_dir
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--seed needs --data-dir"))?;
        return seed(n, &dir).await;
    }
    if let Some(addr) = &a.smtp {
        return smtp(&a, addr).await;
    }
    if let Some(addr) = &a.mllp {
        return super::bench_mllp::run(&a, addr).await;
    }
    if let Some(url) = &a.console {
        return super::bench_console::run(&a.hub, url, a.rounds, &a.practice).await;
    }
    if a.transform {
        return tokio::task::spawn_blocking(transform).await?;
    }
    let payloads: Vec<Vec<u8>> =
        match &a.payload {
            Some(p) => vec![std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?],
            None => (0..8)
                .map(|s| generated_payload(a.payload_bytes, s + 1))
                .collect(),
        };
    let payload_bytes = payloads[0].len();
    let raw = match &a.raw_amqp {
        Some(url) => {
            let clock = CpuClock::now();
            let rate = raw_amqp(url, a.docs, payload_bytes, a.concurrency).await?;
            Some((rate, clock.and_then(|c| c.per(a.docs))))
        }
        None => None,
    };
    // Baselines on this machine's disk, in the same run: the raw sled group-commit ceiling
    // for documents of this size, and sequential write speed.
    let scratch = a.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
    let ceiling = sled_ceiling(&scratch, a.docs, payload_bytes, a.concurrency).await?;
    let disk_mb = tokio::task::spawn_blocking({
        let (scratch, total) = (scratch.clone(), (a.docs * payload_bytes).min(512 << 20));
        move || disk_write_mb_per_s(&scratch, total)
    })
    .await??;
    // The documents are made before the clock starts: the figures are the hub's work and
    // the submissions', not the bench's writing of ITK3 messages.
    let structured = Arc::new(structured_documents(&payloads[0]));
    let counters_before = hub_counters(&a.hub).await?;
    let clock = CpuClock::now();
    let payloads = Arc::new(payloads);
    // With several hubs, submitters take turns: each document is tracked on the hub that
    // received it.
    let mut channels = Vec::new();
    for addr in &a.hub.hub {
        channels.push(client::channel(addr).await?);
    }
    let run_id = crate::track::new_id().simple().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let concurrency = a.concurrency.max(1);
    let interval = (a.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / a.rate));
    let mut tasks = Vec::new();
    for k in 0..concurrency {
        let hub_ix = k % channels.len();
        let mut c =
            v1::document_submission_client::DocumentSubmissionClient::new(channels[hub_ix].clone())
                .max_encoding_message_size(256 * 1024 * 1024);
        let (next, payloads, run_id) = (next.clone(), payloads.clone(), run_id.clone());
        let structured = structured.clone();
        let (sender, recipients, docs) = (a.sender.clone(), a.recipients.clone(), a.docs);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= docs {
                    break;
                }
                if let Some(iv) = interval {
                    let due = start + iv * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let (ct, dt, ext) = MIX[i % MIX.len()];
                let req = v1::SubmitDocumentRequest {
                    sender_ods: sender.clone(),
                    recipient_ods: vec![recipients[i % recipients.len()].clone()],
                    document_type: dt as i32,
                    content_type: ct.to_string(),
                    payload: match ext {
                        "xml" => structured.0[i % NHS_NUMBERS.len()].clone(),
                        "hl7" => structured.1[i % NHS_NUMBERS.len()].clone(),
                        _ => payloads[i % payloads.len()].clone(),
                    },
                    local_id: format!("bench-{run_id}-{i}"),
                    nhs_number: NHS_NUMBERS[i % NHS_NUMBERS.len()].to_string(),
                    file_name: format!("document-{i}.{ext}"),
                    title: String::new(),
                };
                let sent_wall = wall_ms();
                let t = Instant::now();
                match c.submit_document(req).await {
                    Ok(r) => out.push((
                        r.into_inner().message_id,
                        t.elapsed().as_secs_f64() * 1000.0,
                        sent_wall,
                        hub_ix,
                    )),
                    Err(e) => errors.push(e.message().to_string()),
                }
            }
            (out, errors)
        }));
    }
    let mut receipts = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (r, e) = t.await?;
        receipts.extend(r);
        errors.extend(e);
    }
    let submit_secs = start.elapsed().as_secs_f64();
    let submit_cpu = clock.and_then(|c| c.per(a.docs));

    // Wait for every delivery to reach its transport.
    let waiting: Vec<(String, f64, usize)> = receipts
        .iter()
        .map(|(id, _, w, ix)| (id.clone(), *w, *ix))
        .collect();
    let (mut e2e, last_sent_ms, undelivered) =
        wait_sent(&channels, waiting, concurrency, a.timeout_secs).await?;
    let start_wall = receipts.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let secs = if last_sent_ms > 0.0 && start_wall.is_finite() {
        ((last_sent_ms - start_wall) / 1000.0).max(submit_secs)
    } else {
        submit_secs
    };
    let mut lat: Vec<f64> = receipts.iter().map(|r| r.1).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    e2e.sort_by(|a, b| a.total_cmp(b));
    let delivered = e2e.len();
    let docs_per_s = delivered as f64 / secs;
    // Before asking the hubs for their counters: their stats read the last day's messages,
    // which is not the documents' cost.
    let with_steal = clock.and_then(|c| c.per_with_steal(a.docs));
    let cpu_per_doc = with_steal.map(|(o, m, _)| (o, m));
    let counters_after = hub_counters(&a.hub).await?;
    let per_doc =
        |after: u64, before: u64| after.saturating_sub(before) as f64 / a.docs.max(1) as f64;
    let mb_per_s = (delivered * payload_bytes) as f64 / 1e6 / secs;
    let io_line = format!(
        " syncs_per_doc={:.3} broker_msgs_per_doc={:.2} sled_ceiling_docs_per_s={ceiling:.1} ratio={:.3} mb_per_s={mb_per_s:.1} disk_write_mb_per_s={disk_mb:.1} mb_ratio={:.3} hub_resident_mb_before={:.1} hub_resident_mb_after={:.1}",
        per_doc(counters_after.syncs, counters_before.syncs),
        per_doc(counters_after.broker, counters_before.broker),
        docs_per_s / ceiling,
        mb_per_s / disk_mb,
        counters_before.resident_bytes as f64 / 1e6,
        counters_after.resident_bytes as f64 / 1e6,
    );
    let cpu = |c: Option<(f64, f64)>, own: &str, machine: &str| {
        c.map(|(o, m)| format!(" {own}={o:.3} {machine}={m:.3}"))
            .unwrap_or_default()
    };
    let cpu_line = format!(
        "{}{}{} hub_cpu_ms_per_doc={:.3} cores={}",
        submit_cpu
            .map(|(o, _)| format!(" client_submit_cpu_ms_per_doc={o:.3}"))
            .unwrap_or_default(),
        cpu(
            cpu_per_doc,
            "client_cpu_ms_per_doc",
            "machine_cpu_ms_per_doc"
        ),
        with_steal
            .map(|(_, _, st)| format!(" machine_steal_ms_per_doc={st:.3}"))
            .unwrap_or_default(),
        per_doc(counters_after.cpu_ms, counters_before.cpu_ms),
        cores()
    );
    let raw = raw
        .map(|(r, c)| {
            format!(
                " raw_amqp_msgs_per_s={r:.1} hub_vs_raw={:.2}{}",
                docs_per_s / r,
                cpu(c, "raw_client_cpu_ms_per_msg", "raw_machine_cpu_ms_per_msg")
            )
        })
        .unwrap_or_default();
    println!(
        "bench docs={} secs={:.3} docs_per_s={:.1} p50_ms={:.2} p99_ms={:.2} e2e_p50_ms={:.1} e2e_p99_ms={:.1} submit_docs_per_s={:.1} delivered={} undelivered={} errors={} concurrency={} payload_bytes={} rate={} hubs={}{io_line}{cpu_line}{raw}",
        a.docs,
        secs,
        docs_per_s,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&e2e, 0.50),
        percentile(&e2e, 0.99),
        receipts.len() as f64 / submit_secs,
        delivered,
        undelivered,
        errors.len(),
        concurrency,
        payload_bytes,
        a.rate,
        a.hub.hub.len(),
    );
    if let Some(e) = errors.first() {
        eprintln!("first submit error: {e}");
    }
    Ok(if errors.is_empty() && undelivered == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::CpuClock;

    #[test]
    fn cpu_clock_reads_proc() {
        // A command name with a space and a bracket; utime 250 and stime 50 ticks.
        let own = "4242 (edt hub) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        let stat = "cpu  1000 10 300 5000 40 5 5 2 0 0\ncpu0 500 5 150 2500 20 2 3 1 0 0\n";
        let c = CpuClock::read(own, stat, 100).expect("readable");
        assert_eq!(c.own_ms, 3000.0);
        // 1000 + 10 + 300 + 5 + 5 ticks busy; idle, iowait and the 2 stolen left out.
        assert_eq!(c.machine_ms, 13_200.0);
        assert_eq!(c.steal_ms, 20.0);
        assert!(CpuClock::read("4242 (edthub) S 1", stat, 100).is_none());
        assert!(CpuClock::read(own, "intr 1 2 3\n", 100).is_none());
        assert!(CpuClock::read(own, "cpu  1 2 3\n", 100).is_none());
    }
}
