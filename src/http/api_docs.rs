//! `GET /api/docs`: the API reference, Swagger UI rendering `/api/openapi.json`. Its assets
//! are built into the binary (utoipa-swagger-ui's vendored copy), so no CDN is reached; the
//! page gets a policy that allows only what the viewer needs from this origin.

use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_swagger_ui::Config;

use super::error::ApiError;

const BASE: &str = "/api/docs/";

/// Swagger UI's scripts and styles come from here; it styles some elements inline and draws
/// icons from data: URLs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

fn config() -> Arc<Config<'static>> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(Config::new(["/api/openapi.json"])))
        .clone()
}

/// The API reference (Swagger UI).
#[utoipa::path(get, path = "/api/docs", tag = "operations", operation_id = "api_docs",
    responses((status = 200, description = "The API reference page", content_type = "text/html")))]
pub async fn index() -> Response {
    serve("index.html")
}

/// The reference page's scripts and styles.
#[utoipa::path(get, path = "/api/docs/{file}", tag = "operations", operation_id = "api_docs_asset",
    params(("file" = String, Path, description = "An asset of the page")),
    responses(
        (status = 200, description = "The asset", content(
            (String = "text/javascript"), (String = "text/css"), (String = "image/png"),
            (String = "text/html"), (String = "application/json"))),
        (status = 404, description = "No such asset", body = super::error::ErrorBody),
    ))]
pub async fn asset(Path(file): Path<String>) -> Response {
    // The page is served at `/api/docs`, so it names its assets with the full prefix.
    if file == "index.html" || file.contains('/') {
        return ApiError::not_found("asset").into_response();
    }
    serve(&file)
}

fn serve(file: &str) -> Response {
    let found = match utoipa_swagger_ui::serve(file, config()) {
        Ok(Some(found)) => found,
        Ok(None) => return ApiError::not_found("asset").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the API reference could not be served");
            return ApiError::internal().into_response();
        }
    };
    let mut bytes = found.bytes.into_owned();
    if file == "index.html" && !found.gzpipped {
        let html = String::from_utf8_lossy(&bytes)
            .replace("\"./", &format!("\"{BASE}"))
            .replace("\"index.css\"", &format!("\"{BASE}index.css\""))
            .replace(
                "<title>Swagger UI</title>",
                "<title>Bursar API reference</title>",
            );
        bytes = html.into_bytes();
    }
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&found.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if found.gzpipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
