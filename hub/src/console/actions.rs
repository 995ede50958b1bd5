//! The console's POSTs: sign-in and sign-out, and ops' actions: replay one message or
//! every message a filter finds (a dry-run count first), cancel a delivery, reload the
//! directory. Each action needs the ops role, the session's CSRF token and a reason, and runs
//! through [`crate::admin::actions`] with the actor named as the admin API names it, so it is
//! recorded and logged exactly as the CLI's.

use super::pages::{error, layout, replay_filter_form, Filter};
use super::session::{self, Session};
use super::{checked_post, St};
use crate::admin::actions::ReplayReport;
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

/// Messages a replay by filter takes at most, as the admin API.
const REPLAY_CAP: u32 = 10_000;

#[derive(Debug, Deserialize)]
pub struct SignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    method: String,
}

/// Signs in: the sign-in form's own CSRF cookie must match, then a token or the
/// certificate. A refusal is logged and counted as a refused gRPC call is.
pub async fn sign_in(State(c): St, headers: HeaderMap, Form(f): Form<SignIn>) -> Response {
    let expected = session::cookie(&headers, session::SIGN_IN_COOKIE).unwrap_or_default();
    if !super::same_origin(&headers) || !session::same_secret(&f.csrf, &expected) {
        return error(
            StatusCode::FORBIDDEN,
            "The sign-in form's security token is missing or out of date: reload the page and try again.",
        );
    }
    let config = &c.hub.config;
    let viewer = if f.method == "certificate" {
        session::sign_in_with_certificate(config, &headers)
    } else {
        session::sign_in_with_token(config, &f.token)
    };
    let viewer = match viewer {
        Ok(v) => v,
        Err(why) => {
            crate::auth::deny(
                tonic::Status::unauthenticated(why.clone()),
                "(unknown caller)",
                "sign in to the console",
            );
            return super::pages::sign_in_form(&c, &headers, Some(&why));
        }
    };
    tracing::info!(target: "audit", caller = %viewer.caller.name, "signed in to the console");
    let (id, _) = c.sessions.start(viewer);
    let secure = session::over_tls(config, &headers);
    let mut resp = Redirect::to("/console/").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(session::COOKIE, &id, secure, None)
            .parse()
            .expect("cookie header"),
    );
    h.append(
        header::SET_COOKIE,
        session::set_cookie(session::SIGN_IN_COOKIE, "", secure, Some(0))
            .parse()
            .expect("cookie header"),
    );
    resp
}

#[derive(Debug, Deserialize)]
pub struct Csrf {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(State(c): St, headers: HeaderMap, Form(f): Form<Csrf>) -> Response {
    if let Err(r) = checked_post(&c, &headers, &f.csrf) {
        return r;
    }
    c.sessions.end(&headers);
    let secure = session::over_tls(&c.hub.config, &headers);
    let mut resp = Redirect::to("/console/sign-in").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(session::COOKIE, "", secure, Some(0))
            .parse()
            .expect("cookie header"),
    );
    resp
}

/// The session of an ops POST with its CSRF token, or the refusal.
fn ops_post(c: &super::Console, headers: &HeaderMap, csrf: &str) -> Result<Session, Response> {
    let s = checked_post(c, headers, csrf)?;
    if !s.viewer.may_act() {
        crate::auth::deny(
            tonic::Status::permission_denied("needs the ops role"),
            &s.viewer.caller.name,
            "act from the console",
        );
        return Err(error(
            StatusCode::FORBIDDEN,
            "Only ops may replay, cancel or reload.",
        ));
    }
    Ok(s)
}

fn reason_required(reason: &str) -> Result<&str, Response> {
    match reason.trim() {
        "" => Err(error(
            StatusCode::BAD_REQUEST,
            "Give a reason: it is recorded with what you do.",
        )),
        r => Ok(r),
    }
}

fn outcome_page(s: &Session, title: &str, report: &ReplayReport, dry_run: bool) -> Response {
    let body = html! {
        h1 { (title) }
        p.outcome {
            @if dry_run {
                (report.replayed) " message(s) would be replayed; " (report.skipped) " would not."
            } @else {
                (report.replayed) " message(s) replayed; " (report.skipped) " not."
            }
        }
        table.data {
            thead { tr { th { "Message" } th { "New deliveries" } th { "Not replayed" } } }
            tbody {
                @for o in report.outcomes.iter().take(200) {
                    tr {
                        td { a.mono href=(format!("/console/messages/{}", o.message_id)) { (o.message_id) } }
                        td { @for d in &o.new_deliveries { (d.recipient_ods) " (" (d.state.as_str()) ") " } }
                        td { (o.skipped.join("; ")) }
                    }
                }
            }
        }
    };
    layout(title, Some(s), false, body).into_response()
}

#[derive(Debug, Deserialize)]
pub struct ReplayOne {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    dry_run: String,
}

/// Replays one message (or says what a replay would do).
pub async fn replay_one(
    State(c): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ReplayOne>,
) -> Response {
    let s = match ops_post(&c, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dry_run = f.dry_run == "1";
    let reason = if dry_run {
        f.reason.trim()
    } else {
        match reason_required(&f.reason) {
            Ok(r) => r,
            Err(r) => return r,
        }
    };
    let (view, _) = match super::pages::find(&c.hub, &s.viewer, &id) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let report = crate::admin::actions::replay_many(
        &c.hub,
        &[view.message.id],
        dry_run,
        &s.viewer.actor(),
        reason,
    )
    .await;
    match report {
        Ok(r) => {
            if !dry_run {
                c.figures.clear();
            }
            outcome_page(
                &s,
                if dry_run {
                    "Replay (dry run)"
                } else {
                    "Replayed"
                },
                &r,
                dry_run,
            )
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct ReplayByFilter {
    #[serde(flatten)]
    filter: Filter,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    dry_run: String,
}

/// Replays every message a filter finds (a state is required, as in the CLI); the dry run
/// counts them and offers the replay.
pub async fn replay_by_filter(
    State(c): St,
    headers: HeaderMap,
    Form(f): Form<ReplayByFilter>,
) -> Response {
    let s = match ops_post(&c, &headers, &f.filter.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dry_run = f.dry_run != "0";
    let mut filter = f.filter.clone();
    filter.nhs.clear();
    filter.after.clear();
    let q = match filter.query(REPLAY_CAP) {
        Ok(q) if q.state.is_some_and(|st| st.is_replayable()) => q,
        Ok(_) => return error(
            StatusCode::BAD_REQUEST,
            "A replay by filter names a state: failed, rejected, unroutable, cancelled or overdue.",
        ),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    if !dry_run {
        if let Err(r) = reason_required(&f.reason) {
            return r;
        }
    }
    let hub = c.hub.clone();
    let found = tokio::task::spawn_blocking(move || hub.store.list(&q)).await;
    let (ids, truncated) = match found {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if dry_run {
        let body = html! {
            h1 { "Replay by filter (dry run)" }
            p.outcome {
                @if truncated { "More than " } (ids.len()) " message(s) match."
                @if truncated { " A replay takes the first " (REPLAY_CAP) "; run it again for the rest." }
            }
            (replay_filter_form(&s, &filter, &f.reason, false, Some(ids.len())))
        };
        return layout("Replay by filter", Some(&s), false, body).into_response();
    }
    match crate::admin::actions::replay_many(
        &c.hub,
        &ids,
        false,
        &s.viewer.actor(),
        f.reason.trim(),
    )
    .await
    {
        Ok(r) => {
            c.figures.clear();
            outcome_page(&s, "Replayed by filter", &r, false)
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct WithReason {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// Cancels a delivery that is not final.
pub async fn cancel(
    State(c): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<WithReason>,
) -> Response {
    let s = match ops_post(&c, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reason = match reason_required(&f.reason) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Ok(id) = Uuid::parse_str(id.trim()) else {
        return error(StatusCode::NOT_FOUND, "That is not a delivery id.");
    };
    match crate::admin::actions::cancel(&c.hub, id, &s.viewer.actor(), reason).await {
        Ok(d) => {
            c.figures.clear();
            Redirect::to(&format!("/console/messages/{}", d.message_id)).into_response()
        }
        Err(e @ crate::store::StoreError::NoSuchDelivery(_)) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Err(e @ (crate::store::StoreError::Engine(_) | crate::store::StoreError::Corrupt(_))) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}

/// Reloads the directory.
pub async fn reload(State(c): St, headers: HeaderMap, Form(f): Form<WithReason>) -> Response {
    let s = match ops_post(&c, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reason = match reason_required(&f.reason) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match crate::admin::actions::reload_directory(&c.hub, &s.viewer.actor(), reason).await {
        Ok(loaded) => {
            let d = &loaded.directory;
            let body = html! {
                h1 { "Directory reloaded" }
                p.outcome {
                    (d.organisation_count()) " organisations, " (d.rules().len()) " rules, "
                    (d.endpoints().count()) " endpoints."
                }
                p { a href="/console/actions" { "Back to actions" } }
            };
            layout("Directory reloaded", Some(&s), false, body).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, &e),
    }
}
