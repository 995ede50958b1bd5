//! The ops console: HTML pages on the HTTP listener under `/console/`, for the people who
//! would rather look than type. It shows what the admin API shows and does what it does, by
//! the same calls: listings are the store queries `edthub messages list` makes (filters
//! checked by [`crate::admin::grpc::query`]), replay, cancel and reload are
//! [`crate::admin::actions`], so the audit trail cannot tell the console from the CLI except
//! by the actor's name.
//!
//! - [`session`]: sign-in with the gRPC identities, the session cookie and CSRF tokens.
//! - [`pages`]: overview, messages, one message, practices; [`chart`] draws the SVG.
//! - [`figures`]: the counts behind the overview and practices, read from the last seven
//!   days and kept for a while.
//! - [`actions`]: the POSTs that change something (ops only, each with a reason).
//!
//! Every page is HTML rendered here (maud), whole without JavaScript; `console.js` only
//! refreshes pages that are waiting on something. Pages carry a strict Content-Security-Policy
//! (nothing inline, nothing from elsewhere). No patient identifier goes in a URL: search by
//! NHS number is a POST.

// Handlers stop early with the page to show instead (`Result<_, Response>`): a response is
// large, and boxing each would only add noise to every handler.
#![allow(clippy::result_large_err)]

pub mod actions;
pub mod chart;
pub mod figures;
pub mod pages;
pub mod session;

use crate::hub::Hub;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// What the console's handlers share.
pub struct Console {
    pub hub: Arc<Hub>,
    pub sessions: session::Sessions,
    pub figures: figures::FigureCache,
}

pub type Shared = Arc<Console>;

/// The policy every console response carries: only the console's own CSS and script, no
/// inline code or style, no frames, forms only to itself.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's routes, to merge into the HTTP listener's router.
pub fn router(hub: Arc<Hub>) -> Router {
    let idle = Duration::from_secs(hub.config.console.session_minutes.max(1) * 60);
    let state = Arc::new(Console {
        hub,
        sessions: session::Sessions::new(idle),
        figures: figures::FigureCache::default(),
    });
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(pages::overview))
        .route(
            "/console/sign-in",
            get(pages::sign_in_page).post(actions::sign_in),
        )
        .route("/console/sign-out", post(actions::sign_out))
        .route(
            "/console/messages",
            get(pages::messages_get).post(pages::messages_post),
        )
        .route("/console/messages/{id}", get(pages::message))
        .route("/console/messages/{id}/original", get(pages::original))
        .route("/console/messages/{id}/replay", post(actions::replay_one))
        .route("/console/deliveries/{id}/cancel", post(actions::cancel))
        .route("/console/practices", get(pages::practices))
        .route("/console/practices/{ods}", get(pages::practice))
        .route("/console/actions", get(pages::actions_page))
        .route("/console/replay", post(actions::replay_by_filter))
        .route("/console/directory/reload", post(actions::reload))
        .route("/console/static/console.css", get(css))
        .route("/console/static/console.js", get(js))
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/console") {
        pages::error(StatusCode::NOT_FOUND, "There is no such page.")
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
}

/// Headers on every console response: the CSP, no sniffing, no framing, referrers only to
/// itself (with none, browsers send `Origin: null`, which the CSRF check refuses), and no
/// caching of pages (they hold patient details).
async fn security_headers(req: Request, next: Next) -> Response {
    let is_console = req.uri().path().starts_with("/console");
    let is_static = req.uri().path().starts_with("/console/static/");
    let mut resp = next.run(req).await;
    if !is_console {
        return resp;
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The signed-in session, or where to go instead: the sign-in page for a GET, 403 for a
/// POST.
pub fn signed_in(
    c: &Console,
    headers: &HeaderMap,
    posting: bool,
) -> Result<session::Session, Response> {
    match c.sessions.get(headers) {
        Some(s) => Ok(s),
        None if posting => Err(pages::error(
            StatusCode::FORBIDDEN,
            "Sign in first: your session has ended.",
        )),
        None => Err(Redirect::to("/console/sign-in").into_response()),
    }
}

/// A POST from one of the console's own forms: same origin (when the browser says), and the
/// session's CSRF token.
pub fn checked_post(
    c: &Console,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<session::Session, Response> {
    if !same_origin(headers) {
        return Err(pages::error(
            StatusCode::FORBIDDEN,
            "This form was sent from another site.",
        ));
    }
    let s = signed_in(c, headers, true)?;
    if !session::same_secret(csrf, &s.csrf) {
        return Err(pages::error(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or out of date: reload the page and try again.",
        ));
    }
    Ok(s)
}

/// The browser's `Origin`, when it sends one, names this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(origin)
        .trim_end_matches('/');
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// Shared state from a handler's `State`.
pub type St = State<Shared>;
