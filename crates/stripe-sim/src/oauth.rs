//! Connect OAuth for Standard accounts, served as `STRIPE_CONNECT_BASE`: the authorize page
//! (plain forms, so a headless browser can click through), the code exchange, refresh, and
//! deauthorization. Errors use OAuth's shape, `{"error","error_description"}`, never a key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::accounts::{example, fresh_keys, mark_onboarded, new_id};
use crate::auth::bearer;
use crate::events::{deliver_snapshot, snapshot};
use crate::http::{escape, found, page, with_query, Form};
use crate::onboarding::valid_url;
use crate::state::{now, Account, Sim};
use crate::{random, SimAccount};

/// How long an authorization code may wait for its exchange.
const CODE_TTL_SECS: i64 = 300;

const TITLE: &str = "Connect with Stripe (local simulator)";

/// The platform's application, as `account.application.deauthorized` names it.
pub(crate) const APPLICATION_NAME: &str = "Bursar (local Stripe simulator)";

const NO_AUTH: &str = "No authentication was provided. Send your secret API key using the \
                       Authorization header, or as a client_secret POST parameter.";

/// An authorize page shown and not answered yet.
pub(crate) struct Pending {
    redirect_uri: String,
    state: Option<String>,
    scope: String,
}

/// What a code grants, and what its refresh token keeps granting.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Grant {
    pub account: String,
    pub publishable_key: String,
    pub live: bool,
    pub scope: String,
}

pub(crate) struct Code {
    grant: Grant,
    /// Issued at the exchange (it is the `SimAccount`'s `secret_key`).
    access_token: String,
    refresh_token: Option<String>,
    expires_at: i64,
    used: bool,
}

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/oauth/authorize", get(authorize_page))
        .route("/oauth/authorize/{request}/connect", post(connect))
        .route("/oauth/authorize/{request}/deny", post(deny))
        .route("/oauth/token", post(token))
        .route("/oauth/deauthorize", post(deauthorize_route))
}

/// A new Standard account connected to the platform and a code to exchange for its token.
/// The account's `secret_key` is the access token the exchange will issue; it opens the
/// account only after the exchange, and deauthorizing revokes it.
pub(crate) fn new_connection(sim: &Sim, live: bool, scope: &str) -> (String, SimAccount) {
    let id = new_id();
    let mut v1 = example(&id);
    v1["type"] = json!("standard");
    mark_onboarded(&mut v1);
    let keys = fresh_keys(&id, live);
    let code = format!("ac_{}", random(32));
    let mut state = sim.lock();
    state
        .accounts
        .insert(id.clone(), Account::new(v1, live, true));
    state.keys.insert(keys.restricted_key.clone(), id.clone());
    // The account's own publishable key, which the token exchange hands out.
    state
        .publishable_keys
        .insert(keys.publishable_key.clone(), id.clone());
    state.codes.insert(
        code.clone(),
        Code {
            grant: Grant {
                account: id,
                publishable_key: keys.publishable_key.clone(),
                live,
                scope: scope.to_owned(),
            },
            access_token: keys.secret_key.clone(),
            refresh_token: None,
            expires_at: now() + CODE_TTL_SECS,
            used: false,
        },
    );
    state.last_oauth_account = Some(keys.clone());
    (code, keys)
}

pub(crate) fn expire_codes(sim: &Sim) {
    for code in sim.lock().codes.values_mut() {
        code.expires_at = 0;
    }
}

async fn authorize_page(State(sim): State<Arc<Sim>>, RawQuery(query): RawQuery) -> Response {
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    if q.get("client_id") != Some(sim.client_id.as_str()) {
        return error_page("No application matches the supplied client identifier.");
    }
    if q.get("response_type") != Some("code") {
        return error_page("Invalid response_type: it must be code.");
    }
    let scope = q.get("scope").unwrap_or("read_write");
    if !matches!(scope, "read_write" | "read_only") {
        return error_page("Invalid scope: it must be read_write or read_only.");
    }
    // Stripe would fall back to the Dashboard's first redirect URI; the simulator has none.
    let Some(redirect_uri) = q.get("redirect_uri").filter(|u| valid_url(u)) else {
        return error_page("Invalid or missing redirect_uri.");
    };
    let request = random(24);
    sim.lock().pending.insert(
        request.clone(),
        Pending {
            redirect_uri: redirect_uri.to_owned(),
            state: q.get("state").map(str::to_owned),
            scope: scope.to_owned(),
        },
    );
    page(
        StatusCode::OK,
        TITLE,
        &format!(
            "<p>The platform <code>{client_id}</code> asks for <code>{scope}</code> access to \
             your Stripe account. Connecting creates a new account in the simulator.</p>\n\
             <form method=\"post\" action=\"/oauth/authorize/{request}/connect\">\
             <button id=\"connect\" type=\"submit\">Connect my Stripe account</button></form>\n\
             <form method=\"post\" action=\"/oauth/authorize/{request}/deny\">\
             <button id=\"deny\" type=\"submit\">Deny</button></form>",
            client_id = escape(&sim.client_id),
            scope = escape(scope),
        ),
    )
}

async fn connect(State(sim): State<Arc<Sim>>, Path(request): Path<String>) -> Response {
    let Some(p) = sim.lock().pending.remove(&request) else {
        return error_page("This authorization request was already answered.");
    };
    let (code, _) = new_connection(&sim, sim.live(), &p.scope);
    let mut pairs = vec![("code", code.as_str()), ("scope", p.scope.as_str())];
    if let Some(s) = &p.state {
        pairs.push(("state", s));
    }
    redirect_back(&p.redirect_uri, &pairs)
}

async fn deny(State(sim): State<Arc<Sim>>, Path(request): Path<String>) -> Response {
    let Some(p) = sim.lock().pending.remove(&request) else {
        return error_page("This authorization request was already answered.");
    };
    let mut pairs = vec![
        ("error", "access_denied"),
        ("error_description", "The user denied your request"),
    ];
    if let Some(s) = &p.state {
        pairs.push(("state", s));
    }
    redirect_back(&p.redirect_uri, &pairs)
}

fn redirect_back(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    match with_query(redirect_uri, pairs) {
        Some(url) => found(&url),
        None => error_page("Invalid redirect_uri."),
    }
}

fn error_page(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        TITLE,
        &format!("<p id=\"error\">{}</p>", escape(message)),
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// The platform key, from `Authorization: Bearer` or the `client_secret` parameter.
fn platform_authenticated(sim: &Sim, headers: &HeaderMap, form: &Form) -> bool {
    bearer(headers)
        .as_deref()
        .or_else(|| form.get("client_secret"))
        == Some(sim.platform_key.as_str())
}

/// `POST /oauth/token`: exchanges a code (once) or a refresh token for an access token.
async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if !platform_authenticated(&sim, &headers, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", NO_AUTH);
    }
    match form.get("grant_type") {
        Some("authorization_code") => exchange(&sim, form.get("code")),
        Some("refresh_token") => refresh(&sim, form.get("refresh_token")),
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only the authorization_code and refresh_token grant types are supported.",
        ),
    }
}

fn exchange(sim: &Sim, code: Option<&str>) -> Response {
    let Some(code) = code else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "No authorization code provided.",
        );
    };
    let mut guard = sim.lock();
    let state = &mut *guard;
    let Some(c) = state.codes.get_mut(code) else {
        return invalid_grant(&format!("Authorization code does not exist: {code}"));
    };
    if c.used {
        // A replayed code may be a stolen one: Stripe revokes what it issued.
        state.keys.remove(&c.access_token);
        if let Some(rt) = c.refresh_token.take() {
            state.refresh_tokens.remove(&rt);
        }
        if let Some(a) = state.accounts.get_mut(&c.grant.account) {
            a.oauth_tokens.retain(|t| *t != c.access_token);
        }
        return invalid_grant(
            "This authorization code has already been used. All tokens issued with this code \
             have been revoked.",
        );
    }
    if c.expires_at <= now() {
        return invalid_grant(&format!("Authorization code expired: {code}"));
    }
    c.used = true;
    let refresh_token = format!("rt_{}", random(32));
    c.refresh_token = Some(refresh_token.clone());
    let (grant, access_token) = (c.grant.clone(), c.access_token.clone());
    state
        .keys
        .insert(access_token.clone(), grant.account.clone());
    if let Some(a) = state.accounts.get_mut(&grant.account) {
        a.oauth_tokens.push(access_token.clone());
    }
    state
        .refresh_tokens
        .insert(refresh_token.clone(), grant.clone());
    token_response(&grant, &access_token, &refresh_token)
}

fn refresh(sim: &Sim, refresh_token: Option<&str>) -> Response {
    let Some(rt) = refresh_token else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "No refresh token provided.",
        );
    };
    let mut state = sim.lock();
    let Some(grant) = state.refresh_tokens.get(rt).cloned() else {
        return invalid_grant(&format!("Invalid refresh token: {rt}"));
    };
    let mode = if grant.live { "live" } else { "test" };
    let access_token = format!("sk_{mode}_{}", random(24));
    state
        .keys
        .insert(access_token.clone(), grant.account.clone());
    if let Some(a) = state.accounts.get_mut(&grant.account) {
        a.oauth_tokens.push(access_token.clone());
    }
    token_response(&grant, &access_token, rt)
}

fn token_response(grant: &Grant, access_token: &str, refresh_token: &str) -> Response {
    Json(json!({
        "access_token": access_token,
        "livemode": grant.live,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "stripe_publishable_key": grant.publishable_key,
        "stripe_user_id": grant.account,
        "scope": grant.scope,
    }))
    .into_response()
}

/// `POST /oauth/deauthorize`: disconnects an account from the platform.
async fn deauthorize_route(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !platform_authenticated(&sim, &headers, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", NO_AUTH);
    }
    if form.get("client_id") != Some(sim.client_id.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "No application matches the supplied client identifier.",
        );
    }
    let account = form.get("stripe_user_id").unwrap_or_default();
    match deauthorize(&sim, account).await {
        Some(_) => Json(json!({ "stripe_user_id": account })).into_response(),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            &format!("No such user: {account}"),
        ),
    }
}

/// Disconnects `account`: the platform loses access, OAuth tokens are revoked, and Connect
/// endpoints receive `account.application.deauthorized` (before this returns). The event id,
/// or `None` when the account was not connected.
pub(crate) async fn deauthorize(sim: &Sim, account: &str) -> Option<String> {
    {
        let mut guard = sim.lock();
        let state = &mut *guard;
        let a = state.accounts.get_mut(account).filter(|a| a.reachable())?;
        a.deauthorized = true;
        for token in std::mem::take(&mut a.oauth_tokens) {
            state.keys.remove(&token);
        }
        state.refresh_tokens.retain(|_, g| g.account != account);
    }
    let application = json!({
        "id": sim.client_id,
        "object": "application",
        "name": APPLICATION_NAME,
    });
    let event = snapshot(
        sim,
        "account.application.deauthorized",
        Some(account),
        application,
        None,
    );
    deliver_snapshot(sim, &event).await;
    event["id"].as_str().map(str::to_owned)
}
