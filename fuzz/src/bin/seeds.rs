//! Writes the seed corpus of every fuzz target into `corpus/<target>/` (or the directory given):
//! Stripe's example events of every type Bursar subscribes to, signed as Stripe signs them, and
//! the request bodies, forms, links and tokens the end-to-end tests send.

use std::path::{Path, PathBuf};

use bursar::domain::{OrderId, StoreId};
use bursar::service::links::{checkout_url, signed_connect_link};
use bursar::stripe::fixtures::{event, EventOptions};
use bursar::stripe::signature::sign;
use bursar_fuzz::{services, NOW, RETURN_PREFIX, SECRET};

// Built with the fuzz targets (`cargo fuzz build`, coverage-instrumented), it links libFuzzer's
// runtime like them; this empty target is what that runtime calls for, never run.
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("corpus"));
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut types = bursar::stripe::events::handled();
    types.extend(bursar::stripe::events::PLATFORM_EVENTS);
    types.sort();
    types.dedup();
    for t in types {
        for account in [None, Some("acct_1Nv0FGQ9RKHgCVdK".to_owned())] {
            let options = EventOptions {
                account,
                ..Default::default()
            };
            if let Some(e) = event(t, &options) {
                bodies.push(serde_json::to_vec(&e).unwrap());
            }
        }
    }
    bodies.push(
        br#"{"id":"evt_test_65R9Ijk5","object":"v2.core.event","type":"v2.core.account[requirements].updated","livemode":false,"created":"2026-01-01T00:00:00.000Z","context":null,"related_object":{"id":"acct_1Nv0FGQ9RKHgCVdK","type":"v2.core.account","url":"/v2/core/accounts/acct_1Nv0FGQ9RKHgCVdK"},"reason":null}"#
            .to_vec(),
    );

    let envelope = root.join("event_envelope");
    for (i, b) in bodies.iter().enumerate() {
        write(&envelope, &format!("event-{i:03}"), b);
    }

    let signature = root.join("signature_header");
    for (i, b) in bodies.iter().enumerate().step_by(4) {
        let header = sign(b, SECRET, NOW);
        // The seeds reach past the checks: a signed one verifies.
        let secrets = [secrecy::SecretString::from(SECRET)];
        let tolerance = std::time::Duration::from_secs(300);
        assert!(
            bursar::stripe::signature::verify(Some(&header), b, &secrets, tolerance, NOW).is_ok()
        );
        let v1 = header.split_once(",v1=").unwrap().1;
        let variants = [
            header.clone(),
            format!(
                "t={NOW},v1={},v1={v1},v0=6ffbb59b2300aae63f27",
                "0".repeat(64)
            ),
            format!(" t={NOW} , v1={v1} ,"),
            format!("t={},v1={v1}", NOW - 301),
            format!("t={NOW},t={NOW},v1={v1}"),
        ];
        for (j, h) in variants.iter().enumerate() {
            let mut seed = h.as_bytes().to_vec();
            seed.push(b'\n');
            seed.extend_from_slice(b);
            write(&signature, &format!("signed-{i:03}-{j}"), &seed);
        }
    }

    let api = root.join("api_bodies");
    let store = StoreId::generate();
    let other = StoreId::generate();
    let requests: [(u8, String); 8] = [
        (0, r#"{"name":"Corner Shop","external_id":"shop-42","metadata":{"plan":"pro"}}"#.into()),
        (0, r#"{"name":""}"#.into()),
        (1, r#"{"amount":2000,"currency":"usd","description":"Order 1","customer_id":"cus_NffrFeUfNV2Hib","application_fee_amount":100,"metadata":{"cart":"c_1"},"return_url":"https://app.example/done"}"#.into()),
        (1, r#"{"amount":10000,"currency":"eur","charge_type":"destination","on_behalf_of":true,"transfer_amount":7000}"#.into()),
        (1, r#"{"amount":50,"currency":"jpy"}"#.into()),
        (2, format!(r#"{{"amount":4000,"currency":"usd","splits":[{{"store_id":"{store}","amount":1500,"description":"part"}},{{"store_id":"{other}","amount":2000,"currency":"usd"}}]}}"#)),
        (2, format!(r#"{{"amount":100,"currency":"usd","splits":[{{"store_id":"{store}","amount":60}},{{"store_id":"{store}","amount":60}}]}}"#)),
        (3, r#"{"secret_key":"rk_test_51Nv0FGQ9RKHgCVdKabcdefghijklmnop","publishable_key":"pk_test_51Nv0FGQ9RKHgCVdKabcdefghijklmnop","webhook_secret":"whsec_abcdefghijklmnopqrstuvwxyz012345"}"#.into()),
    ];
    for (i, (pick, body)) in requests.iter().enumerate() {
        let mut seed = vec![*pick];
        seed.extend_from_slice(body.as_bytes());
        write(&api, &format!("body-{i}"), &seed);
    }

    let s = services();
    let link = signed_connect_link(
        s,
        &store,
        &format!("{RETURN_PREFIX}connected"),
        NOW + 3600 * 24 * 365 * 50,
    );
    let query = link.split_once('?').unwrap().1.to_owned();
    let bare = signed_connect_link(s, &store, "", NOW + 3600 * 24 * 365 * 50);
    let bare = bare.split_once('?').unwrap().1.to_owned();
    let forms = [
        format!("{query}&csrf=Zm9vYmFyYmF6cXV4&secret_key=rk_test_51Nv0FGQ9RKHgCVdKabc&publishable_key=pk_test_51Nv0FGQ9RKHgCVdKabc&webhook_secret=whsec_abc"),
        format!("{bare}&csrf=x&secret_key=sk_live_abc&publishable_key=pk_live_abc"),
        "store_id=st_x&expires=1&signature=a.b&csrf=&secret_key=".into(),
    ];
    let form_dir = root.join("key_entry_form");
    for (i, f) in forms.iter().enumerate() {
        write(&form_dir, &format!("form-{i}"), f.as_bytes());
    }

    let order = OrderId::generate();
    let checkout = checkout_url(s, order.as_str(), NOW + 3600 * 24 * 365 * 50);
    let token = checkout.rsplit_once("/checkout/").unwrap().1.to_owned();
    assert!(bursar::service::links::verify_checkout_token(s, &token).is_some());
    let links = root.join("signed_links");
    for (i, l) in [token, query, bare, format!("{order}.1.00")]
        .iter()
        .enumerate()
    {
        write(&links, &format!("link-{i}"), l.as_bytes());
    }
    println!("seed corpus written to {}", root.display());
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}
