//! The platform's API keys: listed by their first characters only (as the API shows them),
//! and revoked. Keys are made only by `bursar api-key create`, never here.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::format::Time;
use super::session::{ConsoleActionForm, ConsoleSession, SignedForm};
use super::{failed, page, Chrome, ConsoleQuery};
use crate::http::AppState;
use crate::service::api_keys;

#[derive(Template)]
#[template(path = "console/api_keys.html")]
struct ApiKeysPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    keys: Vec<KeyLine>,
}

struct KeyLine {
    id: String,
    name: String,
    /// `bsr_abcd…`: enough to recognise a key, nothing to use.
    masked: String,
    created: Time,
    revoked: Option<Time>,
    /// The key this session was opened with.
    current: bool,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiKeysQuery {
    /// What the previous action did, to say so (`revoked`).
    done: Option<String>,
}

/// `GET /console/api-keys`: every key, revoked ones too (the API's list has no pages).
#[utoipa::path(get, path = "/api-keys", tag = "console", operation_id = "console_api_keys",
    params(ApiKeysQuery),
    responses(
        (status = 200, description = "The keys, masked", content_type = "text/html", body = String),
        (status = 303, description = "No session: on to the login page"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    session: ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<ApiKeysQuery>,
) -> Response {
    let chrome = session.chrome("api-keys");
    let keys = match api_keys::list(&state.services.db).await {
        Ok(keys) => keys,
        Err(e) => return failed(chrome, e, Some("/console")),
    };
    let html = ApiKeysPage {
        chrome,
        notice: match q.done.as_deref() {
            Some("revoked") => Some("The key is revoked: it opens nothing from now on, and its console sessions are over."),
            _ => None,
        },
        keys: keys
            .into_iter()
            .map(|k| KeyLine {
                current: k.id == session.api_key_id(),
                masked: format!("{}…", k.prefix),
                created: Time::secs(k.created),
                revoked: k.revoked.map(Time::secs),
                id: k.id,
                name: k.name,
            })
            .collect(),
    }
    .render();
    page(StatusCode::OK, html)
}

/// `POST /console/api-keys/{id}/revoke`: the key stops working at once, and every console
/// session opened with it ends (this one too, if it is this session's key).
#[utoipa::path(post, path = "/api-keys/{id}/revoke", tag = "console", operation_id = "console_api_key_revoke",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Revoked: back to the keys (or, without a session, on to the login page)"),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
        (status = 404, description = "No such key", content_type = "text/html", body = String),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { session, .. }: SignedForm<ConsoleActionForm>,
) -> Response {
    match api_keys::revoke(&state.services.db, &id).await {
        Ok(key) => {
            tracing::info!(revoked = %key.id, operator = %session.operator(), "API key revoked from the console");
            Redirect::to("/console/api-keys?done=revoked").into_response()
        }
        Err(e) => failed(session.chrome("api-keys"), e, Some("/console/api-keys")),
    }
}
