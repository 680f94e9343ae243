//! The control API client the CLI uses. It finds the API address in the data dir's `api.addr`
//! (written by the running node), else in `leafnet.toml`, else the default, and the token in
//! `api.token`.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use serde::{Serialize, de::DeserializeOwned};

use crate::{datadir::DataDir, model};

/// No node answers at the API address: the CLI exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("no node running at {addr} (data dir {dir})")]
pub struct NoNode {
    pub addr: String,
    pub dir: String,
}

/// A client of one node's control API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    addr: SocketAddr,
    token: String,
    token_path: String,
    dir: String,
    http: reqwest::Client,
}

impl Client {
    /// The client for the node of `dd`.
    pub fn for_data_dir(dd: &DataDir) -> anyhow::Result<Self> {
        let addr = std::fs::read_to_string(dd.api_addr())
            .ok()
            .and_then(|s| s.trim().parse::<SocketAddr>().ok())
            .or_else(|| {
                leafnet_config::Config::load(&dd.config())
                    .ok()
                    .and_then(|c| c.api.listen.parse().ok())
            })
            .unwrap_or_else(|| {
                leafnet_config::DEFAULT_API
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7880)))
            });
        let dir = dd.root().display().to_string();
        if !dd.api_token().exists() {
            return Err(NoNode {
                addr: addr.to_string(),
                dir,
            }
            .into());
        }
        let token = dd.read_token()?;
        Ok(Self {
            base: format!("http://{addr}"),
            addr,
            token,
            token_path: dd.api_token().display().to_string(),
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .no_proxy()
                .build()
                .context("cannot build http client")?,
        })
    }

    /// The API address used.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::Error::from(NoNode {
                    addr: self.addr.to_string(),
                    dir: self.dir.clone(),
                })
            } else {
                anyhow::anyhow!("control API at {}: {e}", self.addr)
            }
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            anyhow::bail!(
                "the node at {} refused the API token in {} (wrong or stale api.token)",
                self.addr,
                self.token_path
            );
        }
        let bytes = resp.bytes().await.context("reading the API response")?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<model::ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("{msg}");
        }
        serde_json::from_slice(&bytes).context("malformed API response")
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn status(&self) -> anyhow::Result<model::Status> {
        self.get("/v1/status", &[]).await
    }
}
