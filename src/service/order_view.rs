//! The order as the API and notifications show it, and the notifications an order's change
//! causes (written in the transaction of the change).

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;

use super::notifications::emit;
use super::{Result, Services};
use crate::db::connections::ConnectionRow;
use crate::db::orders::{Merged, OrderRow};
use crate::db::transfers::TransferRow;
use crate::db::{self};
use crate::domain::notification::order_event;
use crate::domain::order::ChargedThrough;
use crate::domain::split::ChargeType;
use crate::domain::StoreId;
use crate::vault::Binding;

/// The vault field of an order's sealed PaymentIntent client secret (`db::secrets` lists it).
pub const CLIENT_SECRET_FIELD: &str = "client_secret";

pub(super) fn client_secret_binding(order: &str) -> Binding<'_> {
    Binding {
        table: "orders",
        row: order,
        field: CLIENT_SECRET_FIELD,
    }
}

/// A split of a multi-vendor order and its transfer to the store's account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TransferView {
    pub store_id: String,
    /// The store's split, in the currency's smallest unit.
    pub amount: i64,
    pub description: Option<String>,
    /// Stripe's transfer (`tr_…`), once made.
    pub transfer: Option<String>,
    /// `pending` (waiting for the payment, or being made), `created`, `partially_reversed`,
    /// `reversed`, `canceled` (refunded whole before it was made: nothing sent), or `failed`
    /// (Stripe refused: `failure_message` says why; a sync asks again).
    pub status: String,
    /// How much of the transfer has been reversed, as Stripe counts it.
    pub reversed_amount: i64,
    pub failure_message: Option<String>,
}

impl From<TransferRow> for TransferView {
    fn from(t: TransferRow) -> Self {
        // What refunds took off before the transfer was made counts as reversed.
        let reversed = t.amount_reversed + t.sent_amount.map_or(0, |sent| t.amount - sent);
        let status = match t.status.as_str() {
            "created" if reversed >= t.amount => "reversed",
            "created" if reversed > 0 => "partially_reversed",
            other => other,
        };
        TransferView {
            status: status.to_owned(),
            store_id: t.store_id,
            amount: t.amount,
            description: t.description,
            transfer: t.stripe_transfer_id,
            reversed_amount: reversed,
            failure_message: t.failure_message,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: String,
    pub object: &'static str,
    /// The store whose order it is; null for a multi-vendor order (see `transfers`).
    pub store_id: Option<String>,
    /// `direct` (on the store's account), `destination` (on the platform, Stripe transfers the
    /// store's share) or `separate` (a multi-vendor order: on the platform, one transfer per split).
    pub charge_type: String,
    /// A destination charge made on the connected account's behalf.
    pub on_behalf_of: bool,
    /// A destination charge's part for the store, when set instead of an application fee.
    pub transfer_amount: Option<i64>,
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub customer_id: Option<String>,
    pub application_fee_amount: Option<i64>,
    /// The platform's fee at Stripe (`fee_…`), once Stripe reported it.
    pub application_fee: Option<String>,
    /// How much of the platform's fee Stripe has refunded (a refund returns it in proportion).
    pub application_fee_refunded: i64,
    pub metadata: Value,
    pub status: String,
    /// What last moved the status: `webhook`, `reconcile` (an event fetched by `bursar
    /// reconcile`) or `sync` (a re-check at Stripe).
    pub status_source: Option<String>,
    pub amount_refunded: i64,
    pub failure: Option<Value>,
    pub dispute_status: Option<String>,
    pub payment_intent: Option<String>,
    /// For Stripe.js on the platform's own page: confirm with this and `publishable_key`
    /// (and `stripe_account` for a connected account's direct charge).
    pub client_secret: Option<String>,
    pub publishable_key: Option<String>,
    pub stripe_account: Option<String>,
    /// Bursar's hosted payment page for this order (valid a day).
    pub checkout_url: Option<String>,
    /// Where the hosted payment page's result offers the buyer a way back to the shop.
    pub return_url: Option<String>,
    /// When Bursar last re-checked the order at Stripe (unix seconds).
    pub synced_at: Option<i64>,
    /// A multi-vendor order's split per store and its transfer (in a store's order list, that
    /// store's split only); null for other orders.
    pub transfers: Option<Vec<TransferView>>,
    pub livemode: bool,
    pub created: i64,
}

/// The order as notifications carry it: the API's view without the client secret (a
/// notification is kept and re-sent; it need not hold what can confirm a payment).
pub(super) fn notification_view(
    s: &Services,
    row: OrderRow,
    connection: Option<&ConnectionRow>,
    transfers: Vec<TransferRow>,
) -> Result<OrderView> {
    let row = OrderRow {
        client_secret_enc: None,
        ..row
    };
    view(s, row, connection, transfers)
}

/// A multi-vendor order's transfers (none for other orders), read in `conn`.
pub(super) async fn transfers_of<'e>(
    ex: impl sqlx::Executor<'e, Database = sqlx::Any>,
    row: &OrderRow,
) -> Result<Vec<TransferRow>> {
    if row.charge_type() != ChargeType::Separate {
        return Ok(Vec::new());
    }
    Ok(db::transfers::for_order(ex, &row.id).await?)
}

/// The API's view of an order. A client secret the configured keys cannot open is an error
/// (the operator must restore the key), never a silent null.
pub(super) fn view(
    s: &Services,
    row: OrderRow,
    connection: Option<&ConnectionRow>,
    transfers: Vec<TransferRow>,
) -> Result<OrderView> {
    let client_secret = row
        .client_secret_enc
        .as_deref()
        .map(|enc| s.vault.open(enc, client_secret_binding(&row.id)))
        .transpose()?
        .map(|c| c.expose_secret().to_owned());
    let charge_type = row.charge_type();
    // The platform's key confirms a connected account's direct charge (with `stripe_account`)
    // and every charge on the platform itself; a keys store's own key confirms its charges.
    let connect = row.connection_kind == ChargedThrough::Connect;
    let publishable_key = if connect || charge_type.on_platform() {
        s.config.stripe.publishable_key.clone()
    } else {
        connection.and_then(|c| c.publishable_key.clone())
    };
    Ok(OrderView {
        failure: row
            .failure_code
            .as_ref()
            .map(|code| serde_json::json!({ "code": code, "message": row.failure_message })),
        metadata: serde_json::from_str(&row.metadata).unwrap_or_default(),
        stripe_account: (connect && !charge_type.on_platform()).then(|| row.account_id.clone()),
        transfers: (charge_type == ChargeType::Separate)
            .then(|| transfers.into_iter().map(TransferView::from).collect()),
        charge_type: charge_type.as_str().to_owned(),
        on_behalf_of: row.on_behalf_of != 0,
        transfer_amount: row.transfer_amount,
        checkout_url: row
            .payment_intent_id
            .as_ref()
            .map(|_| super::links::checkout_url(s, &row.id, row.created_at / 1000)),
        synced_at: row.synced_at.map(|t| t / 1000),
        return_url: row.return_url.clone(),
        livemode: row.mode.is_live(),
        created: row.created_at / 1000,
        id: row.id,
        object: "order",
        store_id: row.store_id,
        amount: row.amount,
        currency: row.currency,
        description: row.description,
        customer_id: row.customer_id,
        application_fee_amount: row.application_fee_amount,
        application_fee: row.application_fee_id,
        application_fee_refunded: row.application_fee_refunded,
        status: row.status,
        status_source: row.status_source,
        amount_refunded: row.amount_refunded,
        dispute_status: row.dispute_status,
        payment_intent: row.payment_intent_id,
        client_secret,
        publishable_key,
    })
}

/// After an order merge inside `conn`'s transaction: if what the platform is told of the
/// order changed (`Merged::told`), the notification is written in that same transaction.
pub async fn order_merged(
    s: &Services,
    conn: &mut AnyConnection,
    merged: Option<Merged>,
) -> Result<()> {
    let Some(Merged {
        order, told: true, ..
    }) = merged
    else {
        return Ok(());
    };
    let Some(event_type) = order_event(&order.status) else {
        return Ok(());
    };
    order_told(s, conn, order, event_type).await
}

/// Writes `event_type` about `order` (its API view, transfers included) in `conn`'s
/// transaction. A multi-vendor order is the platform's: it names no store.
pub(super) async fn order_told(
    s: &Services,
    conn: &mut AnyConnection,
    order: OrderRow,
    event_type: &str,
) -> Result<()> {
    let store = order.store_id.as_deref().map(StoreId::parse).transpose()?;
    let connection = match &store {
        Some(store) => db::connections::get(&mut *conn, store).await?,
        None => None,
    };
    let transfers = transfers_of(&mut *conn, &order).await?;
    let view = notification_view(s, order, connection.as_ref(), transfers)?;
    emit(conn, event_type, store.as_ref().map(StoreId::as_str), &view).await
}
