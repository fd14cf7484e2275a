//! Per-object watermarks: an event is applied to an object only if it is not older than the
//! newest event already applied to it, so late or reordered deliveries never move it back.

use sqlx::{Any, Executor};

use super::Result;

/// Records `(created, seq)` as the object's newest event and returns true, or returns false
/// when a newer event was already applied. Equal `created` seconds fall back to arrival order.
pub async fn advance<'e>(
    ex: impl Executor<'e, Database = Any>,
    owner: &str,
    object_id: &str,
    created: i64,
    seq: i64,
) -> Result<bool> {
    let row = sqlx::query_scalar::<_, i64>(
        "INSERT INTO object_versions (owner, object_id, stripe_created, event_seq) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (owner, object_id) DO UPDATE SET stripe_created = excluded.stripe_created, event_seq = excluded.event_seq \
         WHERE excluded.stripe_created > object_versions.stripe_created \
            OR (excluded.stripe_created = object_versions.stripe_created AND excluded.event_seq > object_versions.event_seq) \
         RETURNING event_seq",
    )
    .bind(owner)
    .bind(object_id)
    .bind(created)
    .bind(seq)
    .fetch_optional(ex)
    .await?;
    Ok(row.is_some())
}
