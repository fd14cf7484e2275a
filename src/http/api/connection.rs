use axum::extract::{Path, State};
use axum::Json;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::store_id;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::JsonBody;
use crate::http::AppState;
use crate::service::connections::{self, AccountView, ConnectionView, KeysInput};
use crate::service::webhook_endpoints;

/// The secret fields are `SecretString` from the moment they are parsed.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysIn {
    /// A restricted (`rk_…`) or secret (`sk_…`) key; `BURSAR_KEY_POLICY` decides about `sk_`.
    #[schema(value_type = String)]
    secret_key: SecretString,
    /// `pk_…`, of the same mode as the secret key.
    publishable_key: String,
    /// The signing secret (`whsec_…`) of the store's own webhook endpoint.
    #[schema(value_type = Option<String>)]
    webhook_secret: Option<SecretString>,
}

/// Connect a store with pasted API keys: checked at Stripe first, stored encrypted, never echoed.
#[utoipa::path(put, path = "/stores/{id}/connection/keys", tag = "connections",
    operation_id = "put_store_keys",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    request_body = KeysIn,
    responses(
        (status = 200, description = "The store's connection (no secrets)", body = ConnectionView),
        (status = 400, description = "Malformed keys, mixed modes, or refused by the key policy", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
        (status = 422, description = "Stripe refused the key; the message gives Stripe's reason", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached", body = ErrorBody),
    ))]
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
        webhook_endpoints::connect_keys(&state.services, &store_id(&id)?, input).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecretIn {
    /// `whsec_…`
    #[schema(value_type = String)]
    webhook_secret: SecretString,
}

/// Set the signing secret of a keys store's own webhook endpoint.
#[utoipa::path(put, path = "/stores/{id}/connection/webhook-secret", tag = "connections",
    operation_id = "put_store_webhook_secret",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    request_body = WebhookSecretIn,
    responses(
        (status = 200, description = "The store's connection", body = ConnectionView),
        (status = 400, description = "Not a `whsec_` secret, or the store is not connected", body = ErrorBody),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
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

/// What disconnecting answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Disconnected {
    pub store_id: String,
    /// Always `connection`.
    pub object: &'static str,
    pub deleted: bool,
}

/// Disconnect a store: its secrets are erased and a Connect grant is deauthorized at Stripe.
#[utoipa::path(delete, path = "/stores/{id}/connection", tag = "connections",
    operation_id = "disconnect_store",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    responses(
        (status = 200, description = "The store is disconnected", body = Disconnected),
        (status = 404, description = "No such store, or it is not connected", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached to deauthorize", body = ErrorBody),
    ))]
pub async fn disconnect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Disconnected>> {
    let id = store_id(&id)?;
    webhook_endpoints::disconnect(&state.services, &id).await?;
    Ok(Json(Disconnected {
        store_id: id.to_string(),
        object: "connection",
        deleted: true,
    }))
}

/// The store's Stripe account as last seen: capabilities, requirements, payouts.
#[utoipa::path(get, path = "/stores/{id}/account", tag = "connections",
    operation_id = "get_store_account",
    params(("id" = String, Path, description = "The store's id (`st_…`)")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 404, description = "No such store", body = ErrorBody),
    ))]
pub async fn account(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountView>> {
    Ok(Json(
        connections::account(&state.services, &store_id(&id)?).await?,
    ))
}
