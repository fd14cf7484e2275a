//! Stripe's wire conventions shared by every route: error bodies, form-encoded parameters,
//! redirects and the simulator's small HTML pages.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An API error in Stripe's shape, `{"error":{"type","code"?,"message","param"?}}`, which v1
/// and v2 share.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    /// More fields of the error object (`decline_code`, `payment_intent`, …).
    pub extra: serde_json::Map<String, Value>,
}

pub(crate) type ApiResult = Result<Response, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: None,
            message: message.into(),
            param: None,
            extra: serde_json::Map::new(),
        }
    }

    /// A 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// The same error with another HTTP status (Stripe answers 400, not 404, for an unknown
    /// id given as a parameter).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a field to the error object.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn missing(param: &str) -> Self {
        Self::invalid(format!("Missing required param: {param}."))
            .code("parameter_missing")
            .param(param)
    }

    /// `No such payout: 'po_…'`, as Stripe answers for an object outside the caller's account.
    pub fn no_such(resource: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No such {resource}: '{id}'"),
        )
        .code("resource_missing")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "type": self.kind, "message": self.message });
        if let Some(code) = self.code {
            error["code"] = json!(code);
        }
        if let Some(param) = self.param {
            error["param"] = json!(param);
        }
        for (k, v) in self.extra {
            error[k] = v;
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

/// A 200 JSON answer.
pub(crate) fn ok(body: Value) -> ApiResult {
    Ok(Json(body).into_response())
}

/// A form-encoded body (or query string) as Stripe reads it: flat pairs whose keys carry the
/// nesting (`capabilities[card_payments][requested]=true`).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(raw: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(raw).into_owned().collect())
    }

    /// The value of `key`; empty values count as absent, as Stripe treats them for strings.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a list parameter, written `key=a&key=b`, `key[]=a` or `key[0]=a`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| {
                k == key
                    || k.strip_prefix(key)
                        .and_then(|rest| rest.strip_prefix('['))
                        .is_some_and(|rest| {
                            rest.strip_suffix(']')
                                .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()))
                        })
            })
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one-level children of `prefix[…]`: `metadata[a]=1` gives `("a", "1")`.
    pub fn children<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0.iter().filter_map(move |(k, v)| {
            let inner = k
                .strip_prefix(prefix)?
                .strip_prefix('[')?
                .strip_suffix(']')?;
            (!inner.contains('[')).then_some((inner, v.as_str()))
        })
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether any parameter is `prefix` itself or nested under it.
    pub fn has(&self, prefix: &str) -> bool {
        self.0
            .iter()
            .any(|(k, _)| k == prefix || k.starts_with(&format!("{prefix}[")))
    }
}

/// A 302, the redirect Stripe's hosted pages answer with.
pub(crate) fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

/// One of the simulator's pages: plain HTML, no script, so a headless browser (or curl) can
/// go through it with nothing but forms and links.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:36rem;margin:3rem auto}}\
         form{{display:inline-block;margin-right:1rem}}</style></head>\
         <body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `url` with `pairs` appended to its query; `None` when `url` is not an absolute URL.
pub(crate) fn with_query(url: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
    }
    Some(url.into())
}
