//! The operator console (`/console`): server-rendered pages for the platform's operators,
//! signed in with a platform API key. Every page is askama (escaped by default) under a strict
//! Content-Security-Policy: our own stylesheet, and our own small script that shows times in
//! the viewer's zone (the pages work without it); forms post only to Bursar; no framing.
//!
//! Without a live session every console route, GET or POST, answers 303 to `/console/login`;
//! with one, a POST whose `csrf_token` is missing or wrong is 403 (see `session`).

pub mod api_keys;
pub mod events;
pub mod format;
pub mod login;
pub mod notifications;
pub mod orders;
pub mod overview;
pub mod refund;
pub mod replay;
pub mod session;
pub mod stores;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::pages;
use crate::service::{Result, ServiceError};

pub use login::LoginLimiter;

pub const STYLESHEET: &str = include_str!("../../../assets/console.css");
pub const SCRIPT: &str = include_str!("../../../assets/console.js");

/// Our stylesheet and script only, nothing inline; forms post only here; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Rows per page of every list.
pub const PAGE_SIZE: i64 = 25;

/// What the layout of every page needs: the session's CSRF token (the logout form carries
/// it) and which part of the navigation is current.
pub struct Chrome {
    pub csrf: String,
    pub nav: &'static str,
    pub signed_in: bool,
}

impl Chrome {
    /// The layout without navigation: the login page, and errors before a session is known.
    pub fn signed_out() -> Self {
        Self {
            csrf: String::new(),
            nav: "",
            signed_in: false,
        }
    }
}

/// A rendered console page with its security headers (`pages::render`: no-store, nosniff,
/// no referrer, X-Frame-Options DENY).
pub fn page(status: StatusCode, html: askama::Result<String>) -> Response {
    pages::render(status, html, CSP)
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    chrome: Chrome,
    title: &'a str,
    message: &'a str,
    back: Option<&'a str>,
}

/// Any other address under `/console`: a console page saying so, or, without a session, the
/// login page (as for every console address).
pub async fn not_found(session: session::ConsoleSession) -> Response {
    message(
        session.chrome(""),
        StatusCode::NOT_FOUND,
        "No such page",
        "There is no console page at this address.",
        Some("/console"),
    )
}

/// A request the console will not act on (400), saying why.
pub fn refused(chrome: Chrome, text: &str, back: Option<&str>) -> Response {
    message(chrome, StatusCode::BAD_REQUEST, "Refused", text, back)
}

/// A list's page cursor: none when absent or empty, else what `parse` makes of it; a cursor it
/// cannot read is refused with the text to show.
pub fn page_cursor<T, E>(
    raw: Option<String>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, &'static str> {
    match raw.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => parse(&c)
            .map(Some)
            .map_err(|_| "The page's cursor is not valid."),
    }
}

/// A page that says one thing, with a way back.
pub fn message(
    chrome: Chrome,
    status: StatusCode,
    title: &str,
    text: &str,
    back: Option<&str>,
) -> Response {
    let html = MessagePage {
        chrome,
        title,
        message: text,
        back,
    }
    .render();
    page(status, html)
}

/// A service's refusal or failure as a page: the API's status and message for it (5xx say
/// nothing internal; the log says what).
pub fn failed(chrome: Chrome, e: ServiceError, back: Option<&str>) -> Response {
    api_error(chrome, ApiError::from(e), back)
}

/// The page for an error the API would have answered with.
pub fn api_error(chrome: Chrome, e: ApiError, back: Option<&str>) -> Response {
    let title = match e.status.as_u16() {
        404 => "Not found",
        409 => "Not possible now",
        400 | 422 => "Refused",
        _ => "Something went wrong",
    };
    message(chrome, e.status, title, &e.message, back)
}

/// A named value shown as a row of a definition list (metadata, requirements).
pub struct Field {
    pub name: String,
    pub value: String,
}

/// The members of a JSON object as fields (strings as they are, other values as JSON); none
/// for anything else.
pub fn fields(value: &serde_json::Value) -> Vec<Field> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, v)| Field {
            name: name.clone(),
            value: format::plain(v),
        })
        .collect()
}

/// An option of a filter's `<select>`.
pub struct Choice {
    pub value: &'static str,
    pub selected: bool,
}

/// `values` as options, the `current` one selected.
pub fn choices(values: &[&'static str], current: Option<&str>) -> Vec<Choice> {
    values
        .iter()
        .map(|v| Choice {
            value: v,
            selected: current == Some(*v),
        })
        .collect()
}

/// A lookup that may find nothing: `NotFound` is `None`, other errors stay errors.
pub fn optional<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(ServiceError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Query<T>` whose rejection is a console page (a malformed or repeated parameter).
pub struct ConsoleQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ConsoleQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(_) => Err(message(
                Chrome::signed_out(),
                StatusCode::BAD_REQUEST,
                "This address cannot be read",
                "A parameter of the address is malformed or given twice.",
                Some("/console"),
            )),
        }
    }
}

#[utoipa::path(get, path = "/assets/console.css", tag = "console", operation_id = "console_stylesheet",
    responses((status = 200, description = "The console's stylesheet", content_type = "text/css", body = String)))]
pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

/// Rewrites each `<time>` into the viewer's own zone; the pages read the same without it.
#[utoipa::path(get, path = "/assets/console.js", tag = "console", operation_id = "console_script",
    responses((status = 200, description = "The console's script", content_type = "text/javascript", body = String)))]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_escape_what_they_echo() {
        let html = MessagePage {
            chrome: Chrome::signed_out(),
            title: "t",
            message: "<script>alert(1)</script>",
            back: Some("/console\"><script>"),
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("\"><script>"));
        assert!(html.contains("&#60;script&#62;alert(1)"));
    }
}
