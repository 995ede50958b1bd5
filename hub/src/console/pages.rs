//! The pages: overview, messages (filters as `edthub messages list`, paged by cursor), one
//! message (its deliveries and timeline, as `edthub messages show`), practices, and the ops
//! actions page. Every value from a message is escaped by the templates (maud escapes all
//! text and attribute values).

use super::figures::{DAY_MS, HOUR_MS};
use super::session::{Session, Viewer};
use super::{chart, signed_in, St};
use crate::hub::MessageView;
use crate::store::ListQuery;
use crate::track::{now_ms, DeliveryRecord, DeliveryState};
use axum::extract::{Form, Path, Query};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use edt_proto::v1;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use uuid::Uuid;

/// Rows on a page of messages.
pub const PAGE: usize = 50;
/// How far a listing counts its matches (as `messages list`).
const COUNT_CAP: usize = 10_000;

/// A time as people read it: `2026-12-03 14:05:09`, UTC.
pub fn when(ms: u64) -> String {
    let s = crate::track::rfc3339(ms);
    s.get(..19).map(|x| x.replace('T', " ")).unwrap_or(s)
}

/// A duration as people read it: `45 s`, `12 min`, `3.5 h`, `2.0 d`.
pub fn took(ms: u64) -> String {
    let s = ms / 1000;
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 2 * 86_400 {
        format!("{:.1} h", s as f64 / 3600.0)
    } else {
        format!("{:.1} d", s as f64 / 86_400.0)
    }
}

/// The page around every page's content.
pub fn layout(title: &str, viewer: Option<&Session>, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · edthub" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body data-refresh=[refresh.then_some("10")] {
                header.top {
                    a.brand href="/console/" { "edthub" }
                    @if let Some(s) = viewer {
                        nav {
                            @if s.viewer.reads_all() {
                                a href="/console/" { "Overview" }
                            }
                            a href="/console/messages" { "Messages" }
                            @if s.viewer.reads_all() || s.viewer.caller.has(crate::config::Role::Receiver) {
                                a href="/console/practices" { "Practices" }
                            }
                            @if s.viewer.may_act() {
                                a href="/console/actions" { "Actions" }
                            }
                        }
                        div.who {
                            span { (s.viewer.caller.name) " (" (s.viewer.roles()) ")" }
                            form method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that says what went wrong.
pub fn error(status: StatusCode, message: &str) -> Response {
    let page = layout(
        status.canonical_reason().unwrap_or("Error"),
        None,
        false,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.problem { (message) }
            p { a href="/console/" { "Back to the console" } }
        },
    );
    (status, page).into_response()
}

fn state_badge(s: Option<DeliveryState>) -> Markup {
    let name = s.map_or("none", DeliveryState::as_str);
    html! { span class=(format!("state s-{name}")) { (name) } }
}

fn store_error(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "console: store failure");
    error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

// ---------------------------------------------------------------- sign-in

#[derive(Debug, Deserialize, Default)]
pub struct SignInQuery {
    #[serde(default)]
    pub problem: String,
}

/// The sign-in form: a token, or the certificate the TLS front vouched for. Its CSRF token
/// rides in a cookie of its own until there is a session.
pub async fn sign_in_page(State(c): St, headers: HeaderMap) -> Response {
    sign_in_form(&c, &headers, None)
}

pub fn sign_in_form(c: &super::Console, headers: &HeaderMap, problem: Option<&str>) -> Response {
    let token = super::session::random_token();
    let secure = super::session::over_tls(&c.hub.config, headers);
    let cert = super::session::forwarded_certificate(&c.hub.config, headers).is_some();
    let open = c.hub.config.identities.is_empty() && c.hub.config.admin_token.is_none();
    let page = layout(
        "Sign in",
        None,
        false,
        html! {
            section.signin {
                h1 { "Sign in" }
                @if let Some(p) = problem { p.problem { (p) } }
                @if open {
                    p { "This hub checks no identities (it serves only this machine): you act as ops." }
                }
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="csrf" value=(token);
                    @if !open {
                        label for="token" { "Your token" }
                        input #token type="password" name="token" autocomplete="current-password" autofocus;
                    }
                    button type="submit" name="method" value="token" { "Sign in" }
                    @if cert {
                        p { "or" }
                        button type="submit" name="method" value="certificate" { "Sign in with your certificate" }
                    }
                }
            }
        },
    );
    let status = if problem.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(
            header::SET_COOKIE,
            super::session::set_cookie(super::session::SIGN_IN_COOKIE, &token, secure, None),
        )],
        page,
    )
        .into_response()
}

use axum::extract::State;

// ---------------------------------------------------------------- overview

/// The overview: charts, counts by state, the oldest unacknowledged delivery, the 24-hour
/// discharge standard by sender, queues and nodes.
pub async fn overview(State(c): St, headers: HeaderMap) -> Response {
    let s = match signed_in(&c, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.viewer.reads_all() {
        return axum::response::Redirect::to("/console/messages").into_response();
    }
    let hub = &c.hub;
    let figures = match c.figures.get(hub).await {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    let counts = match hub.store.count_by_state() {
        Ok(c) => c,
        Err(e) => return store_error(e),
    };
    let oldest = match oldest_unacknowledged(hub) {
        Ok(o) => o,
        Err(e) => return store_error(e),
    };
    let q = crate::bus::DELIVER_QUEUE;
    let depth = hub.bus.depth(q).await.ok();
    let dead = hub.bus.dead_letters(q).await.ok().map(|d| d.len());
    let unmatched = hub.store.unmatched_acks(1000).map(|u| u.len()).ok();
    let nodes = node_health(hub).await;
    let (start24, r24, d24) = figures.last_hours(24);
    let (start7, r7, d7) = figures.last_hours(7 * 24);
    let mut senders: Vec<_> = figures.senders.values().collect();
    senders.sort_by(|a, b| {
        b.late_percent()
            .unwrap_or(-1.0)
            .total_cmp(&a.late_percent().unwrap_or(-1.0))
            .then(a.ods.cmp(&b.ods))
    });
    let body = html! {
        h1 { "Overview" }
        p.note { "Figures for the last seven days as of " (when(figures.now_ms)) " UTC; counts by state are live." }
        section.cards {
            h2 { "Deliveries by state" }
            ul.counts {
                @for (state, n) in &counts {
                    li {
                        a href=(format!("/console/messages?state={}", state.as_str())) {
                            (state_badge(Some(*state))) " " strong { (n) }
                        }
                    }
                }
            }
        }
        div.grid {
            section.card {
                h2 { "Oldest unacknowledged delivery" }
                @match &oldest {
                    Some((d, since)) => {
                        p {
                            a href=(format!("/console/messages/{}", d.message_id)) { (d.recipient_ods) }
                            " " (state_badge(Some(d.state)))
                            " — handed over " (when(*since)) " (" (took(now_ms().saturating_sub(*since))) " ago)"
                        }
                    }
                    None => { p { "None: every delivery handed over has been acknowledged." } }
                }
            }
            section.card {
                h2 { "Queues" }
                dl {
                    dt { "Waiting to be delivered" } dd { (opt(depth)) }
                    dt { "Dead letters" } dd { (opt(dead)) }
                    dt { "Acknowledgements matching nothing" } dd { (opt(unmatched)) }
                }
            }
            section.card {
                h2 { "Nodes" }
                table {
                    thead { tr { th { "Node" } th { "Health" } th { "Detail" } } }
                    tbody {
                        @for n in &nodes {
                            tr {
                                td { (n.name) }
                                td { span class=(if n.ok { "health ok" } else { "health bad" }) { (if n.ok { "ready" } else { "not ready" }) } }
                                td { (n.detail) }
                            }
                        }
                    }
                }
            }
        }
        (chart::draw(&chart::Series {
            title: "Last 24 hours",
            start_ms: start24, step_ms: HOUR_MS, received: r24, delivered: d24,
            names: ("received", "delivered"),
            label_every: 3, daily_labels: false,
        }))
        (chart::draw(&chart::Series {
            title: "Last 7 days",
            start_ms: start7, step_ms: HOUR_MS, received: r7, delivered: d7,
            names: ("received", "delivered"),
            label_every: 24, daily_labels: true,
        }))
        section {
            h2 { "The 24-hour discharge standard, by sender" }
            p.note { "Discharge documents received in the last seven days whose day is over (or that were filed): the share not accepted by the practice within 24 hours of receipt." }
            table.data {
                thead { tr { th { "Sender" } th.num { "Documents" } th.num { "Judged" } th.num { "Late" } th.num { "Late %" } } }
                tbody {
                    @for sf in &senders {
                        tr {
                            td { a href=(format!("/console/messages?sender={}", urlenc(&sf.ods))) { (sf.ods) } }
                            td.num { (sf.documents) }
                            td.num { (sf.judged) }
                            td.num { (sf.late) }
                            td.num { @match sf.late_percent() { Some(p) => { span class=(if p > 5.0 { "bad" } else { "ok" }) { (format!("{p:.1}")) } } None => { "—" } } }
                        }
                    }
                    @if senders.is_empty() { tr { td colspan="5" { "No documents in the last seven days." } } }
                }
            }
        }
    };
    (layout("Overview", Some(&s), false, body)).into_response()
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

/// The delivery handed over longest ago and still without an acknowledgement (sent or
/// overdue), with when it was handed over.
fn oldest_unacknowledged(
    hub: &crate::hub::Hub,
) -> Result<Option<(DeliveryRecord, u64)>, crate::store::StoreError> {
    let mut best: Option<(DeliveryRecord, u64)> = None;
    for state in [DeliveryState::Sent, DeliveryState::Overdue] {
        for id in hub.store.deliveries_in_state(state, u64::MAX, 1)? {
            if let Some(d) = hub.store.delivery(id)? {
                let at = d.sent_ms.unwrap_or(d.updated_ms);
                if best.as_ref().is_none_or(|(_, b)| at < *b) {
                    best = Some((d, at));
                }
            }
        }
    }
    Ok(best)
}

struct NodeHealth {
    name: String,
    ok: bool,
    detail: String,
}

/// This node, and each peer's `/readyz`.
async fn node_health(hub: &crate::hub::Hub) -> Vec<NodeHealth> {
    let mut out = vec![NodeHealth {
        name: format!("{} (this node)", hub.node),
        ok: hub.is_ready() && hub.bus.healthy(),
        detail: format!(
            "up since {}; {} MB resident{}",
            when(hub.started_ms),
            crate::admin::grpc::resident_bytes().unwrap_or(0) / 1_000_000,
            if hub.bus.healthy() {
                ""
            } else {
                "; the message broker is unavailable"
            }
        ),
    }];
    let peers = &hub.config.console.peers;
    if peers.is_empty() {
        return out;
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build();
    let Ok(client) = client else {
        return out;
    };
    let asks = peers.iter().map(|p| {
        let client = client.clone();
        let url = format!("{}/readyz", p.trim_end_matches('/'));
        async move {
            match client.get(&url).send().await {
                Ok(r) => {
                    let ok = r.status().is_success();
                    let text = r.text().await.unwrap_or_default();
                    (ok, text.trim().to_string())
                }
                Err(e) => (false, format!("unreachable: {e}")),
            }
        }
    });
    for (p, (ok, detail)) in peers.iter().zip(futures::future::join_all(asks).await) {
        out.push(NodeHealth {
            name: p.clone(),
            ok,
            detail,
        });
    }
    out
}

// ---------------------------------------------------------------- messages

/// The filters of `edthub messages list`, as a form. `nhs` is taken only from a POST.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub recipient: String,
    #[serde(default, rename = "type")]
    pub doc_type: String,
    #[serde(default)]
    pub nhs: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub after: String,
    #[serde(default)]
    pub csrf: String,
}

impl Filter {
    /// The admin API's request for these filters (times as the CLI reads them).
    pub fn request(&self, limit: u32) -> Result<v1::ListMessagesRequest, String> {
        let now = now_ms();
        let time = |s: &str, what: &str| -> Result<Option<prost_types::Timestamp>, String> {
            match s.trim() {
                "" => Ok(None),
                t => crate::track::parse_since(t, now)
                    .map(|ms| Some(crate::wire::ts(ms)))
                    .map_err(|e| format!("{what}: {e}")),
            }
        };
        let state = match self.state.trim() {
            "" => 0,
            s => crate::wire::state(
                s.parse::<DeliveryState>()
                    .map_err(|e| format!("state: {e}"))?,
            ),
        };
        let document_type = match self.doc_type.trim() {
            "" => 0,
            t => crate::wire::document_type_wire(
                t.parse::<edt_transforms::DocumentType>()
                    .map_err(|e| format!("type: {e}"))?,
            ) as i32,
        };
        Ok(v1::ListMessagesRequest {
            state,
            recipient_ods: self.recipient.trim().to_string(),
            sender_ods: self.sender.trim().to_string(),
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            limit,
            document_type,
            nhs_number: self.nhs.trim().to_string(),
            channel: String::new(),
            text: self.q.trim().to_string(),
            after: self.after.trim().to_string(),
        })
    }

    /// The store query, checked as the admin API checks it.
    pub fn query(&self, limit: u32) -> Result<ListQuery, String> {
        let req = self.request(limit)?;
        crate::admin::grpc::query(&req).map_err(|s| s.message().to_string())
    }

    /// Narrows the filter to what the viewer may see: a submitter's own senders, a receiver's
    /// own practices. `Err` when it names someone else's.
    pub fn scope(&mut self, v: &Viewer) -> Result<(), String> {
        use crate::config::Role;
        if v.reads_all() {
            return Ok(());
        }
        let own = |given: &mut String, role: &str| -> Result<(), String> {
            if given.trim().is_empty() {
                *given = v.caller.ods.first().cloned().unwrap_or_default();
            }
            if v.caller.acts_for(given.trim()) {
                Ok(())
            } else {
                Err(format!(
                    "{} may see only messages {role} its own ODS codes ({})",
                    v.caller.name,
                    v.caller.ods.join(", ")
                ))
            }
        };
        if v.caller.has(Role::Submitter) {
            own(&mut self.sender, "sent as")
        } else if v.caller.has(Role::Receiver) {
            own(&mut self.recipient, "sent to")
        } else {
            Err(format!("{} may not list messages", v.caller.name))
        }
    }

    /// The query string for a GET link (never with an NHS number).
    pub fn query_string(&self, after: Option<&str>) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("state", &self.state),
            ("sender", &self.sender),
            ("recipient", &self.recipient),
            ("type", &self.doc_type),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ] {
            if !v.trim().is_empty() {
                parts.push(format!("{k}={}", urlenc(v.trim())));
            }
        }
        if let Some(a) = after {
            parts.push(format!("after={}", urlenc(a)));
        }
        parts.join("&")
    }
}

/// Percent-encoding for a query value.
pub fn urlenc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GET: filters in the URL (never an NHS number).
pub async fn messages_get(State(c): St, headers: HeaderMap, Query(f): Query<Filter>) -> Response {
    let s = match signed_in(&c, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !f.nhs.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "An NHS number never goes in an address: search for it with the form (a POST).",
        );
    }
    list_page(&c, &s, f).await
}

/// POST: the search form, which may carry an NHS number.
pub async fn messages_post(State(c): St, headers: HeaderMap, Form(f): Form<Filter>) -> Response {
    let s = match super::checked_post(&c, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    list_page(&c, &s, f).await
}

async fn list_page(c: &super::Console, s: &Session, mut f: Filter) -> Response {
    if let Err(e) = f.scope(&s.viewer) {
        return error(StatusCode::FORBIDDEN, &e);
    }
    let q = match f.query(PAGE as u32) {
        Ok(q) => q,
        Err(e) => return filter_page(s, &f, Some(&e), None),
    };
    let hub = c.hub.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
        let page = hub.store.list_page(&q, COUNT_CAP)?;
        let mut rows = Vec::with_capacity(page.ids.len());
        for id in &page.ids {
            if let Some(v) = hub.view(*id)? {
                rows.push(v);
            }
        }
        Ok((page, rows))
    })
    .await;
    match found {
        Ok(Ok(found)) => filter_page(s, &f, None, Some(found)),
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn filter_form(s: &Session, f: &Filter) -> Markup {
    let scoped = !s.viewer.reads_all();
    html! {
        form.filters method="post" action="/console/messages" {
            input type="hidden" name="csrf" value=(s.csrf);
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for st in DeliveryState::ALL {
                        option value=(st.as_str()) selected[f.state == st.as_str()] { (st.as_str()) }
                    }
                }
            }
            label { "Sender " input name="sender" value=(f.sender) size="6" readonly[scoped && s.viewer.caller.has(crate::config::Role::Submitter)]; }
            label { "Recipient " input name="recipient" value=(f.recipient) size="6"; }
            label { "Type "
                select name="type" {
                    option value="" { "any" }
                    @for t in edt_transforms::DocumentType::ALL {
                        option value=(t.as_str()) selected[f.doc_type == t.as_str()] { (t.as_str()) }
                    }
                }
            }
            label { "NHS number " input name="nhs" value=(f.nhs) size="12" inputmode="numeric" autocomplete="off"; }
            label { "Since " input name="since" value=(f.since) size="10" placeholder="24h, 2026-02-28"; }
            label { "Until " input name="until" value=(f.until) size="10"; }
            label { "Text " input name="q" value=(f.q) size="14"; }
            button type="submit" { "Search" }
            " " a href="/console/messages" { "Clear" }
        }
    }
}

fn filter_page(
    s: &Session,
    f: &Filter,
    problem: Option<&str>,
    found: Option<(crate::store::ListPage, Vec<MessageView>)>,
) -> Response {
    let body = html! {
        h1 { "Messages" }
        (filter_form(s, f))
        @if let Some(p) = problem { p.problem { (p) } }
        @if let Some((page, rows)) = &found {
            p.note {
                (if page.total_is_lower_bound { "At least " } else { "" }) (page.total) " matching"
                @if !f.after.is_empty() { " (this page continues an earlier one)" }
            }
            table.data.messages {
                thead { tr {
                    th { "Received (UTC)" } th { "State" } th { "Sender" } th { "Recipients" }
                    th { "Type" } th { "Title" } th { "File" } th { "Message" }
                } }
                tbody {
                    @for v in rows {
                        tr {
                            td.nowrap { (when(v.message.received_ms)) }
                            td { (state_badge(v.state)) }
                            td { (v.message.sender_ods) }
                            td {
                                @for d in v.deliveries.iter().filter(|d| s.viewer.may_see_delivery(&v.message.sender_ods, &d.recipient_ods)) {
                                    span.recipient { (d.recipient_ods) " " (state_badge(Some(d.state))) } " "
                                }
                            }
                            td { (v.message.document_type.as_str()) }
                            td { (v.message.title.as_deref().unwrap_or("")) }
                            td { (v.message.file_name.as_deref().unwrap_or("")) }
                            td { a.mono href=(format!("/console/messages/{}", v.message.id)) { (short(&v.message.id)) } }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="8" { "Nothing matches." } } }
                }
            }
            @if rows.len() == PAGE && page.total > rows.len() as u64 {
                @let after = page.positions.last().map(ToString::to_string).unwrap_or_default();
                @if f.nhs.trim().is_empty() {
                    p.pager { a rel="next" href=(format!("/console/messages?{}", f.query_string(Some(&after)))) { "Older →" } }
                } @else {
                    form.pager method="post" action="/console/messages" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        @for (k, v) in [("state", &f.state), ("sender", &f.sender), ("recipient", &f.recipient), ("type", &f.doc_type), ("nhs", &f.nhs), ("since", &f.since), ("until", &f.until), ("q", &f.q)] {
                            input type="hidden" name=(k) value=(v);
                        }
                        input type="hidden" name="after" value=(after);
                        button type="submit" rel="next" { "Older →" }
                    }
                }
            }
        }
    };
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, layout("Messages", Some(s), false, body)).into_response()
}

fn short(id: &Uuid) -> String {
    id.to_string()
}

// ---------------------------------------------------------------- one message

/// The message a page or action names (a delivery id finds its message too), if the viewer
/// may see it.
pub fn find(
    hub: &crate::hub::Hub,
    viewer: &Viewer,
    id: &str,
) -> Result<(MessageView, Vec<DeliveryRecord>), Response> {
    let asked = Uuid::parse_str(id.trim())
        .map_err(|_| error(StatusCode::NOT_FOUND, "That is not a message id."))?;
    let id = match hub.store.message(asked) {
        Ok(Some(_)) => asked,
        Ok(None) => match hub.store.delivery(asked) {
            Ok(Some(d)) => d.message_id,
            Ok(None) => return Err(error(StatusCode::NOT_FOUND, "No such message.")),
            Err(e) => return Err(store_error(e)),
        },
        Err(e) => return Err(store_error(e)),
    };
    let view = match hub.view(id) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(error(StatusCode::NOT_FOUND, "No such message.")),
        Err(e) => return Err(store_error(e)),
    };
    let all = hub.store.deliveries_of(id).map_err(store_error)?;
    let recipients: Vec<&str> = all.iter().map(|d| d.recipient_ods.as_str()).collect();
    if !viewer.may_see(&view.message.sender_ods, &recipients) {
        // Not found, not forbidden: others' message ids are not confirmed.
        return Err(error(StatusCode::NOT_FOUND, "No such message."));
    }
    Ok((view, all))
}

/// One message: what it is, each delivery (transport id, responses) and the timeline.
pub async fn message(State(c): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let s = match signed_in(&c, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (view, all) = match find(&c.hub, &s.viewer, &id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let timeline = match c.hub.store.audit_of(view.message.id) {
        Ok(t) => t,
        Err(e) => return store_error(e),
    };
    // A receiver sees its own deliveries of a message sent to several practices, not the
    // others'.
    let sender = view.message.sender_ods.clone();
    let whole = s.viewer.may_see_delivery(&sender, "");
    let all: Vec<DeliveryRecord> = all
        .into_iter()
        .filter(|d| s.viewer.may_see_delivery(&sender, &d.recipient_ods))
        .collect();
    let shown: std::collections::HashSet<Uuid> = all.iter().map(|d| d.id).collect();
    let timeline: Vec<_> = timeline
        .into_iter()
        .filter(|e| whole || e.delivery_id.is_none_or(|d| shown.contains(&d)))
        .collect();
    let m = &view.message;
    let replayable = view.deliveries.iter().any(|d| d.state.is_replayable());
    let body = html! {
        h1 { (m.title.as_deref().unwrap_or("(untitled)")) }
        p { (state_badge(view.state)) @if !view.complete { " — still in progress (this page refreshes itself)" } }
        dl.facts {
            dt { "Message" } dd.mono { (m.id) }
            dt { "Sender" } dd { (m.sender_ods) " (local id " (m.local_id) ")" }
            dt { "Type" } dd { (m.document_type.as_str()) }
            dt { "Received" } dd { (when(m.received_ms)) " UTC by " (m.channel.as_str()) }
            dt { "NHS number" } dd { (m.nhs_number.as_deref().unwrap_or("—")) }
            dt { "File" } dd { (m.file_name.as_deref().unwrap_or("—")) " · " (m.content_type) " · " (m.payload_size) " bytes" }
            dt { "SHA-256" } dd.mono { (m.payload_sha256) }
        }
        @if s.viewer.may_download() {
            p { a.button href=(format!("/console/messages/{}/original", m.id)) download { "Download the original" } }
        }
        h2 { "Deliveries" }
        table.data {
            thead { tr {
                th { "Recipient" } th { "State" } th { "Endpoint" } th { "Attempts" } th { "Sent" }
                th { "Transport id" } th { "Response" } th { "Delivery" } @if s.viewer.may_act() { th { "Cancel" } }
            } }
            tbody {
                @for d in &all {
                    tr class=[d.superseded_by.is_some().then_some("superseded")] {
                        td { (d.recipient_ods) " " small { (d.recipient_type.code()) } }
                        td { (state_badge(Some(d.state)))
                            @if let Some(n) = d.superseded_by { br; small { "replayed as " (n) } }
                            @if let Some(o) = d.replay_of { br; small { "replay of " (o) } } }
                        td { (d.endpoint.as_deref().unwrap_or("—")) @if let Some(f) = d.format { " (" (f.as_str()) ")" } }
                        td.num { (d.attempts) }
                        td.nowrap { (d.sent_ms.map(when).unwrap_or_default()) }
                        td.mono { (d.transport_id.as_deref().unwrap_or("")) }
                        td {
                            @if let Some(code) = &d.ack_code { (code) " " }
                            (d.ack_reason.as_deref().unwrap_or(""))
                            @if let Some(e) = &d.last_error { span.problem { (e) } }
                        }
                        td.mono { small { (d.id) } }
                        @if s.viewer.may_act() {
                            td {
                                @if d.is_current() && !d.state.is_final() {
                                    form.inline method="post" action=(format!("/console/deliveries/{}/cancel", d.id)) {
                                        input type="hidden" name="csrf" value=(s.csrf);
                                        input name="reason" required placeholder="reason" size="12";
                                        button type="submit" { "Cancel" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if s.viewer.may_act() && replayable {
            h2 { "Replay" }
            form.action method="post" action=(format!("/console/messages/{}/replay", m.id)) {
                input type="hidden" name="csrf" value=(s.csrf);
                label { "Reason " input name="reason" size="40" placeholder="what was fixed"; }
                button type="submit" name="dry_run" value="1" { "Dry run" }
                button type="submit" name="dry_run" value="0" { "Replay" }
            }
        }
        h2 { "Timeline" }
        table.data.timeline {
            thead { tr { th { "When (UTC)" } th { "Event" } th { "Change" } th { "Who" } th { "Why" } th { "Delivery" } } }
            tbody {
                @for e in &timeline {
                    tr {
                        td.nowrap { (crate::track::rfc3339(e.at_ms)) }
                        td { (e.event) }
                        td { (e.from.map(|s| s.as_str()).unwrap_or("")) @if e.to.is_some() { " → " (e.to.map(|s| s.as_str()).unwrap_or("")) } }
                        td { (e.actor) }
                        td { (e.reason) }
                        td.mono { small { (e.delivery_id.map(|d| d.to_string()).unwrap_or_default()) } }
                    }
                }
            }
        }
    };
    let title = m.title.clone().unwrap_or_else(|| "Message".into());
    layout(&title, Some(&s), !view.complete, body).into_response()
}

/// The original document, as received (roles that may read documents only).
pub async fn original(State(c): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let s = match signed_in(&c, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.viewer.may_download() {
        return error(
            StatusCode::FORBIDDEN,
            "Your role may not read documents (ops and auditors may).",
        );
    }
    let (view, _) = match find(&c.hub, &s.viewer, &id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let m = view.message;
    let bytes = match c.hub.store.payload(m.id) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return error(
                StatusCode::GONE,
                "The document's bytes are no longer held (retention).",
            )
        }
        Err(e) => return store_error(e),
    };
    let name = m
        .file_name
        .clone()
        .unwrap_or_else(|| format!("{}.bin", m.id));
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, attachment(&name)),
        ],
        bytes,
    )
        .into_response()
}

/// `Content-Disposition: attachment` for any file name: an ASCII fallback with nothing that
/// could end the header or the quoted string, and the real name in RFC 5987 form.
pub fn attachment(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '(' | ')') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        fallback.trim(),
        urlenc(name)
    )
}

// ---------------------------------------------------------------- practices

fn percent(v: Option<f64>) -> String {
    v.map_or("—".into(), |p| format!("{p:.0}%"))
}

fn practice_name(hub: &crate::hub::Hub, ods: &str) -> String {
    hub.directory
        .get()
        .directory
        .organisation(ods)
        .map(|o| o.name.clone())
        .unwrap_or_default()
}

/// Every practice documents went to in the last seven days, the ones that need looking at
/// first.
pub async fn practices(State(c): St, headers: HeaderMap) -> Response {
    let s = match signed_in(&c, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let figures = match c.figures.get(&c.hub).await {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    let mut rows: Vec<_> = figures
        .practices
        .values()
        .filter(|p| s.viewer.may_see_practice(&p.ods))
        .collect();
    rows.sort_by(|a, b| b.concern().cmp(&a.concern()).then(a.ods.cmp(&b.ods)));
    let body = html! {
        h1 { "Practices" }
        p.note { "Per recipient: documents received in the last 24 hours, the share of those handed over that the practice answered, the median time from hand-over to accepted, and what is overdue, failed or rejected now (last seven days). Those that need looking at first are first. As of " (when(figures.now_ms)) " UTC." }
        table.data {
            thead { tr {
                th { "Practice" } th { "Name" } th.num { "Last 24 h" } th.num { "Answered" }
                th.num { "Median to accepted" } th.num { "Overdue" } th.num { "Failed" } th.num { "Rejected" } th { "Last accepted" }
            } }
            tbody {
                @for p in &rows {
                    tr {
                        td { a href=(format!("/console/practices/{}", urlenc(&p.ods))) { (p.ods) } }
                        td { (practice_name(&c.hub, &p.ods)) }
                        td.num { (p.day_documents) }
                        td.num { span class=(if p.ack_rate().is_some_and(|r| r < 80.0) { "bad" } else { "" }) { (percent(p.ack_rate())) } }
                        td.num { (p.median_accept_ms.map(took).unwrap_or_else(|| "—".into())) }
                        td.num { (p.overdue) }
                        td.num { (p.failed) }
                        td.num { (p.rejected) }
                        td.nowrap { (p.last_accepted_ms.map(when).unwrap_or_else(|| "—".into())) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="9" { "No documents in the last seven days." } } }
            }
        }
    };
    layout("Practices", Some(&s), false, body).into_response()
}

/// One practice: its figures, seven days of documents against what it accepted, and what
/// needs attention.
pub async fn practice(State(c): St, headers: HeaderMap, Path(ods): Path<String>) -> Response {
    let s = match signed_in(&c, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ods = match edt_transforms::OdsCode::parse(&ods) {
        Ok(o) => o.to_string(),
        Err(e) => return error(StatusCode::NOT_FOUND, &format!("Not an ODS code: {e}")),
    };
    if !s.viewer.may_see_practice(&ods) {
        return error(
            StatusCode::FORBIDDEN,
            "You may see only your own practices.",
        );
    }
    let figures = match c.figures.get(&c.hub).await {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    let empty = super::figures::PracticeFigures {
        ods: ods.clone(),
        ..Default::default()
    };
    let p = figures.practices.get(&ods).unwrap_or(&empty);
    // What needs attention now, from the recipient index (newest first).
    let hub = c.hub.clone();
    let who = ods.clone();
    let attention = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for state in [
            DeliveryState::Overdue,
            DeliveryState::Failed,
            DeliveryState::Rejected,
        ] {
            let q = ListQuery {
                state: Some(state),
                recipient_ods: Some(who.clone()),
                limit: 10,
                ..Default::default()
            };
            for id in hub.store.list(&q)?.0 {
                if let Some(v) = hub.view(id)? {
                    out.push(v);
                }
            }
        }
        Ok::<_, crate::store::StoreError>(out)
    })
    .await;
    let attention = match attention {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return store_error(e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let name = practice_name(&c.hub, &ods);
    let body = html! {
        h1 { (ods) " " (name) }
        div.grid {
            section.card { h2 { "Last 24 hours" } p.big { (p.day_documents) } p { "documents" } }
            section.card { h2 { "Answered" } p.big { (percent(p.ack_rate())) } p { (p.day_answered) " of " (p.day_handed_over) " handed over" } }
            section.card { h2 { "Median to accepted" } p.big { (p.median_accept_ms.map(took).unwrap_or_else(|| "—".into())) } p { "from hand-over" } }
            section.card { h2 { "Needs attention" } p.big { (p.overdue + p.failed + p.rejected) } p { (p.overdue) " overdue · " (p.failed) " failed · " (p.rejected) " rejected" } }
        }
        p { "Last accepted: " (p.last_accepted_ms.map(|t| format!("{} UTC", when(t))).unwrap_or_else(|| "not in the last seven days".into())) }
        (chart::draw(&chart::Series {
            title: "Documents by day received (UTC), and how many were accepted",
            start_ms: figures.first_day_ms(), step_ms: DAY_MS, received: &p.daily_documents, delivered: &p.daily_accepted,
            names: ("documents", "accepted"),
            label_every: 1, daily_labels: true,
        }))
        h2 { "Needs attention" }
        table.data {
            thead { tr { th { "Received (UTC)" } th { "State" } th { "Sender" } th { "Type" } th { "Title" } th { "Message" } } }
            tbody {
                @for v in &attention {
                    @let d = v.deliveries.iter().find(|d| d.recipient_ods == ods);
                    tr {
                        td.nowrap { (when(v.message.received_ms)) }
                        td { (state_badge(d.map(|d| d.state))) }
                        td { (v.message.sender_ods) }
                        td { (v.message.document_type.as_str()) }
                        td { (v.message.title.as_deref().unwrap_or("")) }
                        td { a.mono href=(format!("/console/messages/{}", v.message.id)) { (v.message.id) } }
                    }
                }
                @if attention.is_empty() { tr { td colspan="6" { "Nothing overdue, failed or rejected." } } }
            }
        }
        p { a href=(format!("/console/messages?recipient={}", urlenc(&ods))) { "Every message to " (ods) } }
    };
    layout(&format!("Practice {ods}"), Some(&s), false, body).into_response()
}

// ---------------------------------------------------------------- actions page

/// Ops' page: replay by filter (a dry-run count first) and reload the directory.
pub async fn actions_page(State(c): St, headers: HeaderMap) -> Response {
    let s = match signed_in(&c, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.viewer.may_act() {
        return error(StatusCode::FORBIDDEN, "Only ops may act.");
    }
    let loaded = c.hub.directory.get();
    let body = html! {
        h1 { "Actions" }
        section.card {
            h2 { "Replay by filter" }
            p.note { "Counts first: the replay itself is offered with the count." }
            (replay_filter_form(&s, &Filter { state: "failed".into(), since: "24h".into(), ..Default::default() }, "", true, None))
        }
        section.card {
            h2 { "Reload the directory" }
            p.note { "From " (loaded.directory.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")) ". A directory that fails to load never replaces the one in use." }
            form.action method="post" action="/console/directory/reload" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { "Reason " input name="reason" required size="40"; }
                button type="submit" { "Reload" }
            }
        }
    };
    layout("Actions", Some(&s), false, body).into_response()
}

/// The replay-by-filter form: a dry run, or (with the count known) the replay.
pub fn replay_filter_form(
    s: &Session,
    f: &Filter,
    reason: &str,
    dry_run: bool,
    count: Option<usize>,
) -> Markup {
    html! {
        form.action method="post" action="/console/replay" {
            input type="hidden" name="csrf" value=(s.csrf);
            label { "State "
                select name="state" {
                    @for st in DeliveryState::ALL.into_iter().filter(|s| s.is_replayable()) {
                        option value=(st.as_str()) selected[f.state == st.as_str()] { (st.as_str()) }
                    }
                }
            }
            label { "Sender " input name="sender" value=(f.sender) size="6"; }
            label { "Recipient " input name="recipient" value=(f.recipient) size="6"; }
            label { "Type "
                select name="type" {
                    option value="" { "any" }
                    @for t in edt_transforms::DocumentType::ALL {
                        option value=(t.as_str()) selected[f.doc_type == t.as_str()] { (t.as_str()) }
                    }
                }
            }
            label { "Since " input name="since" value=(f.since) size="10"; }
            label { "Until " input name="until" value=(f.until) size="10"; }
            label { "Reason " input name="reason" value=(reason) size="30"; }
            @if dry_run {
                button type="submit" name="dry_run" value="1" { "Count (dry run)" }
            } @else {
                input type="hidden" name="expected" value=(count.unwrap_or(0));
                button type="submit" name="dry_run" value="1" { "Count again" }
                button.danger type="submit" name="dry_run" value="0" { "Replay " (count.unwrap_or(0)) " messages" }
            }
        }
    }
}
