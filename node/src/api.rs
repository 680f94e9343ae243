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
//! | `POST /v1/profile` [`model::SetProfile`] | [`model::Published`] |
//! | `GET /v1/profile/{account}` | [`model::Profile`] |
//! | `POST /v1/profiles/host` [`model::HostProfile`] | [`model::Published`] |
//! | `GET /v1/profiles/near?lat=&lon=&radius_m=&name=&kind=&service=&limit=` | [`model::Near`] |
//! | `GET /v1/nodes/near?lat=&lon=&limit=` | [`model::NodesNear`] |
//! | `POST /v1/mint/observe` [`model::ObserveRequest`] | [`model::Observed`] |
//! | `GET /v1/mint/status?issuer=` | [`model::MintStatus`] |
//! | `GET /v1/mint/proofs` | `[model::MintProof]` |
//! | `GET /v1/relays` | [`model::Relays`] |
//! | `GET /v1/leaf/account` | [`model::LeafAccount`] |
//! | `POST /v1/leaf/account/close` | [`model::LeafAccount`] |
//! | `POST /v1/leaf/pay` [`model::PayRequest`] | [`model::Payment`] |
//! | `GET /v1/leaf/history` | `[model::HistoryEntry]` |
//! | `GET /v1/leaf/chain` | [`model::Chain`] |
//! | `POST /v1/leaf/seen` [`model::SeenRequest`] | [`model::Seen`] |
//! | `POST /v1/leaf/certify` [`model::CertifyRequest`] | [`model::Certified`] |
//! | `GET /v1/leaf/certs/{account}` | [`model::Certs`] |
//! | `POST /v1/leaf/buy` [`model::BuyRequest`] | [`model::Bought`] |
//! | `GET /v1/leaf/equivocators` | `[model::Equivocator]` |
//! | `GET /v1/leaf/receipt/{id}` | [`model::Receipt`] |
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

use crate::{
    flows::{BadInput, NotFound},
    model,
    records::user_key,
    swarm::Command,
};

#[derive(Clone)]
pub(crate) struct ApiState {
    pub ctx: crate::flows::Ctx,
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
        .route("/v1/profile", post(set_profile))
        .route("/v1/profile/{account}", get(get_profile))
        .route("/v1/profiles/host", post(host_profile))
        .route("/v1/profiles/near", get(profiles_near))
        .route("/v1/nodes/near", get(nodes_near))
        .route("/v1/mint/observe", post(mint_observe))
        .route("/v1/mint/status", get(mint_status))
        .route("/v1/mint/proofs", get(mint_proofs))
        .route("/v1/relays", get(relays))
        .route("/v1/leaf/account", get(leaf_account))
        .route("/v1/leaf/account/close", post(leaf_close))
        .route("/v1/leaf/pay", post(leaf_pay))
        .route("/v1/leaf/history", get(leaf_history))
        .route("/v1/leaf/chain", get(leaf_chain))
        .route("/v1/leaf/seen", post(leaf_seen))
        .route("/v1/leaf/certify", post(leaf_certify))
        .route("/v1/leaf/buy", post(leaf_buy))
        .route("/v1/leaf/certs/{account}", get(leaf_certs))
        .route("/v1/leaf/equivocators", get(leaf_equivocators))
        .route("/v1/leaf/receipt/{id}", get(leaf_receipt))
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

async fn relays(State(s): State<ApiState>) -> Result<Json<model::Relays>, ApiErr> {
    Ok(Json(ask(&s, Command::Relays).await?))
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

fn flow_err(e: anyhow::Error) -> ApiErr {
    let code = if e.downcast_ref::<BadInput>().is_some() {
        StatusCode::BAD_REQUEST
    } else if e.downcast_ref::<NotFound>().is_some() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiErr(code, format!("{e:#}"))
}

async fn set_profile(
    State(s): State<ApiState>,
    Json(req): Json<model::SetProfile>,
) -> Result<Json<model::Published>, ApiErr> {
    s.ctx.set_profile(req).await.map(Json).map_err(flow_err)
}

async fn host_profile(
    State(s): State<ApiState>,
    Json(req): Json<model::HostProfile>,
) -> Result<Json<model::Published>, ApiErr> {
    let bytes = hex::decode(req.signed_hex.trim()).map_err(|_| bad("signed_hex is not hex"))?;
    s.ctx.host_bytes(&bytes).await.map(Json).map_err(flow_err)
}

async fn get_profile(
    State(s): State<ApiState>,
    axum::extract::Path(account): axum::extract::Path<String>,
) -> Result<Json<model::Profile>, ApiErr> {
    s.ctx
        .get_profile(&account)
        .await
        .map(Json)
        .map_err(flow_err)
}

#[derive(Deserialize)]
struct NearQuery {
    lat: f64,
    lon: f64,
    radius_m: Option<u32>,
    name: Option<String>,
    kind: Option<String>,
    service: Option<String>,
    limit: Option<usize>,
}

async fn profiles_near(
    State(s): State<ApiState>,
    Query(q): Query<NearQuery>,
) -> Result<Json<model::Near>, ApiErr> {
    let radius = q.radius_m.ok_or_else(|| bad("radius_m is required"))?;
    let filter = leafnet_geo::protocol::Filter {
        name: q.name,
        kind: q.kind,
        service: q.service,
    };
    s.ctx
        .profiles_near(q.lat, q.lon, radius, filter, q.limit.unwrap_or(20))
        .await
        .map(Json)
        .map_err(flow_err)
}

async fn nodes_near(
    State(s): State<ApiState>,
    Query(q): Query<NearQuery>,
) -> Result<Json<model::NodesNear>, ApiErr> {
    s.ctx
        .nodes_near(q.lat, q.lon, q.limit.unwrap_or(20))
        .await
        .map(Json)
        .map_err(flow_err)
}

async fn mint_observe(
    State(s): State<ApiState>,
    Json(req): Json<model::ObserveRequest>,
) -> Result<Json<model::Observed>, ApiErr> {
    let bytes =
        hex::decode(req.statement_hex.trim()).map_err(|_| bad("statement_hex is not hex"))?;
    s.ctx.mint_observe(&bytes).await.map(Json).map_err(flow_err)
}

#[derive(Deserialize)]
struct IssuerQuery {
    issuer: Option<String>,
}

async fn mint_status(
    State(s): State<ApiState>,
    Query(q): Query<IssuerQuery>,
) -> Result<Json<model::MintStatus>, ApiErr> {
    s.ctx
        .mint_status(q.issuer.as_deref())
        .await
        .map(Json)
        .map_err(flow_err)
}

async fn mint_proofs(State(s): State<ApiState>) -> Result<Json<Vec<model::MintProof>>, ApiErr> {
    s.ctx.mint_proofs().await.map(Json).map_err(flow_err)
}

async fn leaf_account(State(s): State<ApiState>) -> Result<Json<model::LeafAccount>, ApiErr> {
    s.ctx.leaf_account().await.map(Json).map_err(flow_err)
}

async fn leaf_close(State(s): State<ApiState>) -> Result<Json<model::LeafAccount>, ApiErr> {
    s.ctx.leaf_close().await.map(Json).map_err(flow_err)
}

async fn leaf_pay(
    State(s): State<ApiState>,
    Json(req): Json<model::PayRequest>,
) -> Result<Json<model::Payment>, ApiErr> {
    s.ctx.leaf_pay(req).await.map(Json).map_err(flow_err)
}

async fn leaf_history(State(s): State<ApiState>) -> Result<Json<Vec<model::HistoryEntry>>, ApiErr> {
    s.ctx.leaf_history().await.map(Json).map_err(flow_err)
}

async fn leaf_chain(State(s): State<ApiState>) -> Result<Json<model::Chain>, ApiErr> {
    s.ctx.leaf_chain().await.map(Json).map_err(flow_err)
}

async fn leaf_seen(
    State(s): State<ApiState>,
    Json(req): Json<model::SeenRequest>,
) -> Result<Json<model::Seen>, ApiErr> {
    s.ctx
        .leaf_seen(&req.entry_hex)
        .await
        .map(Json)
        .map_err(flow_err)
}

async fn leaf_equivocators(
    State(s): State<ApiState>,
) -> Result<Json<Vec<model::Equivocator>>, ApiErr> {
    s.ctx.leaf_equivocators().await.map(Json).map_err(flow_err)
}

async fn leaf_certify(
    State(s): State<ApiState>,
    Json(req): Json<model::CertifyRequest>,
) -> Result<Json<model::Certified>, ApiErr> {
    s.ctx.leaf_certify(req).await.map(Json).map_err(flow_err)
}

async fn leaf_certs(
    State(s): State<ApiState>,
    axum::extract::Path(account): axum::extract::Path<String>,
) -> Result<Json<model::Certs>, ApiErr> {
    s.ctx.leaf_certs(&account).await.map(Json).map_err(flow_err)
}

async fn leaf_buy(
    State(s): State<ApiState>,
    Json(req): Json<model::BuyRequest>,
) -> Result<Json<model::Bought>, ApiErr> {
    s.ctx
        .leaf_buy(&req.object)
        .await
        .map(Json)
        .map_err(flow_err)
}

async fn leaf_receipt(
    State(s): State<ApiState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<model::Receipt>, ApiErr> {
    s.ctx.leaf_receipt(&id).await.map(Json).map_err(flow_err)
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
