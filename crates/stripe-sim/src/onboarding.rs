//! Hosted onboarding: Account Links (`POST /v1/account_links`; v2's are in `v2.rs`) and the
//! page they open, `/setup/e/{account}/{token}`. Like Stripe's, a link is single-use and
//! short-lived: opening a used or expired link redirects to its `refresh_url`, where the
//! platform is expected to make a new one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::accounts::mark_onboarded;
use crate::auth::{authenticate, no_access, STRIPE_ACCOUNT};
use crate::events::{deliver_snapshot, emit_thin, previous_attributes, snapshot, thin_data};
use crate::http::{escape, found, ok, page, ApiError, ApiResult, Form};
use crate::state::{now, Sim, State as SimState};
use crate::{random, v2};

/// How long a link stays valid (Stripe: a few minutes).
pub(crate) const LINK_TTL_SECS: i64 = 300;

const TITLE: &str = "Onboarding (local simulator)";

/// The thin events Stripe emits when an Accounts v2 account finishes onboarding.
const V2_ONBOARDED_EVENTS: [&str; 2] = [
    "v2.core.account[requirements].updated",
    "v2.core.account[configuration.merchant].capability_status_updated",
];

pub(crate) struct Link {
    pub account: String,
    pub refresh_url: String,
    pub return_url: String,
    pub expires_at: i64,
    pub stage: Stage,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Not opened yet.
    Fresh,
    /// Opened once: its form may still be submitted, but opening it again is refused.
    Opened,
    /// Onboarding completed through it.
    Done,
}

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/account_links", post(create_v1))
        .route("/setup/e/{account}/{token}", get(open))
        .route("/setup/e/{account}/{token}/complete", post(submit))
}

/// A new link for `account`; its URL, creation and expiry times.
pub(crate) fn issue(
    state: &mut SimState,
    base_url: &str,
    account: &str,
    refresh_url: &str,
    return_url: &str,
) -> (String, i64, i64) {
    let token = random(24);
    let created = now();
    let expires_at = created + LINK_TTL_SECS;
    state.links.insert(
        token.clone(),
        Link {
            account: account.to_owned(),
            refresh_url: refresh_url.to_owned(),
            return_url: return_url.to_owned(),
            expires_at,
            stage: Stage::Fresh,
        },
    );
    (
        format!("{base_url}/setup/e/{account}/{token}"),
        created,
        expires_at,
    )
}

/// An absolute http(s) URL, as Stripe requires of `refresh_url` and `return_url`.
pub(crate) fn valid_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fn url_param<'f>(form: &'f Form, name: &str) -> Result<&'f str, ApiError> {
    let url = form.get(name).ok_or_else(|| ApiError::missing(name))?;
    if !valid_url(url) {
        return Err(ApiError::invalid(format!("Not a valid URL: {name}")).param(name));
    }
    Ok(url)
}

async fn create_v1(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let caller = authenticate(&sim, &headers, STRIPE_ACCOUNT)?;
    let form = Form::parse(&body);
    let account = form
        .get("account")
        .ok_or_else(|| ApiError::missing("account"))?;
    let kind = form.get("type").ok_or_else(|| ApiError::missing("type"))?;
    if !matches!(kind, "account_onboarding" | "account_update") {
        return Err(ApiError::invalid(
            "Invalid type: must be one of account_onboarding or account_update",
        )
        .param("type"));
    }
    let refresh_url = url_param(&form, "refresh_url")?;
    let return_url = url_param(&form, "return_url")?;
    let mut state = sim.lock();
    if !caller.platform || caller.account.is_some() || state.reachable(account).is_none() {
        return Err(no_access(&caller.key, account));
    }
    let (url, created, expires_at) = issue(&mut state, &sim.url, account, refresh_url, return_url);
    ok(json!({
        "object": "account_link",
        "created": created,
        "expires_at": expires_at,
        "url": url,
    }))
}

/// The hosted onboarding page. Opening it uses the link up.
async fn open(
    State(sim): State<Arc<Sim>>,
    Path((account, token)): Path<(String, String)>,
) -> Response {
    let mut state = sim.lock();
    let link = match state.links.get_mut(&token) {
        Some(l) if l.account == account => l,
        _ => return invalid_link(),
    };
    if link.stage != Stage::Fresh || link.expires_at <= now() {
        return found(&link.refresh_url);
    }
    link.stage = Stage::Opened;
    page(
        StatusCode::OK,
        TITLE,
        &format!(
            "<p>Account <code id=\"account\">{account}</code>. Here Stripe would ask for the \
             business's details, its representative and a bank account; the simulator needs \
             none of it.</p>\n\
             <form method=\"post\" action=\"/setup/e/{account}/{token}/complete\">\
             <button id=\"complete\" type=\"submit\">Complete onboarding</button></form>\n\
             <p><a id=\"exit\" href=\"{return_url}\">Return without finishing</a></p>",
            account = escape(&account),
            token = escape(&token),
            return_url = escape(&link.return_url),
        ),
    )
}

/// The page's form: completes onboarding, delivers the events, then returns to `return_url`.
async fn submit(
    State(sim): State<Arc<Sim>>,
    Path((account, token)): Path<(String, String)>,
) -> Response {
    let return_url = {
        let mut state = sim.lock();
        let link = match state.links.get_mut(&token) {
            Some(l) if l.account == account => l,
            _ => return invalid_link(),
        };
        if link.stage == Stage::Done || link.expires_at <= now() {
            return found(&link.refresh_url);
        }
        link.stage = Stage::Done;
        link.return_url.clone()
    };
    complete(&sim, &account).await;
    found(&return_url)
}

fn invalid_link() -> Response {
    page(
        StatusCode::NOT_FOUND,
        TITLE,
        "<p id=\"invalid\">This onboarding link is invalid.</p>",
    )
}

/// Marks `account` onboarded and delivers what Stripe would: `account.updated` to Connect
/// endpoints and, for an Accounts v2 account, its thin events to platform endpoints. The ids
/// of the events, in delivery order; none for an unknown account.
pub(crate) async fn complete(sim: &Sim, account: &str) -> Vec<String> {
    let (v1, previous, is_v2) = {
        let mut state = sim.lock();
        let Some(a) = state.accounts.get_mut(account) else {
            return Vec::new();
        };
        let old = a.v1.clone();
        mark_onboarded(&mut a.v1);
        if let Some(v2) = a.v2.as_mut() {
            v2::mark_onboarded(v2);
        }
        (
            a.v1.clone(),
            previous_attributes(&old, &a.v1),
            a.v2.is_some(),
        )
    };
    let event = snapshot(sim, "account.updated", Some(account), v1, Some(previous));
    deliver_snapshot(sim, &event).await;
    let mut ids = vec![event_id(&event)];
    if is_v2 {
        for event_type in V2_ONBOARDED_EVENTS {
            ids.push(emit_thin(sim, event_type, account, thin_data(event_type), None).await);
        }
    }
    ids
}

fn event_id(event: &Value) -> String {
    event["id"].as_str().unwrap_or_default().to_owned()
}
