use axum::extract::{Path, State};
use axum::Json;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::store_id;
use crate::http::error::ApiResult;
use crate::http::extract::JsonBody;
use crate::http::AppState;
use crate::service::connections::{self, AccountView, ConnectionView, KeysInput};

/// The secret fields are `SecretString` from the moment they are parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysIn {
    secret_key: SecretString,
    publishable_key: String,
    webhook_secret: Option<SecretString>,
}

pub async fn put_keys(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<KeysIn>,
) -> ApiResult<Json<ConnectionView>> {
    let input = KeysInput {
        secret_key: input.secret_key,
        publishable_key: input.publishable_key,
        webhook_secret: input.webhook_secret,
    };
    Ok(Json(
        connections::connect_keys(&state.services, &store_id(&id)?, input).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecretIn {
    webhook_secret: SecretString,
}

pub async fn put_webhook_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<WebhookSecretIn>,
) -> ApiResult<Json<ConnectionView>> {
    Ok(Json(
        connections::set_webhook_secret(&state.services, &store_id(&id)?, input.webhook_secret)
            .await?,
    ))
}

pub async fn disconnect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = store_id(&id)?;
    connections::disconnect(&state.services, &id).await?;
    Ok(Json(
        json!({ "store_id": id, "object": "connection", "deleted": true }),
    ))
}

pub async fn account(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountView>> {
    Ok(Json(
        connections::account(&state.services, &store_id(&id)?).await?,
    ))
}
