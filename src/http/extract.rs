//! Extractors whose rejections speak the API's error format.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `Json<T>` with 400 for malformed or mistyped JSON, 413 for oversize, 415 for a wrong type.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send JSON with Content-Type: application/json",
        ),
        _ => match r {
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request("invalid_json", format!("malformed JSON: {}", e.body_text()))
            }
            JsonRejection::JsonDataError(e) => {
                ApiError::bad_request("invalid_request", data_error(&innermost(&e)))
            }
            other => ApiError::bad_request("invalid_request", other.body_text()),
        },
    }
}

fn innermost(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// serde's `amount: invalid type: string "x", expected i64 at line 1 column 14` in the API's
/// words: the field in backticks, what it expects, no parser position.
fn data_error(raw: &str) -> String {
    let raw = match raw.rfind(" at line ") {
        Some(i) => &raw[..i],
        None => raw,
    };
    let (field, message) = match raw.split_once(": ") {
        Some((field, message)) if !field.contains(' ') => (Some(field), message),
        _ => (None, raw),
    };
    let mut message = message.to_owned();
    for (rust, words) in [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected i32", "expected an integer"),
        ("expected a boolean", "expected true or false"),
        ("expected a string", "expected a string"),
    ] {
        message = message.replace(rust, words);
    }
    match field {
        Some(f) if f != "." => format!("`{f}`: {message}"),
        _ => message,
    }
}

/// `Query<T>` with a 400 in the API's format.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::bad_request("invalid_request", e.body_text()))
            }
            Err(e) => Err(ApiError::bad_request("invalid_request", e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::data_error;

    #[test]
    fn data_errors_name_the_field_and_what_it_expects() {
        assert_eq!(
            data_error("amount: invalid type: string \"x\", expected i64 at line 1 column 14"),
            "`amount`: invalid type: string \"x\", expected an integer"
        );
        assert_eq!(
            data_error("missing field `currency` at line 1 column 2"),
            "missing field `currency`"
        );
    }
}
