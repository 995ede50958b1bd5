//! `edthub bench --mllp ADDR`: drives a hub's MLLP listener with 1 KB ORU^R01 results over
//! `--connections` connections (each sends, waits for the acknowledgement, sends the next),
//! at `--rate` results per second overall (0: as fast as the answers come), then follows each
//! result over gRPC until it is sent to its receiver. One line: results acknowledged per
//! second, acknowledgement (receipt) p50/p99, end-to-end results per second and p50/p99.

use super::bench::{percentile, wait_sent, wall_ms, BenchArgs};
use super::client;
use edt_transforms::hl7::mllp::{frame, next_frame};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NHS_NUMBERS: [&str; 4] = ["9434765919", "4010232137", "9990000018", "9876543210"];

/// A result of about 1 KB for practice `to`, control id `control`.
pub fn oru(facility: &str, control: &str, to: &str, n: usize) -> String {
    let nhs = NHS_NUMBERS[n % NHS_NUMBERS.len()];
    let mut m = format!(
        "MSH|^~\\&|BENCH|{facility}|EDTHUB|{to}|20261125093000||ORU^R01^ORU_R01|{control}|P|2.5\r\
         PID|1||{nhs}^^^NHS^NH||SAMPLE^ALEX||19700101|U\r\
         PD1|||PRACTICE^^^^^^^^^{to}\r\
         OBR|1|ORD-{n}|LAB-{n}|UE^Urea and electrolytes^L|||20261125080000||||||||||||||||||F\r\
         OBX|1|NM|NA^Sodium^L||140|mmol/L|133-146||||F\r\
         OBX|2|NM|K^Potassium^L||4.1|mmol/L|3.5-5.3||||F\r\
         OBX|3|NM|UREA^Urea^L||5.2|mmol/L|2.5-7.8||||F\r\
         OBX|4|NM|CREA^Creatinine^L||88|umol/L|59-104||||F\r"
    );
    let mut k = 0;
    while m.len() < 1000 {
        k += 1;
        m.push_str(&format!("NTE|{k}||Comment line {k} on the result\r"));
    }
    m
}

/// (message id from the acknowledgement's MSH-10, acknowledgement ms, wall ms sent).
type Acked = (String, f64, f64);

pub async fn run(a: &BenchArgs, addr: &str) -> anyhow::Result<ExitCode> {
    // Each result is followed over gRPC until it is sent on: a hub that cannot be reached is
    // reported before anything is sent, not after the run.
    let channels = vec![client::channel(a.hub.first()).await.map_err(|e| {
        anyhow::anyhow!("{e:#} (bench --mllp follows each result over gRPC: give the hub's gRPC address with --hub)")
    })?];
    let run_id = crate::track::new_id().simple().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let interval = (a.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / a.rate));
    let mut tasks = Vec::new();
    for _ in 0..a.connections.max(1) {
        let (addr, next, run_id) = (addr.to_string(), next.clone(), run_id.clone());
        let (docs, recipients, facility) = (a.docs, a.recipients.clone(), a.sender.clone());
        tasks.push(tokio::spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let mut acked: Vec<Acked> = Vec::new();
            let mut refused = Vec::new();
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = [0u8; 4096];
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= docs {
                    break;
                }
                if let Some(iv) = interval {
                    tokio::time::sleep_until((start + iv * n as u32).into()).await;
                }
                let control = format!("B{}-{n}", &run_id[..12]);
                let message = oru(&facility, &control, &recipients[n % recipients.len()], n);
                let sent_wall = wall_ms();
                let t = Instant::now();
                tcp.write_all(&frame(message.as_bytes()))
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot send to the hub's MLLP listener at {addr} ({e}); it answers \
                             AR and closes connections beyond its mllp.max_connections"
                        )
                    })?;
                let payload = loop {
                    if let Some((p, used)) = next_frame(&buf) {
                        let p = p.to_vec();
                        buf.drain(..used);
                        break p;
                    }
                    let k = tcp.read(&mut chunk).await?;
                    anyhow::ensure!(k > 0, "the hub closed the connection");
                    buf.extend_from_slice(&chunk[..k]);
                };
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let ack = edt_transforms::hl7::Message::parse_bytes(&payload)?;
                let summary = edt_transforms::hl7::parse_ack(&ack)?;
                if summary.code.is_accept() {
                    acked.push((summary.control_id, ms, sent_wall));
                } else {
                    refused.push(format!("{} {}", summary.code, summary.text));
                }
            }
            Ok::<_, anyhow::Error>((acked, refused))
        }));
    }
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        let (a, r) = t.await??;
        acked.extend(a);
        refused.extend(r);
    }
    let ack_secs = start.elapsed().as_secs_f64();
    let waiting = acked.iter().map(|(id, _, w)| (id.clone(), *w, 0)).collect();
    let (mut e2e, last_sent_ms, undelivered) =
        wait_sent(&channels, waiting, a.connections.max(1), a.timeout_secs).await?;
    let start_wall = acked.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let e2e_secs = if last_sent_ms > 0.0 && start_wall.is_finite() {
        ((last_sent_ms - start_wall) / 1000.0).max(ack_secs)
    } else {
        ack_secs
    };
    let mut lat: Vec<f64> = acked.iter().map(|r| r.1).collect();
    lat.sort_by(f64::total_cmp);
    e2e.sort_by(f64::total_cmp);
    println!(
        "bench mllp results={} connections={} rate={} secs={:.3} acked_per_s={:.1} ack_p50_ms={:.2} ack_p99_ms={:.2} results_per_s={:.1} e2e_p50_ms={:.1} e2e_p99_ms={:.1} delivered={} undelivered={} refused={} message_bytes={}",
        a.docs,
        a.connections,
        a.rate,
        e2e_secs,
        acked.len() as f64 / ack_secs,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        e2e.len() as f64 / e2e_secs,
        percentile(&e2e, 0.50),
        percentile(&e2e, 0.99),
        e2e.len(),
        undelivered,
        refused.len(),
        oru(&a.sender, "B", "A81001", 0).len(),
    );
    if let Some(r) = refused.first() {
        eprintln!("first refusal: {r}");
    }
    Ok(if refused.is_empty() && undelivered == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
