//! Signing in with a platform API key, and out; failed attempts limited per client address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::session::{
    set_cookie, to_login, ConsoleActionForm, SignedForm, LOGIN_COOKIE, LOGIN_PATH, SESSION_COOKIE,
};
use super::{message, page, Chrome};
use crate::http::client_addr::client_address;
use crate::http::pages::connect::cookie;
use crate::http::pages::PageForm;
use crate::http::AppState;
use crate::service::console;
use crate::service::links::random_token;

/// Failed logins allowed per client address in each window.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked before expired windows are swept out (and, while none has expired, before
/// new addresses share one bucket).
const SWEEP_AT: usize = 4096;
/// How long the login form's token lasts.
const LOGIN_TOKEN_SECS: u32 = 3600;

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    chrome: Chrome,
    csrf_token: &'a str,
    error: Option<&'a str>,
}

/// `GET /console/login`: the form, with a fresh token in its cookie and hidden field. A
/// browser already signed in goes on to the overview.
#[utoipa::path(get, path = "/login", tag = "console", operation_id = "console_login_page",
    responses(
        (status = 200, description = "The login form (fields `api_key` and `csrf_token`)", content_type = "text/html", body = String),
        (status = 303, description = "Already signed in: on to the overview"),
    ))]
pub async fn form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(Some(_)) = console::find(&state.services, token).await {
            return Redirect::to("/console").into_response();
        }
    }
    let token = random_token();
    let mut response = login_page(StatusCode::OK, &token, None);
    set_cookie(
        &state,
        &mut response,
        LOGIN_COOKIE,
        &token,
        LOGIN_PATH,
        Some(LOGIN_TOKEN_SECS),
    );
    response
}

fn login_page(status: StatusCode, csrf_token: &str, error: Option<&str>) -> Response {
    let html = LoginPage {
        chrome: Chrome::signed_out(),
        csrf_token,
        error,
    }
    .render();
    page(status, html)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConsoleLoginForm {
    /// A platform API key (`bsr_…`).
    #[schema(value_type = Option<String>)]
    api_key: Option<SecretString>,
    /// Must equal the `bursar_console_login` cookie the form was served with.
    csrf_token: Option<String>,
}

/// `POST /console/login`: an active API key opens a session (its cookie set) and goes on to
/// the overview. A wrong key gets the form again, saying only that it was not accepted.
#[utoipa::path(post, path = "/login", tag = "console", operation_id = "console_login",
    request_body(content = ConsoleLoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: the `bursar_console` cookie is set; on to the overview"),
        (status = 400, description = "A field is malformed or sent twice", content_type = "text/html", body = String),
        (status = 401, description = "The key was not accepted: the form again", content_type = "text/html", body = String),
        (status = 403, description = "The form's token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 415, description = "The body is not application/x-www-form-urlencoded", content_type = "text/html", body = String),
        (status = 429, description = "Too many failed attempts from this address: wait a minute", content_type = "text/html", body = String),
        (status = 503, description = "The database could not answer", content_type = "text/html", body = String),
    ))]
pub async fn submit(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    PageForm(form): PageForm<ConsoleLoginForm>,
) -> Response {
    // Always known when served by `http::server`; one shared bucket otherwise.
    let peer = peer.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        |Extension(ConnectInfo(a))| a.ip(),
    );
    let client = client_address(peer, &headers, &state.services.config.trusted_proxies);
    let token_ok = match (cookie(&headers, LOGIN_COOKIE), form.csrf_token.as_deref()) {
        (Some(a), Some(b)) => {
            !a.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
        }
        _ => false,
    };
    if !token_ok {
        return message(
            Chrome::signed_out(),
            StatusCode::FORBIDDEN,
            "This form cannot be used",
            "The form's security token is missing or does not match (cookies may be blocked). Open the login page again.",
            Some(LOGIN_PATH),
        );
    }
    // Counted only once the form is our own: a cross-site post cannot spend an address's tries.
    let Some(charge) = state.logins.attempt(client) else {
        let mut response = message(
            Chrome::signed_out(),
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many sign-in attempts failed from this address. Wait a minute, then try again.",
            Some(LOGIN_PATH),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return response;
    };
    let presented = form
        .api_key
        .as_ref()
        .map(|k| k.expose_secret())
        .unwrap_or_default();
    match console::open(&state.services, presented).await {
        Ok(Some(opened)) => {
            state.logins.succeeded(charge);
            let mut response = Redirect::to("/console").into_response();
            set_cookie(
                &state,
                &mut response,
                SESSION_COOKIE,
                opened.token.expose_secret(),
                "/console",
                None,
            );
            set_cookie(&state, &mut response, LOGIN_COOKIE, "", LOGIN_PATH, Some(0));
            response
        }
        Ok(None) => {
            tracing::info!(client = %client, peer = %peer, "console sign-in refused: the key was not accepted");
            login_page(
                StatusCode::UNAUTHORIZED,
                form.csrf_token.as_deref().unwrap_or_default(),
                Some("That API key was not accepted."),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "a console session could not be opened");
            message(
                Chrome::signed_out(),
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                "Signing in failed; please try again in a moment.",
                Some(LOGIN_PATH),
            )
        }
    }
}

/// `POST /console/logout`: ends the session and forgets its cookie.
#[utoipa::path(post, path = "/logout", tag = "console", operation_id = "console_logout",
    request_body(content = ConsoleActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out, or not signed in: on to the login page"),
        (status = 403, description = "The form's CSRF token is missing or wrong", content_type = "text/html", body = String),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedForm { session, .. }: SignedForm<ConsoleActionForm>,
) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = console::close(&state.services, token).await {
            tracing::error!(error = %e, "a console session could not be ended");
            return super::failed(session.chrome(""), e, Some("/console"));
        }
    }
    tracing::info!(operator = %session.operator(), "console session ended");
    let mut response = to_login();
    set_cookie(
        &state,
        &mut response,
        SESSION_COOKIE,
        "",
        "/console",
        Some(0),
    );
    response
}

/// Sign-in attempts per client address, in fixed one-minute windows, held in memory: a
/// guesser is slowed to ten keys a minute per address (IPv6 per /64, what one host holds).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    state: Mutex<Limits>,
}

#[derive(Debug, Default)]
struct Limits {
    windows: HashMap<IpAddr, Window>,
    /// When expired windows were last swept out; `None`: never.
    swept: Option<Instant>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    count: u32,
}

/// The try an attempt took: which bucket, in which window.
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    bucket: IpAddr,
    window: Instant,
}

impl LoginLimiter {
    /// Counts an attempt from `client` before its key is checked, so concurrent guesses cannot
    /// all pass the check before any is counted; `None` once the window's attempts are used up
    /// (even a good key then waits). A success gives its try back with `succeeded`.
    pub fn attempt(&self, client: IpAddr) -> Option<Charge> {
        let mut limits = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut bucket = bucket(client);
        if limits.windows.len() >= SWEEP_AT && !limits.windows.contains_key(&bucket) {
            // Swept at most once a window; while still full, new addresses share one bucket, so
            // memory stays bounded and a flood of addresses only slows itself.
            if limits
                .swept
                .is_none_or(|at| now.duration_since(at) >= WINDOW)
            {
                limits
                    .windows
                    .retain(|_, w| now.duration_since(w.started) < WINDOW);
                limits.swept = Some(now);
            }
            if limits.windows.len() >= SWEEP_AT {
                bucket = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
            }
        }
        let window = limits.windows.entry(bucket).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        if window.count >= MAX_FAILURES {
            return None;
        }
        window.count += 1;
        Some(Charge {
            bucket,
            window: window.started,
        })
    }

    /// An attempt that opened a session gives back the try it took, if its window still runs.
    pub fn succeeded(&self, charge: Charge) {
        let mut limits = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = limits.windows.get_mut(&charge.bucket) {
            if w.started == charge.window {
                w.count = w.count.saturating_sub(1);
            }
        }
    }
}

/// The address a limit applies to: an IPv4 address, or an IPv6 address's /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_a_minute_then_blocked() {
        let limiter = LoginLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.attempt(a).is_some());
        }
        assert!(
            limiter.attempt(a).is_none(),
            "the eleventh attempt in the minute waits"
        );
        for _ in 0..2 * MAX_FAILURES {
            let charge = limiter.attempt(b).expect("successes give their try back");
            limiter.succeeded(charge);
        }
    }

    #[test]
    fn a_flood_of_addresses_shares_one_bucket_until_their_windows_are_swept() {
        let limiter = LoginLimiter::default();
        for n in 0..SWEEP_AT as u32 {
            assert!(limiter.attempt(IpAddr::V4(n.into())).is_some());
        }
        let newcomers = (0..2 * MAX_FAILURES).map(|n| IpAddr::V4((u32::MAX - n).into()));
        let allowed = newcomers
            .filter(|ip| limiter.attempt(*ip).is_some())
            .count();
        assert_eq!(
            allowed, MAX_FAILURES as usize,
            "the newcomers share one bucket"
        );
        assert_eq!(limiter.state.lock().unwrap().windows.len(), SWEEP_AT + 1);
        assert!(
            limiter.attempt(IpAddr::V4(7.into())).is_some(),
            "an address already known keeps its own"
        );
        // A window later the old windows are swept out: a newcomer has its own bucket again.
        {
            let mut limits = limiter.state.lock().unwrap();
            let past = Instant::now() - WINDOW;
            for w in limits.windows.values_mut() {
                w.started = past;
            }
            limits.swept = Some(past);
        }
        let newcomer = IpAddr::V4(u32::MAX.into());
        let charge = limiter.attempt(newcomer).expect("room after the sweep");
        assert_eq!(charge.bucket, newcomer);
        assert_eq!(limiter.state.lock().unwrap().windows.len(), 1);
    }

    #[test]
    fn ipv6_addresses_of_one_host_share_a_limit() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(one), bucket(other));
        assert_ne!(bucket(one), bucket(elsewhere));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(bucket(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_login_form_escapes_and_carries_its_fields() {
        let html = LoginPage {
            chrome: Chrome::signed_out(),
            csrf_token: "tok\"><x",
            error: Some("<b>no</b>"),
        }
        .render()
        .unwrap();
        assert!(html.contains("name=\"api_key\"") && html.contains("name=\"csrf_token\""));
        assert!(html.contains("<label for=\"api_key\">"));
        assert!(!html.contains("tok\"><x") && !html.contains("<b>no</b>"));
    }
}
