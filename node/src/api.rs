//! The control API: HTTP/JSON on loopback (axum), guarded by the bearer token in `api.token`.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /v1/status` | [`model::Status`] |
//! | `GET /v1/peers` | `[model::Peer]` |
//! | `POST /v1/dht/provide` `{"key"}` | [`model::Provided`] |
//! | `GET /v1/dht/providers?key=&limit=` | [`model::Providers`] |
//! | `GET /v1/dht/record?key=` | [`model::RecordReply`] |
//! | `POST /v1/dial` `{"addr"}` | `{}` |
//! | `GET /metrics` | Prometheus text (no token: it holds no secrets and binds loopback) |
//!
//! Errors are `{"error": "..."}` with 400 (bad input), 401 (token), 404 (nothing found),
//! 503 (node shutting down) or 504 (timed out).

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Query, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::{model, records::user_key, swarm::Command};

#[derive(Clone)]
pub(crate) struct ApiState {
    pub commands: mpsc::Sender<Command>,
    pub token: Arc<str>,
    pub registry: Arc<Registry>,
    pub timeout: Duration,
}

pub(crate) fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/dht/provide", post(provide))
        .route("/v1/dht/providers", get(providers))
        .route("/v1/dht/record", get(record))
        .route("/v1/dial", post(dial))
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(v1)
        .route("/metrics", get(metrics))
        .with_state(state)
}

struct ApiErr(StatusCode, String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, Json(model::ApiError { error: self.1 })).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiErr {
    ApiErr(StatusCode::BAD_REQUEST, msg.into())
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.as_bytes(), s.token.as_bytes()));
    if !ok {
        return ApiErr(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token".into(),
        )
        .into_response();
    }
    next.run(req).await
}

async fn ask<T>(
    s: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiErr> {
    let (tx, rx) = oneshot::channel();
    s.commands.send(make(tx)).await.map_err(|_| {
        ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            "node is shutting down".into(),
        )
    })?;
    tokio::time::timeout(s.timeout, rx)
        .await
        .map_err(|_| ApiErr(StatusCode::GATEWAY_TIMEOUT, "timed out".into()))?
        .map_err(|_| {
            ApiErr(
                StatusCode::SERVICE_UNAVAILABLE,
                "node is shutting down".into(),
            )
        })
}

async fn status(State(s): State<ApiState>) -> Result<Json<model::Status>, ApiErr> {
    Ok(Json(ask(&s, Command::Status).await?))
}

async fn peers(State(s): State<ApiState>) -> Result<Json<Vec<model::Peer>>, ApiErr> {
    Ok(Json(ask(&s, Command::Peers).await?))
}

async fn provide(
    State(s): State<ApiState>,
    Json(req): Json<model::ProvideRequest>,
) -> Result<Json<model::Provided>, ApiErr> {
    let key = parse_key(&req.key)?;
    let reg = crate::records::registry();
    reg.check_provider(&key.to_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let r = ask(&s, |reply| Command::Provide { key, reply }).await?;
    r.map(Json)
        .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, e))
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
    limit: Option<usize>,
}

fn parse_key(k: &str) -> Result<leafnet_wire::DhtKey, ApiErr> {
    let key = user_key(k).map_err(|e| bad(format!("bad key '{k}': {e}")))?;
    let reg = crate::records::registry();
    if !reg.namespaces().contains(&key.namespace.as_str()) {
        return Err(bad(format!(
            "unknown key namespace '{}' (known: {})",
            key.namespace,
            reg.namespaces().join(", ")
        )));
    }
    Ok(key)
}

async fn providers(
    State(s): State<ApiState>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<model::Providers>, ApiErr> {
    let key = parse_key(&q.key)?;
    crate::records::registry()
        .check_provider(&key.to_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let r = ask(&s, |reply| Command::Providers { key, limit, reply }).await?;
    r.map(Json)
        .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn record(
    State(s): State<ApiState>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<model::RecordReply>, ApiErr> {
    let key = parse_key(&q.key)?;
    let r = ask(&s, |reply| Command::GetRecord { key, reply }).await?;
    r.map(Json).map_err(|e| ApiErr(StatusCode::NOT_FOUND, e))
}

#[derive(Deserialize)]
struct DialReq {
    addr: String,
}

async fn dial(
    State(s): State<ApiState>,
    Json(req): Json<DialReq>,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let addr = req
        .addr
        .parse()
        .map_err(|e| bad(format!("'{}' is not a multiaddr: {e}", req.addr)))?;
    let r = ask(&s, |reply| Command::Dial { addr, reply }).await?;
    r.map(|()| Json(serde_json::json!({})))
        .map_err(|e| ApiErr(StatusCode::BAD_GATEWAY, e))
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let mut buf = String::new();
    if prometheus_client::encoding::text::encode(&mut buf, &s.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        buf,
    )
        .into_response()
}
