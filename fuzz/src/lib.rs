//! The fuzzed entry points: each takes the fuzzer's bytes through one of Bursar's parsers at the
//! edge (the same functions and extractors the server runs) and checks what must hold whatever
//! the input: no panic, a client error rather than a server error, and nothing accepted that
//! was not signed.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use secrecy::SecretString;

use bursar::config::Config;
use bursar::service::Services;

/// The webhook secret the seeds are signed with.
pub const SECRET: &str = "whsec_fuzzing_secret";
/// The clock the signature target runs at, so that signed seeds are within the tolerance.
pub const NOW: i64 = 1_767_225_600;
/// The platform the link targets verify against: its master key is fixed so seeds stay valid.
pub const MASTER_KEY: &str = "kfuzz:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const PUBLIC_URL: &str = "https://bursar.example";
pub const RETURN_PREFIX: &str = "https://app.example/";

/// `header` `\n` `body`: the `Stripe-Signature` header and the raw body it signs.
pub fn signature_header(data: &[u8]) {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let header = std::str::from_utf8(header).ok();
    let secrets = [SecretString::from(SECRET)];
    let tolerance = Duration::from_secs(300);
    let verified = bursar::stripe::signature::verify(header, body, &secrets, tolerance, NOW);
    if verified.is_ok() {
        // An independent reading of the header: its one `t` is within the tolerance, and one of
        // its v1 values is the body's own signature at that time.
        let items: Vec<(&str, &str)> = header
            .unwrap()
            .split(',')
            .filter_map(|i| i.trim().split_once('='))
            .collect();
        let t: i64 = items
            .iter()
            .find(|(k, _)| *k == "t")
            .and_then(|(_, v)| v.parse().ok())
            .expect("a verified header has a timestamp");
        assert!(NOW.abs_diff(t) <= tolerance.as_secs());
        let expected = bursar::stripe::signature::sign(body, SECRET, t);
        let expected = expected.split_once(",v1=").unwrap().1;
        assert!(
            items
                .iter()
                .any(|(k, v)| *k == "v1" && v.eq_ignore_ascii_case(expected)),
            "verified without the body's signature"
        );
    }
}

/// A webhook body as the door reads it: a v1 snapshot or a v2 thin event.
pub fn event_envelope(data: &[u8]) {
    if let Ok(e) = bursar::stripe::event::Envelope::parse(data) {
        let ok =
            |s: &str| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
        assert!(ok(&e.id) && ok(&e.event_type), "{e:?}");
        assert!(
            e.account.as_deref().is_none_or(|a| a.starts_with("acct_")),
            "{e:?}"
        );
    }
}

/// The first byte picks a request body type, the rest is the JSON body: each goes through the
/// API's own extractor (`JsonBody`) and, for orders, into its domain types (`TryFrom`). A refusal
/// must be a client error.
pub fn api_bodies(data: &[u8]) {
    use bursar::http::api::{connection::KeysIn, orders, stores::StoreIn};
    use bursar::http::extract::JsonBody;
    use bursar::service::marketplace::MultiVendorInput;
    use bursar::service::orders::OrderInput;

    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let req = || {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/x")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_vec()))
            .unwrap()
    };
    let client_error = |status: StatusCode| {
        assert!(status.is_client_error(), "{status} for a request body");
    };
    futures::executor::block_on(async {
        match pick % 4 {
            0 => {
                if let Err(e) = JsonBody::<StoreIn>::from_request(req(), &()).await {
                    client_error(e.into_response().status());
                }
            }
            1 => match JsonBody::<orders::OrderIn>::from_request(req(), &()).await {
                Ok(JsonBody(o)) => {
                    if let Err(e) = OrderInput::try_from(o) {
                        client_error(e.into_response().status());
                    }
                }
                Err(e) => client_error(e.into_response().status()),
            },
            2 => match JsonBody::<orders::MultiVendorOrderIn>::from_request(req(), &()).await {
                Ok(JsonBody(o)) => match MultiVendorInput::try_from(o) {
                    Ok(input) => {
                        let total: i64 = input.splits.iter().map(|s| s.amount).sum();
                        assert!(total <= input.amount, "splits over the order's amount");
                    }
                    Err(e) => client_error(e.into_response().status()),
                },
                Err(e) => client_error(e.into_response().status()),
            },
            _ => {
                if let Err(e) = JsonBody::<KeysIn>::from_request(req(), &()).await {
                    client_error(e.into_response().status());
                }
            }
        }
    });
}

/// The key-entry page's form, through the pages' own extractor: a refusal is a client error;
/// the link it carries is verified as the page does.
pub fn key_entry_form(data: &[u8]) {
    use bursar::http::pages::connect::ConnectForm;
    use bursar::http::pages::PageForm;
    use bursar::service::links::{verify_connect_link, ConnectLinkParams};

    let req = || {
        Request::builder()
            .method(Method::POST)
            .uri("/stripe/connect")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(data.to_vec()))
            .unwrap()
    };
    futures::executor::block_on(async {
        if let Err(r) = PageForm::<ConnectForm>::from_request(req(), &()).await {
            assert!(r.status().is_client_error(), "{}", r.status());
        }
        if let Ok(PageForm(params)) = PageForm::<ConnectLinkParams>::from_request(req(), &()).await
        {
            if let Ok(link) = verify_connect_link(services(), &params) {
                // Only a link this platform signed verifies, and it names a real store id.
                assert_eq!(Some(link.store.as_str()), params.store_id.as_deref());
                assert!(link.return_url.is_empty() || link.return_url.starts_with(RETURN_PREFIX));
            }
        }
    });
}

/// A checkout page's token (`<order>.<expiry>.<mac>`) and a key-entry link's query string.
pub fn signed_links(data: &[u8]) {
    use bursar::service::links::{verify_checkout_token, verify_connect_link, ConnectLinkParams};

    if let Ok(token) = std::str::from_utf8(data) {
        if let Some(order) = verify_checkout_token(services(), token) {
            assert!(token.starts_with(order.as_str()), "{token}");
        }
        if let Ok(params) = serde_urlencoded_params(token) {
            if let Ok(link) = verify_connect_link(services(), &params) {
                assert_eq!(Some(link.store.as_str()), params.store_id.as_deref());
            }
        }
    }

    fn serde_urlencoded_params(query: &str) -> Result<ConnectLinkParams, ()> {
        let uri: axum::http::Uri = format!("/stripe/connect?{query}").parse().map_err(drop)?;
        axum::extract::Query::<ConnectLinkParams>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(drop)
    }
}

/// One platform for the link targets, on a throwaway SQLite database (the verifiers read only
/// the configuration and the vault).
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<(Services, tempfile::TempDir)> = OnceLock::new();
    &SERVICES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
            let vars = [
                ("BURSAR_DATABASE_URL", url.as_str()),
                ("BURSAR_MASTER_KEYS", MASTER_KEY),
                ("BURSAR_PUBLIC_URL", PUBLIC_URL),
                ("BURSAR_RETURN_URL_ALLOWLIST", RETURN_PREFIX),
            ];
            let lookup = |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            };
            let config = Config::from_lookup(lookup, None).expect("the fuzzing configuration");
            let db = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(bursar::db::Db::open(&url))
                .unwrap();
            (Services::new(std::sync::Arc::new(config), db), dir)
        })
        .0
}
