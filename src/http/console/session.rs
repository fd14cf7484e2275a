//! The console's session as an extractor, its cookies, and the CSRF check of its forms.
//!
//! The session cookie (`bursar_console`) is `HttpOnly; SameSite=Strict; Path=/console`, and
//! `Secure` when `BURSAR_PUBLIC_URL` is https. Every POST form carries the session's CSRF
//! token in `csrf_token` (a value derived from the session id, see `service::console`): a
//! request without a session is sent to the login page first, and one with a session but
//! without the right token is refused with 403.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{message, Chrome};
use crate::http::pages::connect::cookie;
use crate::http::pages::PageForm;
use crate::http::AppState;
use crate::service::console::{self, Session};

pub const SESSION_COOKIE: &str = "bursar_console";
/// The login form's own token, before there is a session (double-submit: cookie and field).
pub const LOGIN_COOKIE: &str = "bursar_console_login";

pub const LOGIN_PATH: &str = "/console/login";

/// A request's live console session. Without one, the rejection is a 303 to the login page.
pub struct ConsoleSession(pub Session);

impl FromRequestParts<AppState> for ConsoleSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        match console::find(&state.services, token).await {
            Ok(Some(session)) => Ok(Self(session)),
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::error!(error = %e, "a console session could not be read");
                Err(message(
                    Chrome::signed_out(),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Something went wrong",
                    "The session could not be checked; please try again in a moment.",
                    None,
                ))
            }
        }
    }
}

impl ConsoleSession {
    /// The layout's needs, with `nav` the current part of the navigation.
    pub fn chrome(&self, nav: &'static str) -> Chrome {
        Chrome {
            csrf: self.0.csrf.clone(),
            nav,
            signed_in: true,
        }
    }

    /// The id of the API key this session was opened with.
    pub fn api_key_id(&self) -> &str {
        &self.0.api_key_id
    }

    /// Who acts in this session, for the logs: the same id (never the key itself).
    pub fn operator(&self) -> &str {
        self.api_key_id()
    }
}

/// A form posted in a session. The session is checked first (without one, a 303 to the login
/// page), then the form is read, then its `csrf_token` (403 when it is not the session's), so
/// no handler can act on a form it has not checked.
pub struct SignedForm<T> {
    pub session: ConsoleSession,
    pub form: T,
}

/// A console form's CSRF field.
pub trait CsrfField {
    fn csrf_token(&self) -> Option<&str>;
}

impl<T: DeserializeOwned + CsrfField + Send> FromRequest<AppState> for SignedForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = ConsoleSession::from_request_parts(&mut parts, state).await?;
        let PageForm(form) =
            PageForm::<T>::from_request(Request::from_parts(parts, body), state).await?;
        if !console::csrf_matches(&session.0, form.csrf_token()) {
            return Err(message(
                session.chrome(""),
                StatusCode::FORBIDDEN,
                "This form cannot be used",
                "The form's security token is missing or does not match this session. Reload the page and try again.",
                Some("/console"),
            ));
        }
        Ok(Self { session, form })
    }
}

/// The body of a form that is only a button: its CSRF token.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConsoleActionForm {
    /// The session's CSRF token, as the page gave it.
    pub csrf_token: Option<String>,
}

impl CsrfField for ConsoleActionForm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// Where a browser without a session goes.
pub fn to_login() -> Response {
    Redirect::to(LOGIN_PATH).into_response()
}

/// Adds a `Set-Cookie` with the attributes every console cookie has: `HttpOnly`,
/// `SameSite=Strict`, `Secure` when the public URL is https. `max_age`: seconds (0 deletes
/// it); `None` keeps it until the browser closes.
pub fn set_cookie(
    state: &AppState,
    response: &mut Response,
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<u32>,
) {
    let secure = if state.services.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict{max_age}{secure}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}
