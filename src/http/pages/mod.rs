//! The merchant-facing HTML pages: key entry from a signed link (`connect`), its success
//! page, the Connect OAuth callback and Bursar's Account Link refresh URL (`onboarding`), and
//! what they share here: rendering with the security headers, messages, the form extractor.
//!
//! Server-rendered (askama templates in `templates/`, escaped by default), usable without
//! JavaScript, served with a strict Content-Security-Policy: no script at all, styles from our
//! own stylesheet only, forms posting only to Bursar (and the return URL it redirects to).

pub mod connect;
pub mod onboarding;

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::service::links::LinkError;

pub const STYLESHEET: &str = include_str!("../../../assets/pages.css");

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    continue_url: Option<&'a str>,
}

/// A rendered page with the security headers every page carries. `form_target` is the one
/// origin besides Bursar's a form may end up on (the return URL a POST redirects to: browsers
/// apply `form-action` to redirects too).
fn page(status: StatusCode, html: askama::Result<String>, form_target: Option<&str>) -> Response {
    let form_action = match form_target.and_then(|u| url::Url::parse(u).ok()) {
        Some(u) => format!("'self' {}", u.origin().ascii_serialization()),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    render(status, html, &csp)
}

/// A page with this Content-Security-Policy and the headers every page carries.
pub fn render(status: StatusCode, html: askama::Result<String>, csp: &str) -> Response {
    // A page that fails to render still goes out under the page's headers: no framing, no
    // caching, no script.
    let mut response = match html {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown. The server's log says why.",
            )
                .into_response()
        }
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

pub fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    continue_url: Option<&str>,
) -> Response {
    let html = MessagePage {
        title,
        message: text,
        continue_url,
    }
    .render();
    page(status, html, None)
}

/// `Form<T>` for the merchant pages: a body that cannot be read gets the pages' own HTML error
/// (415 for another content type, 400 for a malformed or duplicated field), not a text/plain
/// one.
pub struct PageForm<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for PageForm<T> {
    type Rejection = axum::response::Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(PageForm(v)),
            Err(r) => Err(match r.status() {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => message(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "This form cannot be read",
                    "The form must be sent as application/x-www-form-urlencoded, as the page sends it.",
                    None,
                ),
                StatusCode::PAYLOAD_TOO_LARGE => message(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "This form is too large",
                    "The form is larger than this page accepts.",
                    None,
                ),
                _ => message(
                    StatusCode::BAD_REQUEST,
                    "This form cannot be read",
                    "A field of the form is malformed or sent twice. Open the link again and submit the form as it is.",
                    None,
                ),
            }),
        }
    }
}

fn link_refused(e: LinkError) -> Response {
    let status = match e {
        LinkError::Unsigned => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    message(status, "This link cannot be used", &e.to_string(), None)
}

fn unavailable() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Something went wrong",
        "The service could not complete this request; please try again in a moment.",
        None,
    )
}

#[utoipa::path(get, path = "/assets/pages.css", tag = "pages", operation_id = "pages_stylesheet",
    responses((status = 200, description = "The pages' stylesheet", content_type = "text/css", body = String)))]
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_echo() {
        let html = MessagePage {
            title: "t",
            message: "<script>alert(1)</script>",
            continue_url: Some("https://x.example/\"><script>"),
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn a_page_that_fails_to_render_keeps_the_page_headers() {
        let failed = Err(askama::Error::Fmt);
        let response = render(StatusCode::OK, failed, "default-src 'none'");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'"
        );
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
