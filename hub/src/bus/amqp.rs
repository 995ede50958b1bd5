//! The RabbitMQ bus (lapin): how several hub nodes share work.
//!
//! Topology, declared by the hub itself for each queue `Q` (all names prefixed, default
//! `edthub.`):
//! - `edthub.Q`: a durable **quorum** queue with a delivery limit; messages it gives up on
//!   (delivery limit reached) are dead-lettered by the broker to `edthub.Q.dead`.
//! - `edthub.Q.dead`: the dead letters, kept for ops.
//! - `edthub.Q.delay.N`: durable queues with a message TTL of N ms whose expired messages
//!   dead-letter back to `edthub.Q` — delayed retry without a plugin. A delay is rounded up to
//!   the next of a fixed set of buckets, so each queue holds one TTL and expires in order.
//!
//! Every publish is persistent and waits for the publisher confirm (and for the message not to
//! have been returned as unroutable). Consumers use manual acks with a prefetch; an item given
//! back with [`Bus::retry_later`] is republished to a delay queue (carrying its hand-out count
//! in a header) and only then acked. A lost connection returns unacked items to the queue; the
//! next call reconnects with capped backoff.

use super::{
    count_dead_letter, dead_letter_at_limit, Bus, BusError, BusItem, DeadLetter, Requeued,
};
use futures::future::BoxFuture;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Delay buckets, in milliseconds.
const DELAYS_MS: [u64; 16] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    1_800_000, 3_600_000, 21_600_000, 86_400_000,
];

const DELIVERIES_HEADER: &str = "x-edthub-deliveries";
const REASON_HEADER: &str = "x-edthub-reason";

/// Settings for [`AmqpBus`].
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `amqp://user:pass@host:5672/%2f`.
    pub url: String,
    /// Unacked items per consumer.
    pub prefetch: u16,
    /// Prefix of every queue name.
    pub prefix: String,
    /// Hand-outs before an item is dead-lettered.
    pub max_deliveries: u32,
}

/// A queue argument value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(String),
    /// Sent as a 32-bit integer.
    I32(i32),
    /// Sent as a 64-bit integer.
    I64(i64),
}

/// One durable queue of the topology, as the hub declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: String,
    pub args: Vec<(&'static str, Arg)>,
}

impl QueueSpec {
    fn field_table(&self) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in &self.args {
            let v = match v {
                Arg::Str(s) => AMQPValue::LongString(s.clone().into()),
                Arg::I32(n) => AMQPValue::LongInt(*n),
                Arg::I64(n) => AMQPValue::LongLongInt(*n),
            };
            t.insert((*k).into(), v);
        }
        t
    }

    /// Declares the queue, durable, with its arguments.
    async fn declare(&self, ch: &Channel) -> Result<(), BusError> {
        let options = QueueDeclareOptions::durable();
        let name = self.name.clone().into();
        ch.queue_declare(name, options, self.field_table())
            .await
            .map_err(err)?;
        Ok(())
    }

    /// The queue as an entry of RabbitMQ's definitions file.
    pub fn definition(&self, vhost: &str) -> serde_json::Value {
        let args: serde_json::Map<String, serde_json::Value> = self
            .args
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Arg::Str(s) => serde_json::Value::from(s.clone()),
                    Arg::I32(n) => serde_json::Value::from(*n),
                    Arg::I64(n) => serde_json::Value::from(*n),
                };
                ((*k).to_string(), v)
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "vhost": vhost,
            "durable": true,
            "auto_delete": false,
            "arguments": args,
        })
    }
}

/// The dead-letter queue and the work queue of logical queue `q`.
pub fn queue_specs(prefix: &str, q: &str, max_deliveries: u32) -> [QueueSpec; 2] {
    let dead = format!("{prefix}{q}.dead");
    [
        QueueSpec {
            name: dead.clone(),
            args: vec![("x-queue-type", Arg::Str("quorum".into()))],
        },
        QueueSpec {
            name: format!("{prefix}{q}"),
            args: vec![
                ("x-queue-type", Arg::Str("quorum".into())),
                ("x-delivery-limit", Arg::I32(max_deliveries as i32)),
                ("x-dead-letter-exchange", Arg::Str(String::new())),
                ("x-dead-letter-routing-key", Arg::Str(dead)),
            ],
        },
    ]
}

/// The fanout exchange of broadcast topic `topic`.
pub fn exchange_name(prefix: &str, topic: &str) -> String {
    format!("{prefix}{topic}")
}

/// The delay queue of `q` for one bucket: messages wait `ms`, then return to `q`.
pub fn delay_spec(prefix: &str, q: &str, ms: u64) -> QueueSpec {
    QueueSpec {
        name: format!("{prefix}{q}.delay.{ms}"),
        args: vec![
            ("x-message-ttl", Arg::I64(ms as i64)),
            ("x-dead-letter-exchange", Arg::Str(String::new())),
            (
                "x-dead-letter-routing-key",
                Arg::Str(format!("{prefix}{q}")),
            ),
        ],
    }
}

/// RabbitMQ definitions (for `rabbitmqctl import_definitions` or `load_definitions`) of
/// everything the hub declares for a cluster of the nodes named `nodes`: the shared deliver
/// queue, each node's home and claims queues, each with its dead-letter queue and all its
/// delay queues, and the fanout exchange of local-id claims with each claims queue bound.
pub fn definitions(
    prefix: &str,
    vhost: &str,
    nodes: &[String],
    max_deliveries: u32,
) -> serde_json::Value {
    use crate::bus::messages::{claims_queue, home_queue, CLAIMS};
    let tags: Vec<u16> = nodes.iter().map(|n| crate::track::node_tag(n)).collect();
    let mut queues = vec![crate::bus::DELIVER_QUEUE.to_string()];
    queues.extend(tags.iter().map(|t| home_queue(*t)));
    queues.extend(tags.iter().map(|t| claims_queue(*t)));
    let mut specs = Vec::new();
    for q in &queues {
        specs.extend(queue_specs(prefix, q, max_deliveries));
        specs.extend(DELAYS_MS.iter().map(|ms| delay_spec(prefix, q, *ms)));
    }
    let exchange = exchange_name(prefix, CLAIMS);
    serde_json::json!({
        "vhosts": [{ "name": vhost }],
        "queues": specs.iter().map(|s| s.definition(vhost)).collect::<Vec<_>>(),
        "exchanges": [{
            "name": exchange,
            "vhost": vhost,
            "type": "fanout",
            "durable": true,
            "auto_delete": false,
            "internal": false,
            "arguments": {},
        }],
        "bindings": tags.iter().map(|t| serde_json::json!({
            "source": exchange,
            "vhost": vhost,
            "destination": format!("{prefix}{}", claims_queue(*t)),
            "destination_type": "queue",
            "routing_key": "",
            "arguments": {},
        })).collect::<Vec<_>>(),
        "policies": [],
    })
}

struct Link {
    conn: Connection,
    publish: Channel,
    generation: u64,
}

/// A queue's consumer: its connection generation, the consumer, and its channel.
type SharedConsumer = (u64, Arc<Mutex<Consumer>>, Channel);

/// The RabbitMQ bus.
pub struct AmqpBus {
    settings: AmqpSettings,
    link: Mutex<Option<Link>>,
    generation: AtomicU64,
    /// Queues declared on the current connection generation.
    declared: std::sync::Mutex<(u64, HashSet<String>)>,
    /// One consumer (on its own channel) per queue, shared by that queue's receivers.
    consumers: std::sync::Mutex<HashMap<String, SharedConsumer>>,
    /// Handed out and not yet settled: (queue, tag) → the delivery.
    pending: std::sync::Mutex<HashMap<(String, u64), (u64, Delivery)>>,
    next_tag: AtomicU64,
    healthy: AtomicBool,
    declared_names: std::sync::Mutex<HashSet<String>>,
}

fn err(e: lapin::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// How long any one exchange with the broker may take. A broker that is starting, stopping
/// or partitioned can leave a request unanswered; the caller then reconnects.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// `fut`, or `Unavailable` when the broker does not answer within [`OP_TIMEOUT`].
async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, BusError>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(BusError::Unavailable(format!(
            "RabbitMQ did not answer {what} within {OP_TIMEOUT:?}"
        ))),
    }
}

/// Acks `d` with the broker; a failure is logged as `failed` (the broker hands the item out
/// again, and consumers are idempotent).
async fn ack_or_warn(d: &Delivery, failed: &str) {
    let acked = bounded("an ack", async {
        d.acker.ack(BasicAckOptions::default()).await.map_err(err)
    });
    if let Err(e) = acked.await {
        tracing::warn!(error = %e, "{failed}");
    }
}

/// Closes a connection without waiting on a broker that may not answer.
async fn close_quietly(conn: &Connection, code: u16, text: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(code, text.into())).await;
}

fn header_u32(d: &Delivery, name: &str) -> Option<u32> {
    let headers = d.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongUInt(v) => Some(*v),
        AMQPValue::LongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongLongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::ShortInt(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

fn header_str(d: &Delivery, name: &str) -> Option<String> {
    let headers = d.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// How many times this delivery has been handed out, this time included: hand-outs before a
/// republish (our header) plus the broker's own redelivery count.
fn deliveries_of(d: &Delivery) -> u32 {
    let before = header_u32(d, DELIVERIES_HEADER).unwrap_or(0);
    let broker = header_u32(d, "x-delivery-count").unwrap_or(if d.redelivered { 1 } else { 0 });
    before + broker + 1
}

impl AmqpBus {
    /// Connects and returns the bus. Fails when the broker cannot be reached.
    pub async fn connect(settings: AmqpSettings) -> Result<Self, BusError> {
        let bus = Self::lazy(settings);
        bus.channel().await?;
        Ok(bus)
    }

    /// The bus, connecting on first use (and reconnecting after a failure).
    pub fn lazy(settings: AmqpSettings) -> Self {
        Self {
            settings,
            link: Mutex::new(None),
            generation: AtomicU64::new(0),
            declared: std::sync::Mutex::new((0, HashSet::new())),
            consumers: std::sync::Mutex::new(HashMap::new()),
            pending: std::sync::Mutex::new(HashMap::new()),
            next_tag: AtomicU64::new(1),
            healthy: AtomicBool::new(false),
            declared_names: std::sync::Mutex::new(HashSet::new()),
        }
    }

    fn main_queue(&self, q: &str) -> String {
        format!("{}{q}", self.settings.prefix)
    }

    fn dead_queue(&self, q: &str) -> String {
        format!("{}{q}.dead", self.settings.prefix)
    }

    fn delay_queue(&self, q: &str, ms: u64) -> String {
        format!("{}{q}.delay.{ms}", self.settings.prefix)
    }

    /// The publishing channel of a working connection (made again when needed), and the
    /// connection's generation.
    async fn channel(&self) -> Result<(Channel, u64), BusError> {
        let mut link = self.link.lock().await;
        let broken = link
            .as_ref()
            .is_none_or(|l| !l.conn.status().connected() || !l.publish.status().connected());
        if broken {
            if let Some(old) = link.take() {
                close_quietly(&old.conn, 320, "reconnecting").await;
            }
            let connected = bounded("a connection", async {
                let conn = Connection::connect(
                    &self.settings.url,
                    ConnectionProperties::default().with_connection_name("edthub".into()),
                )
                .await
                .map_err(err)?;
                let publish = conn.create_channel().await.map_err(err)?;
                publish
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(err)?;
                Ok((conn, publish))
            })
            .await;
            let (conn, publish) = connected.inspect_err(|_| {
                self.healthy.store(false, Ordering::Relaxed);
            })?;
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            // Items handed out on the old connection will be redelivered by the broker.
            self.pending.lock().expect("pending lock").clear();
            self.consumers.lock().expect("consumers lock").clear();
            *self.declared.lock().expect("declared lock") = (generation, HashSet::new());
            *link = Some(Link {
                conn,
                publish,
                generation,
            });
            self.healthy.store(true, Ordering::Relaxed);
            if generation > 1 {
                tracing::info!(generation, "reconnected to RabbitMQ");
            }
        }
        let l = link.as_ref().expect("link just made");
        Ok((l.publish.clone(), l.generation))
    }

    /// Forgets a connection that failed, so the next call makes a new one.
    async fn broken(&self, generation: u64, e: &BusError) {
        if !matches!(e, BusError::Unavailable(_)) {
            return;
        }
        self.healthy.store(false, Ordering::Relaxed);
        let mut link = self.link.lock().await;
        if link.as_ref().is_some_and(|l| l.generation == generation) {
            if let Some(old) = link.take() {
                close_quietly(&old.conn, 320, "failed").await;
            }
        }
    }

    fn is_declared(&self, generation: u64, name: &str) -> bool {
        let d = self.declared.lock().expect("declared lock");
        d.0 == generation && d.1.contains(name)
    }

    fn mark_declared(&self, generation: u64, names: &[String]) {
        let mut d = self.declared.lock().expect("declared lock");
        if d.0 == generation {
            d.1.extend(names.iter().cloned());
        }
        self.declared_names
            .lock()
            .expect("names lock")
            .extend(names.iter().cloned());
    }

    async fn declare(&self, ch: &Channel, generation: u64, q: &str) -> Result<(), BusError> {
        let main = self.main_queue(q);
        if self.is_declared(generation, &main) {
            return Ok(());
        }
        let [dead, work] = queue_specs(&self.settings.prefix, q, self.settings.max_deliveries);
        for spec in [&dead, &work] {
            spec.declare(ch).await?;
        }
        self.mark_declared(generation, &[work.name, dead.name]);
        Ok(())
    }

    /// Declares the fanout exchange of a broadcast topic; its name.
    async fn declare_exchange(
        &self,
        ch: &Channel,
        generation: u64,
        topic: &str,
    ) -> Result<String, BusError> {
        let name = exchange_name(&self.settings.prefix, topic);
        let key = format!("exchange {name}");
        if self.is_declared(generation, &key) {
            return Ok(name);
        }
        ch.exchange_declare(
            name.as_str().into(),
            lapin::ExchangeKind::Fanout,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        self.mark_declared(generation, std::slice::from_ref(&key));
        Ok(name)
    }

    async fn declare_delay(
        &self,
        ch: &Channel,
        generation: u64,
        q: &str,
        ms: u64,
    ) -> Result<String, BusError> {
        let name = self.delay_queue(q, ms);
        if self.is_declared(generation, &name) {
            return Ok(name);
        }
        delay_spec(&self.settings.prefix, q, ms).declare(ch).await?;
        self.mark_declared(generation, std::slice::from_ref(&name));
        Ok(name)
    }

    /// Publishes persistently and waits for the broker to confirm it stored the message.
    async fn publish_to(
        &self,
        ch: &Channel,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<(), BusError> {
        self.publish_via(ch, "", routing_key, body, headers).await
    }

    /// [`AmqpBus::publish_to`] through `exchange`: a fanout exchange (routing key empty)
    /// need not have a queue bound to it.
    async fn publish_via(
        &self,
        ch: &Channel,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<(), BusError> {
        BROKER_MESSAGES.fetch_add(1, Ordering::Relaxed);
        let confirm = ch
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: exchange.is_empty(),
                    ..Default::default()
                },
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .map_err(err)?
            .await
            .map_err(err)?;
        if !confirm.is_ack() {
            return Err(BusError::Unavailable(format!(
                "the broker refused a message for {routing_key}"
            )));
        }
        if confirm.take_message().is_some() {
            return Err(BusError::Unavailable(format!(
                "no queue {routing_key} took the message"
            )));
        }
        Ok(())
    }

    async fn publish_delayed(
        &self,
        queue: &str,
        body: &[u8],
        delay: Duration,
        deliveries: u32,
    ) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        if deliveries > 0 {
            headers.insert(DELIVERIES_HEADER.into(), AMQPValue::LongUInt(deliveries));
        }
        let ms = delay.as_millis() as u64;
        let (ch, generation) = self.channel().await?;
        let r = bounded("a publish", async {
            self.declare(&ch, generation, queue).await?;
            let target = if ms == 0 {
                self.main_queue(queue)
            } else {
                let bucket = DELAYS_MS
                    .iter()
                    .copied()
                    .find(|b| *b >= ms)
                    .unwrap_or(DELAYS_MS[DELAYS_MS.len() - 1]);
                self.declare_delay(&ch, generation, queue, bucket).await?
            };
            self.publish_to(&ch, &target, body, headers).await
        })
        .await;
        if let Err(e) = &r {
            self.broken(generation, e).await;
        }
        r
    }

    async fn consumer(&self, queue: &str) -> Result<(Arc<Mutex<Consumer>>, u64), BusError> {
        let (ch, generation) = self.channel().await?;
        if let Some((g, c, _)) = self.consumers.lock().expect("consumers lock").get(queue) {
            if *g == generation {
                return Ok((c.clone(), generation));
            }
        }
        let r = bounded("a new consumer", async {
            self.declare(&ch, generation, queue).await?;
            let link = self.link.lock().await;
            let Some(l) = link.as_ref().filter(|l| l.generation == generation) else {
                return Err(BusError::Unavailable("connection replaced".into()));
            };
            let cch = l.conn.create_channel().await.map_err(err)?;
            drop(link);
            cch.basic_qos(self.settings.prefetch, BasicQosOptions { global: false })
                .await
                .map_err(err)?;
            let consumer = cch
                .basic_consume(
                    self.main_queue(queue).into(),
                    ShortString::from(format!("edthub-{}", crate::track::new_id().simple())),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            Ok((Arc::new(Mutex::new(consumer)), cch))
        })
        .await;
        match r {
            Ok((c, cch)) => {
                let mut consumers = self.consumers.lock().expect("consumers lock");
                // Another receiver may have made one meanwhile: use the first.
                let entry = consumers
                    .entry(queue.to_string())
                    .or_insert_with(|| (generation, c.clone(), cch.clone()));
                if entry.0 != generation {
                    *entry = (generation, c.clone(), cch);
                }
                Ok((entry.1.clone(), generation))
            }
            Err(e) => {
                self.broken(generation, &e).await;
                Err(e)
            }
        }
    }

    fn take_pending(&self, item: &BusItem) -> Option<(u64, Delivery)> {
        self.pending
            .lock()
            .expect("pending lock")
            .remove(&(item.queue.clone(), item.tag))
    }

    fn put_back(&self, item: &BusItem, generation: u64, d: Delivery) {
        self.pending
            .lock()
            .expect("pending lock")
            .insert((item.queue.clone(), item.tag), (generation, d));
    }

    /// Names of the queues this bus declared.
    pub fn declared(&self) -> Vec<String> {
        self.declared_names
            .lock()
            .expect("names lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Deletes queues (tests clean up after themselves).
    pub async fn delete_queues(&self, names: Vec<String>) -> Result<(), BusError> {
        let (ch, _) = self.channel().await?;
        for n in names {
            ch.queue_delete(n.into(), QueueDeleteOptions::default())
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Closes the connection: unacked items go back to their queues.
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            close_quietly(&link.conn, 200, "closing").await;
        }
        self.consumers.lock().expect("consumers lock").clear();
        self.healthy.store(false, Ordering::Relaxed);
    }
}

static BROKER_MESSAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Messages this process has published to the broker.
pub fn broker_messages() -> u64 {
    BROKER_MESSAGES.load(Ordering::Relaxed)
}

impl Bus for AmqpBus {
    fn publish<'a>(
        &'a self,
        queue: &'a str,
        body: Vec<u8>,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move { self.publish_delayed(queue, &body, delay, 0).await })
    }

    fn receive<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<BusItem, BusError>> {
        Box::pin(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let (consumer, generation) = match self.consumer(queue).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "RabbitMQ unavailable; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                };
                // A consumer on a dead connection may never end its stream: stop waiting on
                // it once the connection has been replaced or has failed.
                let next = {
                    let mut c = consumer.lock().await;
                    // The first check is half a second away. (An interval's first tick is
                    // due at once, but the timer only fires on its next millisecond: waiting
                    // for it here, under the lock, held every receiver up by a millisecond
                    // per item, about a thousand items a second at most.)
                    let every = Duration::from_millis(500);
                    let mut check =
                        tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    loop {
                        tokio::select! {
                            n = c.next() => break Some(n),
                            _ = check.tick() => {
                                // Notices a dropped connection (and reconnects) even when
                                // nothing else is talking to the broker.
                                match self.channel().await {
                                    Ok((_, g)) if g == generation => {}
                                    _ => break None,
                                }
                            }
                        }
                    }
                };
                let Some(next) = next else {
                    // The connection changed: consume again on the new one.
                    continue;
                };
                match next {
                    Some(Ok(delivery)) => {
                        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
                        let item = BusItem {
                            queue: queue.to_string(),
                            tag,
                            body: delivery.data.clone(),
                            deliveries: deliveries_of(&delivery),
                        };
                        self.pending
                            .lock()
                            .expect("pending lock")
                            .insert((queue.to_string(), tag), (generation, delivery));
                        return Ok(item);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "RabbitMQ consumer failed; reconnecting");
                        self.broken(generation, &err(e)).await;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                    None => {
                        // The consumer ended (channel closed): make a new one.
                        {
                            let mut consumers = self.consumers.lock().expect("consumers lock");
                            if consumers
                                .get(queue)
                                .is_some_and(|(g, _, _)| *g == generation)
                            {
                                consumers.remove(queue);
                            }
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        })
    }

    fn ack<'a>(&'a self, item: &'a BusItem) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let Some((_, d)) = self.take_pending(item) else {
                // Its connection is gone: the broker hands it out again.
                return Ok(());
            };
            // Acks on a replaced connection fail; the broker redelivers, consumers are
            // idempotent.
            ack_or_warn(&d, "ack failed; the item will be redelivered").await;
            Ok(())
        })
    }

    fn retry_later<'a>(
        &'a self,
        item: &'a BusItem,
        delay: Duration,
    ) -> BoxFuture<'a, Result<Requeued, BusError>> {
        Box::pin(async move {
            let max = self.settings.max_deliveries;
            if dead_letter_at_limit(self, item, item.deliveries, max).await? {
                return Ok(Requeued::DeadLettered);
            }
            let Some((generation, d)) = self.take_pending(item) else {
                return Err(item.not_in_flight());
            };
            // The copy is safely queued before the original is acked.
            if let Err(e) = self
                .publish_delayed(
                    &item.queue,
                    &item.body,
                    delay.max(Duration::from_millis(1)),
                    item.deliveries,
                )
                .await
            {
                self.put_back(item, generation, d);
                return Err(e);
            }
            ack_or_warn(&d, "ack after requeue failed; the item may come twice").await;
            Ok(Requeued::Later)
        })
    }

    fn dead_letter<'a>(
        &'a self,
        item: &'a BusItem,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let Some((generation, d)) = self.take_pending(item) else {
                return Err(item.not_in_flight());
            };
            let mut headers = FieldTable::default();
            headers.insert(
                DELIVERIES_HEADER.into(),
                AMQPValue::LongUInt(item.deliveries),
            );
            headers.insert(
                REASON_HEADER.into(),
                AMQPValue::LongString(LongString::from(reason)),
            );
            let r = async {
                let (ch, g) = self.channel().await?;
                let r = bounded("a dead letter", async {
                    self.declare(&ch, g, &item.queue).await?;
                    self.publish_to(&ch, &self.dead_queue(&item.queue), &item.body, headers)
                        .await
                })
                .await;
                if let Err(e) = &r {
                    self.broken(g, e).await;
                }
                r
            }
            .await;
            if let Err(e) = r {
                self.put_back(item, generation, d);
                return Err(e);
            }
            count_dead_letter(&item.queue);
            ack_or_warn(
                &d,
                "ack after dead-lettering failed; the item may come again",
            )
            .await;
            Ok(())
        })
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BusError>> {
        Box::pin(async move {
            let (pch, generation) = self.channel().await?;
            let r = bounded("a dead-letter listing", async {
                self.declare(&pch, generation, queue).await?;
                let ch = {
                    let link = self.link.lock().await;
                    let Some(l) = link.as_ref().filter(|l| l.generation == generation) else {
                        return Err(BusError::Unavailable("connection replaced".into()));
                    };
                    l.conn.create_channel().await.map_err(err)?
                };
                // Read them without taking them: get each unacked, then give all back.
                let mut out = Vec::new();
                let mut last_tag = None;
                while let Some(m) = ch
                    .basic_get(
                        self.dead_queue(queue).into(),
                        BasicGetOptions { no_ack: false },
                    )
                    .await
                    .map_err(err)?
                {
                    let d = &m.delivery;
                    last_tag = Some(d.delivery_tag);
                    out.push(DeadLetter {
                        queue: queue.to_string(),
                        body: d.data.clone(),
                        deliveries: header_u32(d, DELIVERIES_HEADER)
                            .unwrap_or_else(|| header_u32(d, "x-delivery-count").unwrap_or(0) + 1),
                        reason: header_str(d, REASON_HEADER).unwrap_or_else(|| {
                            "delivery limit reached (dead-lettered by the broker)".into()
                        }),
                    });
                }
                if let Some(tag) = last_tag {
                    ch.basic_nack(
                        tag,
                        BasicNackOptions {
                            multiple: true,
                            requeue: true,
                        },
                    )
                    .await
                    .map_err(err)?;
                }
                let _ = ch.close(200, "done".into()).await;
                Ok(out)
            })
            .await;
            if let Err(e) = &r {
                self.broken(generation, e).await;
            }
            r
        })
    }

    fn queued<'a>(
        &'a self,
        _queue: &'a str,
    ) -> BoxFuture<'a, Result<Option<HashSet<Vec<u8>>>, BusError>> {
        Box::pin(async { Ok(None) })
    }

    fn broadcast<'a>(
        &'a self,
        topic: &'a str,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let (ch, generation) = self.channel().await?;
            let r = bounded("a broadcast", async {
                let exchange = self.declare_exchange(&ch, generation, topic).await?;
                self.publish_via(&ch, &exchange, "", &body, FieldTable::default())
                    .await
            })
            .await;
            if let Err(e) = &r {
                self.broken(generation, e).await;
            }
            r
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let (ch, generation) = self.channel().await?;
            let r = bounded("a subscription", async {
                self.declare(&ch, generation, queue).await?;
                let exchange = self.declare_exchange(&ch, generation, topic).await?;
                ch.queue_bind(
                    self.main_queue(queue).into(),
                    exchange.into(),
                    "".into(),
                    lapin::options::QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(err)
            })
            .await;
            if let Err(e) = &r {
                self.broken(generation, e).await;
            }
            r
        })
    }

    fn history<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Option<u64>, BusError>> {
        Box::pin(async move {
            let (_, generation) = self.channel().await?;
            bounded("a queue check", async {
                // A channel of its own: a passive declare of a missing queue closes it.
                let ch = {
                    let link = self.link.lock().await;
                    let Some(l) = link.as_ref().filter(|l| l.generation == generation) else {
                        return Err(BusError::Unavailable("connection replaced".into()));
                    };
                    l.conn.create_channel().await.map_err(err)?
                };
                let mut passive = QueueDeclareOptions::durable();
                passive.passive = true;
                match ch
                    .queue_declare(
                        self.main_queue(queue).into(),
                        passive,
                        FieldTable::default(),
                    )
                    .await
                {
                    Ok(q) => {
                        let _ = ch.close(200, "done".into()).await;
                        Ok(Some(u64::from(q.message_count())))
                    }
                    Err(e) => match e.kind() {
                        lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404 => Ok(None),
                        _ => Err(err(e)),
                    },
                }
            })
            .await
        })
    }

    fn depth<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64, BusError>> {
        Box::pin(async move {
            let (ch, generation) = self.channel().await?;
            let r = bounded("a queue depth", async {
                self.declare(&ch, generation, queue).await?;
                let mut passive = QueueDeclareOptions::durable();
                passive.passive = true;
                let q = ch
                    .queue_declare(
                        self.main_queue(queue).into(),
                        passive,
                        FieldTable::default(),
                    )
                    .await
                    .map_err(err)?;
                Ok(u64::from(q.message_count()))
            })
            .await;
            if let Err(e) = &r {
                self.broken(generation, e).await;
            }
            let handed_out = self
                .pending
                .lock()
                .expect("pending lock")
                .keys()
                .filter(|(q, _)| q == queue)
                .count() as u64;
            Ok(r? + handed_out)
        })
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::conformance::{self, BusFactory};

    #[test]
    fn the_shipped_definitions_are_what_the_hub_declares() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/rabbitmq/definitions.json"
        );
        let shipped: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let defaults = crate::config::Config::default();
        let expected = definitions(
            &defaults.amqp.queue_prefix,
            "/",
            &["hub-a".to_string(), "hub-b".to_string()],
            defaults.delivery.max_bus_deliveries,
        );
        assert_eq!(
            shipped, expected,
            "deploy/rabbitmq/definitions.json is stale: regenerate it with \
             `edthub amqp definitions --node hub-a --node hub-b`"
        );
        let names: Vec<&str> = shipped["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"edthub.deliver"));
        assert!(names.contains(&"edthub.deliver.dead"));
        assert!(names.contains(&"edthub.deliver.delay.1000"));
        assert_eq!(names.len(), 5 * (2 + DELAYS_MS.len()));
        assert_eq!(shipped["exchanges"][0]["name"], "edthub.claims");
        assert_eq!(shipped["bindings"].as_array().map(Vec::len), Some(2));
    }

    /// The broker the tests use: `EDTHUB_TEST_AMQP_URL`, else the local RabbitMQ.
    pub fn test_url() -> String {
        std::env::var("EDTHUB_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
    }

    struct Factory {
        prefix: String,
        opened: std::sync::Mutex<Vec<Arc<AmqpBus>>>,
        names: std::sync::Mutex<HashSet<String>>,
    }

    impl BusFactory for Factory {
        fn open(&self) -> BoxFuture<'_, Arc<dyn Bus>> {
            Box::pin(async move {
                // "Restart": the previous handle's connection goes away first.
                let previous: Vec<_> = self.opened.lock().unwrap().drain(..).collect();
                for b in previous {
                    self.names.lock().unwrap().extend(b.declared());
                    b.close().await;
                }
                let bus = AmqpBus::connect(AmqpSettings {
                    url: test_url(),
                    prefetch: 16,
                    prefix: self.prefix.clone(),
                    max_deliveries: conformance::MAX_DELIVERIES,
                })
                .await
                .unwrap_or_else(|e| panic!("RabbitMQ is required at {}: {e}", test_url()));
                let bus = Arc::new(bus);
                self.opened.lock().unwrap().push(bus.clone());
                bus as Arc<dyn Bus>
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn amqp_bus_passes_the_conformance_suite() {
        let f = Factory {
            prefix: format!("edthub-test-{}.", crate::track::new_id().simple()),
            opened: std::sync::Mutex::new(Vec::new()),
            names: std::sync::Mutex::new(HashSet::new()),
        };
        conformance::run_all(&f).await;
        let last = f.opened.lock().unwrap().pop().unwrap();
        let mut names: Vec<String> = f.names.lock().unwrap().drain().collect();
        names.extend(last.declared());
        names.sort();
        names.dedup();
        last.delete_queues(names).await.unwrap();
        last.close().await;
    }
}
