//! What a browser meets: a Stripe.js stand-in (`GET /js.stripe.com/v3/`, the path
//! localstripe uses), the publishable-key requests it makes, and CORS on the API.
//!
//! Stripe.js calls the API from the merchant's page, cross-origin, as CORS "simple" requests:
//! a form body with the publishable key in it (`key=pk_…`) and the connected account as
//! `_stripe_account=acct_…`, since custom headers would cost a preflight. Here those two are
//! lifted into `Authorization: Bearer pk_…` and `Stripe-Account` before the routes see the
//! request, so every route answers a publishable key the same way, whichever way it came:
//! Stripe's 403 everywhere but the routes Stripe.js may call (`auth::publishable`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::{bearer, header as header_str, is_publishable, STRIPE_ACCOUNT};
use crate::state::Sim;

/// The script served as Stripe.js.
pub(crate) const STRIPE_JS: &str = include_str!("stripe.js");

/// Where the script is served, under the simulator's URL.
pub const STRIPE_JS_PATH: &str = "/js.stripe.com/v3/";

/// The form (or query) parameter Stripe.js sends its publishable key in…
const KEY: &str = "key";
/// …and the connected account it acts on.
const ACCOUNT: &str = "_stripe_account";

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route(STRIPE_JS_PATH, get(script))
        .route("/js.stripe.com/v3", get(script))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin",
            ),
        ],
        STRIPE_JS,
    )
        .into_response()
}

/// Paths a page on another origin may call (and read the answers of).
fn cross_origin(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/v2/") || path.starts_with("/js.stripe.com/")
}

/// CORS, as api.stripe.com answers it: any origin may read the API's answers (no cookies are
/// involved; the key is in the request), and preflights are answered without reaching a route
/// (they are not recorded).
pub(crate) async fn cors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !cross_origin(path) {
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS {
        let private_network = req
            .headers()
            .get("Access-Control-Request-Private-Network")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        allow_origin(h);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type, Authorization, Stripe-Account"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("300"),
        );
        if private_network {
            h.insert(
                "Access-Control-Allow-Private-Network",
                HeaderValue::from_static("true"),
            );
        }
        return r;
    }
    let mut r = next.run(req).await;
    allow_origin(r.headers_mut());
    r
}

fn allow_origin(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// The publishable key a request carries, as Stripe.js or a mobile SDK sends it (`key` in the
/// form or query, or `Authorization: Bearer pk_…`), and the account it names (`_stripe_account`
/// or `Stripe-Account`). `None` for any other request.
pub(crate) fn publishable_in(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Option<(String, Option<String>)> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .chain(url::form_urlencoded::parse(body))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let key = match bearer(headers) {
        Some(key) => key,
        None if headers.contains_key(header::AUTHORIZATION) => return None,
        None => param(KEY)?,
    };
    if !is_publishable(&key) {
        return None;
    }
    let account = header_str(headers, STRIPE_ACCOUNT)
        .map(str::to_owned)
        .or_else(|| param(ACCOUNT));
    Some((key, account))
}

/// Moves `key=pk_…` and `_stripe_account=…` of a request without `Authorization` (in its form
/// body or query) into `Authorization: Bearer` and `Stripe-Account`, taking them out of the
/// body so routes that refuse unknown parameters see only the API's own.
pub(crate) async fn lift_publishable(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v1/") || req.headers().contains_key(header::AUTHORIZATION) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    // The outer layer already bounded the body.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let Some((key, account)) = publishable_in(&parts.headers, parts.uri.query(), &body) else {
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    };
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = if json {
        body
    } else {
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(&body) {
            if k != KEY && k != ACCOUNT {
                kept.append_pair(&k, &v);
            }
        }
        kept.finish().into()
    };
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {key}")) {
        parts.headers.insert(header::AUTHORIZATION, v);
    }
    if let Some(v) = account
        .filter(|_| !parts.headers.contains_key(STRIPE_ACCOUNT))
        .and_then(|a| HeaderValue::from_str(&a).ok())
    {
        parts.headers.insert(STRIPE_ACCOUNT, v);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    next.run(Request::from_parts(parts, Body::from(body))).await
}
