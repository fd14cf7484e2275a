//! Stores: create, read, list, delete.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Result, ServiceError, Services};
use crate::db::{self, stores::StoreRow, DbError};
use crate::domain::store::{ExternalId, Metadata, StoreName};
use crate::domain::StoreId;

pub struct NewStore {
    pub name: StoreName,
    pub external_id: Option<ExternalId>,
    pub metadata: Metadata,
}

impl NewStore {
    pub fn parse(
        name: &str,
        external_id: Option<&str>,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Result<Self> {
        Ok(Self {
            name: StoreName::parse(name)?,
            external_id: external_id.map(ExternalId::parse).transpose()?,
            metadata: Metadata::parse(metadata.unwrap_or_default())?,
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoreView {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub external_id: Option<String>,
    pub metadata: serde_json::Value,
    pub created: i64,
}

impl From<StoreRow> for StoreView {
    fn from(r: StoreRow) -> Self {
        Self {
            id: r.id,
            object: "store",
            name: r.name,
            external_id: r.external_id,
            metadata: serde_json::from_str(&r.metadata).unwrap_or_default(),
            created: r.created_at / 1000,
        }
    }
}

pub async fn create(s: &Services, new: NewStore) -> Result<StoreView> {
    let id = StoreId::generate();
    match db::stores::insert(
        &s.db,
        &id,
        &new.name,
        new.external_id.as_ref(),
        &new.metadata,
    )
    .await
    {
        Ok(row) => Ok(row.into()),
        Err(DbError::Conflict(_)) => Err(ServiceError::Conflict {
            code: "external_id_taken",
            message: "a store with this external_id already exists".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(s: &Services, id: &StoreId) -> Result<StoreView> {
    Ok(require(s, id).await?.into())
}

/// The store row, or `NotFound`: the first check of every store-scoped operation.
pub async fn require(s: &Services, id: &StoreId) -> Result<StoreRow> {
    db::stores::get(&s.db, id)
        .await?
        .ok_or(ServiceError::NotFound("store"))
}

pub struct Page {
    pub data: Vec<StoreView>,
    pub next_cursor: Option<String>,
}

pub async fn list(s: &Services, after: Option<&StoreId>, limit: i64) -> Result<Page> {
    Ok(page(
        db::stores::list(&s.db, after, limit + 1).await?,
        limit,
    ))
}

/// Stores whose name contains `text` (ASCII letters in any case), or whose external id or id
/// is `text`, paged as `list` is.
pub async fn search(s: &Services, text: &str, after: Option<&StoreId>, limit: i64) -> Result<Page> {
    Ok(page(
        db::stores::search(&s.db, text, after, limit + 1).await?,
        limit,
    ))
}

/// A page of at most `limit` of `rows` (read with one more, to know whether more follow).
fn page(mut rows: Vec<StoreRow>, limit: i64) -> Page {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Page {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }
}
