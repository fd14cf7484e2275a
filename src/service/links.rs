//! Signed links: the merchant key-entry link (`/stripe/connect?…&signature=…`), OAuth `state`
//! values and Bursar's own Account Link refresh URLs, plus the return-URL allow-list that keeps
//! every one of them from being an open redirect.

use rand::Rng;
use url::Url;

use super::{stores, Result, ServiceError, Services};
use crate::db::{self, grants::GrantRow, grants::NewGrant, now_ms};
use crate::domain::StoreId;

/// Signature purposes, so one kind of signed value never passes for another.
const CONNECT_LINK: &str = "connect-link";
const GRANT: &str = "grant";
const CHECKOUT: &str = "checkout";

/// How long an order's hosted payment link works after the order is created.
pub const CHECKOUT_TTL_SECS: i64 = 86_400;

/// How long a merchant key-entry link is valid unless the caller says otherwise, and at most.
pub const CONNECT_LINK_TTL_SECS: i64 = 3600;
pub const CONNECT_LINK_MAX_TTL_SECS: i64 = 7 * 86_400;

/// 32 random alphanumerics (~190 bits): nonces, CSRF tokens.
pub fn random_token() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Why a signed link or state was refused. The message is for the person holding the link.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("this link is not signed; ask the platform for a new one")]
    Unsigned,
    #[error("this link has expired; ask the platform for a new one")]
    Expired,
    #[error("this link is not valid (it was altered or not made by this platform)")]
    Tampered,
    #[error("this link was already used; start again from the platform")]
    Used,
}

/// A return URL the allow-list accepts: an absolute http(s) URL with the scheme, host and port
/// of an entry and a path under the entry's path (segment-wise, so `https://a.example/shop`
/// does not admit `https://a.example/shopping` nor `https://a.example.evil.com`).
pub fn check_return_url(s: &Services, raw: &str) -> Result<Url> {
    let refused = |why: &str| ServiceError::Refused {
        code: "return_url_not_allowed",
        message: format!(
            "return_url {why}; allowed prefixes are set in BURSAR_RETURN_URL_ALLOWLIST"
        ),
    };
    let url = Url::parse(raw).map_err(|_| refused("is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(refused("must be a plain http(s) URL"));
    }
    let allowed = s.config.return_url_allowlist.iter().any(|entry| {
        let Ok(prefix) = Url::parse(entry) else {
            return false;
        };
        let base = prefix.path().trim_end_matches('/');
        prefix.scheme() == url.scheme()
            && prefix.host_str() == url.host_str()
            && prefix.port_or_known_default() == url.port_or_known_default()
            && (url.path() == base
                || url.path().starts_with(&format!("{base}/"))
                || base.is_empty())
    });
    let local = s.config.allow_local_return_urls
        && url.scheme() == "http"
        && matches!(url.host_str(), Some("127.0.0.1" | "localhost"));
    if allowed || local {
        Ok(url)
    } else {
        Err(refused("is not on the allow-list"))
    }
}

fn public(s: &Services, path: &str) -> Url {
    let base = s.config.public_url.trim_end_matches('/');
    Url::parse(&format!("{base}{path}")).expect("BURSAR_PUBLIC_URL was checked at start")
}

fn connect_message(store: &str, return_url: &str, expires: i64, nonce: &str) -> String {
    format!("{store}\n{return_url}\n{expires}\n{nonce}")
}

/// A signed key-entry link for a store, valid `ttl_secs`.
pub async fn connect_link(
    s: &Services,
    store: &StoreId,
    return_url: Option<&str>,
    ttl_secs: Option<i64>,
) -> Result<(String, i64)> {
    stores::require(s, store).await?;
    let ttl = ttl_secs.unwrap_or(CONNECT_LINK_TTL_SECS);
    if !(60..=CONNECT_LINK_MAX_TTL_SECS).contains(&ttl) {
        return Err(ServiceError::Refused {
            code: "invalid_request",
            message: format!(
                "expires_in must be between 60 and {CONNECT_LINK_MAX_TTL_SECS} seconds"
            ),
        });
    }
    let return_url = return_url
        .map(|u| check_return_url(s, u).map(String::from))
        .transpose()?
        .unwrap_or_default();
    let expires = now_ms() / 1000 + ttl;
    Ok((signed_connect_link(s, store, &return_url, expires), expires))
}

/// The link itself, signed over store, return URL, expiry (unix seconds) and a nonce, so that
/// every link is a link of its own (links are single-use: two made in the same second for the
/// same store must not share a fate). The signature is `<nonce>.<mac>`. `connect_link` checks
/// its inputs first; this only signs.
pub fn signed_connect_link(
    s: &Services,
    store: &StoreId,
    return_url: &str,
    expires: i64,
) -> String {
    let nonce = random_token();
    let mac = s.vault.sign(
        CONNECT_LINK,
        &connect_message(store.as_str(), return_url, expires, &nonce),
    );
    let signature = format!("{nonce}.{mac}");
    let mut url = public(s, "/stripe/connect");
    url.query_pairs_mut()
        .append_pair("store_id", store.as_str())
        .append_pair("return_url", return_url)
        .append_pair("expires", &expires.to_string())
        .append_pair("signature", &signature);
    url.into()
}

/// A key-entry link's parameters, as the page received them.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct ConnectLinkParams {
    pub store_id: Option<String>,
    pub return_url: Option<String>,
    pub expires: Option<String>,
    pub signature: Option<String>,
}

/// A verified key-entry link.
#[derive(Debug, Clone)]
pub struct ConnectLink {
    pub store: StoreId,
    /// Empty when the merchant lands on Bursar's own success page.
    pub return_url: String,
    /// What makes the link single-use: the nonce its signature covers (the MAC's spelling,
    /// hex in either case, does not make another link).
    nonce: String,
    expires_at: i64,
}

impl ConnectLink {
    /// Whether the link already saved keys: a link connects a store once, then never again,
    /// even after the store disconnects (a leaked link cannot reconnect it elsewhere).
    pub async fn spent(&self, s: &Services) -> Result<bool> {
        Ok(db::grants::connect_link_spent(&s.db, &self.nonce).await?)
    }

    /// Spends the link before its keys are saved; false if it was spent already.
    pub async fn spend(&self, s: &Services) -> Result<bool> {
        Ok(
            db::grants::spend_connect_link(&s.db, &self.nonce, &self.store, self.expires_at * 1000)
                .await?,
        )
    }

    /// Gives the link back after its keys were refused, so the merchant can correct them.
    pub async fn unspend(&self, s: &Services) -> Result<()> {
        Ok(db::grants::unspend_connect_link(&s.db, &self.nonce).await?)
    }
}

/// Checks signature, expiry and (again, in case the allow-list shrank) the return URL.
pub fn verify_connect_link(
    s: &Services,
    p: &ConnectLinkParams,
) -> std::result::Result<ConnectLink, LinkError> {
    let (Some(store), Some(expires), Some(signature)) = (&p.store_id, &p.expires, &p.signature)
    else {
        return Err(LinkError::Unsigned);
    };
    let return_url = p.return_url.clone().unwrap_or_default();
    let expires_at: i64 = expires.parse().map_err(|_| LinkError::Tampered)?;
    let (nonce, mac) = signature.split_once('.').ok_or(LinkError::Tampered)?;
    if !s.vault.verify(
        CONNECT_LINK,
        &connect_message(store, &return_url, expires_at, nonce),
        mac,
    ) {
        return Err(LinkError::Tampered);
    }
    if expires_at < now_ms() / 1000 {
        return Err(LinkError::Expired);
    }
    if !return_url.is_empty() && check_return_url(s, &return_url).is_err() {
        return Err(LinkError::Tampered);
    }
    Ok(ConnectLink {
        store: StoreId::parse(store).map_err(|_| LinkError::Tampered)?,
        return_url,
        nonce: nonce.to_owned(),
        expires_at,
    })
}

/// Where a grant's token is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A Standard OAuth `state`: single-use, 15 minutes.
    OAuthState,
    /// Bursar's refresh URL for an Account Link: single-use, a week.
    LinkRefresh,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::OAuthState => "oauth_state",
            Purpose::LinkRefresh => "link_refresh",
        }
    }

    pub fn ttl_ms(self) -> i64 {
        match self {
            Purpose::OAuthState => 15 * 60 * 1000,
            Purpose::LinkRefresh => 7 * 86_400 * 1000,
        }
    }
}

/// The row is authoritative for expiry and use; the signature binds the token to its purpose
/// and store, so a token is worthless without its row and a row cannot be re-pointed.
fn grant_message(nonce: &str, purpose: &str, store: &str) -> String {
    format!("{nonce}\n{purpose}\n{store}")
}

/// A new grant for `store`, saved before its token leaves Bursar; the token is
/// `<nonce>.<signature>` and says nothing about the store by itself.
pub async fn issue_grant(
    s: &Services,
    store: &StoreId,
    purpose: Purpose,
    return_url: Option<&str>,
) -> Result<String> {
    let nonce = random_token();
    let expires_at = now_ms() + purpose.ttl_ms();
    db::grants::insert(
        &s.db,
        &NewGrant {
            nonce: &nonce,
            store,
            purpose: purpose.as_str(),
            return_url,
            expires_at,
        },
    )
    .await?;
    let tag = s.vault.sign(
        GRANT,
        &grant_message(&nonce, purpose.as_str(), store.as_str()),
    );
    Ok(format!("{nonce}.{tag}"))
}

/// The grant behind a token: known, signed for this purpose and store, unexpired, and spent
/// now, by this caller only.
pub async fn redeem_grant(
    s: &Services,
    token: &str,
    purpose: Purpose,
) -> Result<std::result::Result<GrantRow, LinkError>> {
    let Some((nonce, tag)) = token.split_once('.') else {
        return Ok(Err(LinkError::Tampered));
    };
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(Err(LinkError::Tampered));
    }
    let Some(grant) = db::grants::get(&s.db, nonce).await? else {
        return Ok(Err(LinkError::Tampered));
    };
    let message = grant_message(nonce, &grant.purpose, &grant.store_id);
    if grant.purpose != purpose.as_str() || !s.vault.verify(GRANT, &message, tag) {
        return Ok(Err(LinkError::Tampered));
    }
    if grant.expires_at < now_ms() {
        return Ok(Err(LinkError::Expired));
    }
    // Single-use, both: a refresh mints the next link with a new grant of its own.
    if !db::grants::spend(&s.db, nonce).await? {
        return Ok(Err(LinkError::Used));
    }
    Ok(Ok(grant))
}

/// An order's hosted payment page: `/checkout/<order id>.<expiry>.<HMAC of both>`.
pub fn checkout_url(s: &Services, order_id: &str, created_secs: i64) -> String {
    let expires = created_secs + CHECKOUT_TTL_SECS;
    let tag = s.vault.sign(CHECKOUT, &format!("{order_id}\n{expires}"));
    public(s, &format!("/checkout/{order_id}.{expires}.{tag}")).into()
}

/// The order a checkout token names, if it is signed by this platform and unexpired.
pub fn verify_checkout_token(s: &Services, token: &str) -> Option<crate::domain::OrderId> {
    let mut parts = token.splitn(3, '.');
    let (Some(order), Some(expires), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let expires_at: i64 = expires.parse().ok()?;
    if !s
        .vault
        .verify(CHECKOUT, &format!("{order}\n{expires_at}"), tag)
        || expires_at < now_ms() / 1000
    {
        return None;
    }
    crate::domain::OrderId::parse(order).ok()
}
