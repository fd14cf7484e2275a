//! A local server that speaks Stripe's HTTP API for the endpoints Bursar calls: real HTTP,
//! stateful (accounts and their keys), with faults injectable per test (status codes with or
//! without `Stripe-Should-Retry`, delays past the client's timeout). Objects start from
//! Stripe's own examples (fixtures/stripe/objects.json).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a Stripe error body.
    Status(u16),
    /// Answer with this status and `Stripe-Should-Retry: false`.
    StatusNoRetry(u16),
    /// Wait this long before answering normally.
    Delay(Duration),
    /// Answer with this status and this error message.
    Message(u16, String),
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub stripe_version: Option<String>,
    pub stripe_account: Option<String>,
    pub idempotency_key: Option<String>,
}

/// An account the simulator knows, with the keys that open it.
#[derive(Clone, Debug)]
pub struct SimAccount {
    pub id: String,
    pub secret_key: String,
    pub restricted_key: String,
    pub publishable_key: String,
}

/// A fault waiting for its requests: (method, path, only for this account, fault, times left).
type Injected = (Method, String, Option<String>, Fault, u32);

#[derive(Default)]
struct Sim {
    platform_key: String,
    accounts: Mutex<HashMap<String, Value>>,
    keys: Mutex<HashMap<String, String>>,
    faults: Mutex<Vec<Injected>>,
    requests: Mutex<Vec<Recorded>>,
}

#[derive(Clone)]
pub struct StripeSim {
    pub url: String,
    pub platform_key: String,
    sim: Arc<Sim>,
}

pub fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

impl StripeSim {
    pub async fn start() -> Self {
        let platform_key = format!("sk_test_platform{}", random(20));
        let sim = Arc::new(Sim {
            platform_key: platform_key.clone(),
            ..Default::default()
        });
        let app = Router::new()
            .route("/v1/account", get(current_account))
            .route("/v1/accounts/{id}", get(account_by_id))
            .fallback(|uri: Uri| async move {
                error(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    &format!("Unrecognized request URL (GET: {}).", uri.path()),
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                sim.clone(),
                record_and_fault,
            ))
            .with_state(sim.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            platform_key,
            sim,
        }
    }

    /// A new account (Stripe's example account with a fresh id) and keys in `mode`.
    pub fn add_account(&self, live: bool) -> SimAccount {
        let mode = if live { "live" } else { "test" };
        let id = format!("acct_1{}", random(15));
        let mut account = bursar::stripe::fixtures::object("account").unwrap();
        account["id"] = json!(id);
        let a = SimAccount {
            secret_key: format!("sk_{mode}_{}", random(24)),
            restricted_key: format!("rk_{mode}_{}", random(24)),
            publishable_key: format!("pk_{mode}_{}", random(24)),
            id: id.clone(),
        };
        self.sim
            .accounts
            .lock()
            .unwrap()
            .insert(id.clone(), account);
        let mut keys = self.sim.keys.lock().unwrap();
        keys.insert(a.secret_key.clone(), id.clone());
        keys.insert(a.restricted_key.clone(), id);
        a
    }

    /// The same account's keys in the other mode (an account has one id in test and live mode).
    pub fn keys_in_other_mode(&self, account: &SimAccount) -> SimAccount {
        let live = account.secret_key.starts_with("sk_test_");
        let mode = if live { "live" } else { "test" };
        let other = SimAccount {
            id: account.id.clone(),
            secret_key: format!("sk_{mode}_{}", random(24)),
            restricted_key: format!("rk_{mode}_{}", random(24)),
            publishable_key: format!("pk_{mode}_{}", random(24)),
        };
        let mut keys = self.sim.keys.lock().unwrap();
        keys.insert(other.secret_key.clone(), other.id.clone());
        keys.insert(other.restricted_key.clone(), other.id.clone());
        other
    }

    /// Changes an account's state, as the Dashboard or onboarding would.
    pub fn update_account(&self, id: &str, f: impl FnOnce(&mut Value)) {
        f(self
            .sim
            .accounts
            .lock()
            .unwrap()
            .get_mut(id)
            .expect("known account"));
    }

    /// The next `times` requests to `method path` meet `fault`.
    pub fn fail(&self, method: Method, path: &str, fault: Fault, times: u32) {
        self.sim
            .faults
            .lock()
            .unwrap()
            .push((method, path.to_owned(), None, fault, times));
    }

    /// The same, only for requests acting on `account` (by its key or `Stripe-Account`).
    pub fn fail_for(&self, account: &str, method: Method, path: &str, fault: Fault, times: u32) {
        self.sim.faults.lock().unwrap().push((
            method,
            path.to_owned(),
            Some(account.to_owned()),
            fault,
            times,
        ));
    }

    pub fn clear_faults(&self) {
        self.sim.faults.lock().unwrap().clear();
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.sim
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn record_and_fault(
    State(sim): State<Arc<Sim>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let recorded = {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Recorded {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            stripe_version: header("Stripe-Version"),
            stripe_account: header("Stripe-Account"),
            idempotency_key: header("Idempotency-Key"),
        }
    };
    sim.requests.lock().unwrap().push(recorded);
    let acting_on = authorize(&sim, req.headers()).ok().flatten();
    let fault = {
        let mut faults = sim.faults.lock().unwrap();
        let hit = faults.iter_mut().find(|(m, p, only, _, left)| {
            m == req.method()
                && p == req.uri().path()
                && *left > 0
                && (only.is_none() || *only == acting_on)
        });
        hit.map(|(_, _, _, f, left)| {
            *left -= 1;
            f.clone()
        })
    };
    match fault {
        Some(Fault::Status(code)) => simulated(code, None),
        Some(Fault::StatusNoRetry(code)) => simulated(code, Some("false")),
        Some(Fault::Message(code, text)) => error(
            StatusCode::from_u16(code).unwrap(),
            "invalid_request_error",
            &text,
        ),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        None => next.run(req).await,
    }
}

fn simulated(code: u16, should_retry: Option<&'static str>) -> Response {
    let status = StatusCode::from_u16(code).unwrap();
    let kind = if code == 429 {
        "rate_limit_error"
    } else if code >= 500 {
        "api_error"
    } else {
        "invalid_request_error"
    };
    let mut r = error(
        status,
        kind,
        "Simulated failure from the local Stripe server.",
    );
    if let Some(v) = should_retry {
        r.headers_mut()
            .insert("Stripe-Should-Retry", v.parse().unwrap());
    }
    r
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

/// Resolves the caller's key and `Stripe-Account` to the account it may act on.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    let key = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let on_behalf = headers.get("Stripe-Account").and_then(|v| v.to_str().ok());
    if key == sim.platform_key {
        return Ok(on_behalf.map(str::to_owned));
    }
    match sim.keys.lock().unwrap().get(key) {
        Some(_) if on_behalf.is_some() => Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "The provided key does not have access to the account specified in the Stripe-Account header.",
        ))),
        Some(account) => Ok(Some(account.clone())),
        None => {
            let masked = if key.len() > 12 { format!("{}{}{}", &key[..8], "*".repeat(key.len() - 12), &key[key.len() - 4..]) } else { "****".into() };
            Err(Box::new(error(StatusCode::UNAUTHORIZED, "invalid_request_error", &format!("Invalid API Key provided: {masked}"))))
        }
    }
}

async fn current_account(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    match authorize(&sim, &headers) {
        Err(r) => *r,
        Ok(None) => Json(json!({"id": "acct_platform", "object": "account", "charges_enabled": true, "payouts_enabled": true})).into_response(),
        Ok(Some(id)) => match sim.accounts.lock().unwrap().get(&id) {
            Some(a) => Json(a.clone()).into_response(),
            None => error(StatusCode::FORBIDDEN, "invalid_request_error", "No such account."),
        },
    }
}

async fn account_by_id(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&sim, &headers) {
        return *r;
    }
    match sim.accounts.lock().unwrap().get(&id) {
        Some(a) => Json(a.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            &format!("No such account: '{id}'"),
        ),
    }
}
