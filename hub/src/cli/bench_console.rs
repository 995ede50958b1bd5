//! `edthub bench --console URL`: times the ops console's pages on a running hub (signed in
//! with `EDTHUB_TOKEN`) and prints one line:
//!
//! ```text
//! bench console rounds=20 messages=1000000 first_overview_ms=2950.1 overview_p50_ms=4.2 overview_max_ms=6.0 messages_p50_ms=... practice_p50_ms=... resident_mb=...
//! ```
//!
//! `first_overview_ms` is the first overview after start-up, which reads the last seven days
//! of messages for its figures; the rest are the pages as people get them afterwards: the
//! overview, a filtered page of messages (`state=failed&since=24h`) and a practice's page.
//! `resident_mb` is the hub's resident memory afterwards (from `edthub stats`). A benchmark,
//! not a test: it asserts nothing.

use super::client;
use crate::console::pages::urlenc;
use edt_proto::v1;
use std::process::ExitCode;
use std::time::Instant;

/// A signed-in console session: its cookie.
struct Console {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

fn cookie_of(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|p| p.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
}

impl Console {
    async fn sign_in(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let base = base.trim_end_matches('/').to_string();
        let page = http.get(format!("{base}/console/sign-in")).send().await?;
        let pre = cookie_of(&page, crate::console::session::SIGN_IN_COOKIE)
            .ok_or_else(|| anyhow::anyhow!("{base} serves no console sign-in page"))?;
        let csrf = pre
            .split_once('=')
            .map(|x| x.1.to_string())
            .unwrap_or_default();
        let r = http
            .post(format!("{base}/console/sign-in"))
            .header(reqwest::header::COOKIE, &pre)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!(
                "csrf={}&token={}&method=token",
                urlenc(&csrf),
                urlenc(token)
            ))
            .send()
            .await?;
        let cookie = cookie_of(&r, crate::console::session::COOKIE).ok_or_else(|| {
            anyhow::anyhow!("sign-in refused ({}): check EDTHUB_TOKEN", r.status())
        })?;
        Ok(Self { http, base, cookie })
    }

    /// Fetches a page; its time in ms.
    async fn time(&self, path: &str) -> anyhow::Result<f64> {
        let t = Instant::now();
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status}");
        anyhow::ensure!(!body.is_empty(), "{path}: empty");
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }
}

fn p50_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

pub async fn run(
    hub: &super::HubArgs,
    base: &str,
    rounds: usize,
    practice: &str,
) -> anyhow::Result<ExitCode> {
    let token = std::env::var("EDTHUB_TOKEN").unwrap_or_default();
    let c = Console::sign_in(base, &token).await?;
    let first = c.time("/console/").await?;
    let pages = [
        ("overview", "/console/".to_string()),
        (
            "messages",
            "/console/messages?state=failed&since=24h".to_string(),
        ),
        ("practice", format!("/console/practices/{practice}")),
    ];
    let mut times = vec![Vec::new(); pages.len()];
    for _ in 0..rounds.max(1) {
        for (i, (_, path)) in pages.iter().enumerate() {
            times[i].push(c.time(path).await?);
        }
    }
    let mut admin = client::admin(&hub.hub[0]).await?;
    let stats = admin
        .get_stats(v1::GetStatsRequest {})
        .await
        .map_err(client::status_error)?
        .into_inner();
    let mut line = format!(
        "bench console rounds={} messages={} first_overview_ms={first:.1}",
        rounds.max(1),
        stats.messages
    );
    for ((name, _), t) in pages.iter().zip(times) {
        let (p50, max) = p50_max(t);
        line.push_str(&format!(" {name}_p50_ms={p50:.1} {name}_max_ms={max:.1}"));
    }
    line.push_str(&format!(
        " resident_mb={:.0}",
        stats.resident_bytes as f64 / 1_000_000.0
    ));
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
