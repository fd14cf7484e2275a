//! Key entry from a signed link: the form (`GET /stripe/connect`), its submission, and the
//! success page a merchant lands on without a return URL.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::{link_refused, message, page, unavailable, PageForm};
use crate::domain::StoreId;
use crate::http::AppState;
use crate::service::connections::{self, KeysInput};
use crate::service::links::{self, ConnectLinkParams, LinkError};
use crate::service::{stores, webhook_endpoints, ServiceError};
use crate::stripe::StripeError;

const CSRF_COOKIE: &str = "bursar_csrf";

#[derive(Template)]
#[template(path = "connect.html")]
struct ConnectPage<'a> {
    store_name: &'a str,
    link: HiddenLink<'a>,
    csrf: &'a str,
    publishable_key: &'a str,
    webhook_url: &'a str,
    error: Option<String>,
}

/// The signed link's fields, carried through the form as they arrived.
struct HiddenLink<'a> {
    store_id: &'a str,
    return_url: &'a str,
    expires: &'a str,
    signature: &'a str,
}

impl<'a> From<&'a ConnectLinkParams> for HiddenLink<'a> {
    fn from(p: &'a ConnectLinkParams) -> Self {
        Self {
            store_id: p.store_id.as_deref().unwrap_or_default(),
            return_url: p.return_url.as_deref().unwrap_or_default(),
            expires: p.expires.as_deref().unwrap_or_default(),
            signature: p.signature.as_deref().unwrap_or_default(),
        }
    }
}

/// `GET /stripe/connect`: the key-entry form, for a valid signed link only.
/// The merchant's key-entry page, opened from a signed connect link.
#[utoipa::path(get, path = "/connect", tag = "pages", operation_id = "connect_page",
    params(
        ("store_id" = Option<String>, Query, description = "From the signed link"),
        ("return_url" = Option<String>, Query, description = "From the signed link"),
        ("expires" = Option<String>, Query, description = "From the signed link"),
        ("signature" = Option<String>, Query, description = "From the signed link"),
    ),
    responses(
        (status = 200, description = "The form", content_type = "text/html", body = String),
        (status = 400, description = "The link is not signed", content_type = "text/html", body = String),
        (status = 403, description = "The link is expired or altered", content_type = "text/html", body = String),
        (status = 409, description = "The store is already connected", content_type = "text/html", body = String),
        (status = 503, description = "The service could not answer", content_type = "text/html", body = String),
    ))]
pub async fn connect_form(
    State(state): State<AppState>,
    Query(params): Query<ConnectLinkParams>,
) -> Response {
    let s = &state.services;
    let link = match links::verify_connect_link(s, &params) {
        Ok(l) => l,
        Err(e) => return link_refused(e),
    };
    let store = match stores::require(s, &link.store).await {
        Ok(store) => store,
        Err(ServiceError::NotFound(_)) => return link_refused(LinkError::Tampered),
        Err(_) => return unavailable(),
    };
    match already_connected(&state, &link.store).await {
        Ok(false) => {}
        Ok(true) => return connected_page(),
        Err(r) => return r,
    }
    match link.spent(s).await {
        Ok(false) => {}
        Ok(true) => return link_refused(LinkError::Used),
        Err(_) => return unavailable(),
    }
    let csrf = links::random_token();
    let html = ConnectPage {
        store_name: &store.name,
        link: (&params).into(),
        csrf: &csrf,
        publishable_key: "",
        webhook_url: &webhook_url(&state, &link.store),
        error: None,
    }
    .render();
    let mut response = page(StatusCode::OK, html, Some(&link.return_url));
    set_csrf_cookie(&state, &mut response, &csrf);
    response
}

async fn already_connected(state: &AppState, store: &StoreId) -> Result<bool, Response> {
    connections::is_connected(&state.services, store)
        .await
        .map(|c| c == Some(true))
        .map_err(|_| unavailable())
}

fn connected_page() -> Response {
    message(
        StatusCode::CONFLICT,
        "Already connected",
        "This store is already connected to a Stripe account. To change it, ask the platform to disconnect it first and send you a new link.",
        None,
    )
}

fn webhook_url(state: &AppState, store: &StoreId) -> String {
    format!(
        "{}/webhooks/stripe/stores/{store}",
        state.services.config.public_url.trim_end_matches('/')
    )
}

/// The CSRF token rides in a cookie that only this path sees and no other site can send
/// (`SameSite=Strict`); the form echoes it, and the POST must carry both, equal.
fn set_csrf_cookie(state: &AppState, response: &mut Response, token: &str) {
    let secure = if state.services.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{CSRF_COOKIE}={token}; Path=/stripe/connect; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
}

/// Reads one cookie. Written by hand: one name in one header does not call for a cookie jar.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConnectForm {
    #[serde(flatten)]
    link: ConnectLinkParams,
    /// Must equal the `bursar_csrf` cookie the form was served with.
    csrf: Option<String>,
    #[schema(value_type = Option<String>)]
    secret_key: Option<SecretString>,
    publishable_key: Option<String>,
    #[schema(value_type = Option<String>)]
    webhook_secret: Option<SecretString>,
}

/// `POST /stripe/connect`: the same validation as the API; errors re-render the form inline.
#[utoipa::path(post, path = "/connect", tag = "pages", operation_id = "connect_submit",
    request_body(content = ConnectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Connected: on to the link's return URL or the success page"),
        (status = 200, description = "Connected, with warnings to read first (a full secret key, keys of two accounts, no webhook endpoint); a link continues", content_type = "text/html", body = String),
        (status = 400, description = "The link is not signed, or a field is malformed or sent twice", content_type = "text/html", body = String),
        (status = 403, description = "The link is expired or altered, or the CSRF token does not match", content_type = "text/html", body = String),
        (status = 415, description = "The body is not application/x-www-form-urlencoded", content_type = "text/html", body = String),
        (status = 409, description = "The store is already connected", content_type = "text/html", body = String),
        (status = 422, description = "The keys were refused: the form again, saying why", content_type = "text/html", body = String),
        (status = 503, description = "The service could not answer", content_type = "text/html", body = String),
    ))]
pub async fn connect_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm<ConnectForm>,
) -> Response {
    let s = &state.services;
    let link = match links::verify_connect_link(s, &form.link) {
        Ok(l) => l,
        Err(e) => return link_refused(e),
    };
    let csrf_ok = match (cookie(&headers, CSRF_COOKIE), form.csrf.as_deref()) {
        (Some(a), Some(b)) => {
            !a.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
        }
        _ => false,
    };
    if !csrf_ok {
        return message(
            StatusCode::FORBIDDEN,
            "This form cannot be used",
            "The form's security token is missing or does not match (cookies may be blocked). Open the link again.",
            None,
        );
    }
    let store = match stores::require(s, &link.store).await {
        Ok(store) => store,
        Err(ServiceError::NotFound(_)) => return link_refused(LinkError::Tampered),
        Err(_) => return unavailable(),
    };
    // A link connects a store once: it can never replace a connection (another account, or a
    // Connect one), so a leaked link cannot redirect a live store's payments.
    match already_connected(&state, &link.store).await {
        Ok(false) => {}
        Ok(true) => return connected_page(),
        Err(r) => return r,
    }
    // Spent before the keys are saved, so two submissions of one link cannot both connect.
    match link.spend(s).await {
        Ok(true) => {}
        Ok(false) => return link_refused(LinkError::Used),
        Err(_) => return unavailable(),
    }
    let publishable = form.publishable_key.unwrap_or_default();
    let webhook_secret = form
        .webhook_secret
        .filter(|w| !secrecy::ExposeSecret::expose_secret(w).trim().is_empty());
    let result = match form.secret_key {
        Some(secret_key) => {
            webhook_endpoints::connect_keys(
                s,
                &link.store,
                KeysInput {
                    secret_key,
                    publishable_key: publishable.trim().to_owned(),
                    webhook_secret,
                },
            )
            .await
        }
        None => Err(ServiceError::Refused {
            code: "invalid_request",
            message: "the secret key is missing".into(),
        }),
    };
    match result {
        Ok(view) => {
            let to = if link.return_url.is_empty() {
                format!("/stripe/success/{}", link.store)
            } else {
                link.return_url.clone()
            };
            // What the merchant should still fix is said before they move on.
            let mut notes = view.warnings.clone();
            if view.webhook.status != "ready" {
                notes.extend(view.webhook.reason.clone());
            }
            if notes.is_empty() {
                return Redirect::to(&to).into_response();
            }
            message(
                StatusCode::OK,
                "Connected, with something to check",
                &format!(
                    "Your Stripe account is connected. Please check: {}",
                    notes.join(" ")
                ),
                Some(&to),
            )
        }
        Err(e) => {
            if let Err(e) = link.unspend(s).await {
                tracing::warn!(error = %e, "could not give a refused key-entry link back");
            }
            let html = ConnectPage {
                store_name: &store.name,
                link: (&form.link).into(),
                csrf: form.csrf.as_deref().unwrap_or_default(),
                publishable_key: &publishable,
                webhook_url: &webhook_url(&state, &link.store),
                error: Some(plain_words(&e)),
            }
            .render();
            page(
                StatusCode::UNPROCESSABLE_ENTITY,
                html,
                Some(&link.return_url),
            )
        }
    }
}

/// What went wrong, for a merchant rather than a developer.
fn plain_words(e: &ServiceError) -> String {
    match e {
        ServiceError::StripeRefused(StripeError::Api { message, .. }) => {
            format!("Stripe refused this key: {message}")
        }
        ServiceError::StripeUnavailable(_) | ServiceError::StripeRefused(_) => {
            "Stripe could not be reached to check the key; please try again in a moment.".into()
        }
        // Field messages are written to follow their field: "must be …", "is not …".
        ServiceError::Invalid(i) => format!(
            "The {} {}.",
            i.field.replace('_', " "),
            i.message.trim_end_matches('.')
        ),
        ServiceError::Refused { message, .. } | ServiceError::Conflict { message, .. } => {
            let mut m = message.clone();
            if let Some(first) = m.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!("{m}.")
        }
        _ => "Something went wrong while saving; please try again.".into(),
    }
}

/// `GET /stripe/success/{store_id}`: where a merchant lands when no return URL was given. It
/// says connected only of a store that is (as `GET /stripe/status/{id}` would).
#[utoipa::path(get, path = "/success/{store_id}", tag = "pages", operation_id = "connect_success",
    params(("store_id" = String, Path, description = "The store's id (`st_…`)")),
    responses(
        (status = 200, description = "Connected, or not (yet)", content_type = "text/html", body = String),
        (status = 404, description = "No such store", content_type = "text/html", body = String),
        (status = 503, description = "The database could not answer", content_type = "text/html", body = String),
    ))]
pub async fn success(State(state): State<AppState>, Path(store): Path<String>) -> Response {
    let Ok(store) = StoreId::parse(&store) else {
        return no_such_store();
    };
    match connections::is_connected(&state.services, &store).await {
        Ok(Some(true)) => message(
            StatusCode::OK,
            "Stripe account connected",
            "Your Stripe account is connected. You can close this page.",
            None,
        ),
        Ok(Some(false)) => message(
            StatusCode::OK,
            "Not connected yet",
            "This store has no Stripe account connected. Start again from the link the platform gave you.",
            None,
        ),
        Ok(None) => no_such_store(),
        Err(_) => unavailable(),
    }
}

fn no_such_store() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "No such store",
        "There is no store with this id.",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_finds_one_name_among_many() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; bursar_csrf=tok; b=2"),
        );
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "bursar"), None);
    }
}
