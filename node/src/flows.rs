//! Profile and location operations as async flows over the actor, shared by the in-process
//! [`crate::Node`] API and the HTTP API, so both do exactly the same thing.
//!
//! Durability: a profile is acknowledged (the flow returns) only after its redb commit
//! (`Durability::Immediate`) in [`Ctx::host`].

use std::time::Duration;

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use leafnet_geo::{Location, protocol::Filter};
use leafnet_profile::{AccountId, Kind, Profile, SignedProfile};
use leafnet_storage::Database;
use tokio::sync::{mpsc, oneshot};

use crate::{
    model,
    near::PROFILE_TTL,
    swarm::{Command, now_ms},
};

/// The request was wrong: the API answers 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Nothing was found: the API answers 404.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// The radii `nodes near` widens through until it has enough nodes.
const NODE_RADII_M: [u32; 5] = [
    10_000,
    100_000,
    500_000,
    1_500_000,
    leafnet_geo::MAX_RADIUS_M,
];
/// The most results of one radius query.
pub const MAX_RESULTS: usize = 1000;

/// What the flows need: the actor's command channel, the database and the account key.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) db: Database,
    pub(crate) account: SigningKey,
    pub(crate) timeout: Duration,
    /// The leaf service (`None`: payments off on this node).
    pub(crate) leaf: Option<crate::leaf::Handle>,
    /// The network's name (objects' protocol ids carry it).
    pub(crate) network: String,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .context("node is shutting down")?;
        tokio::time::timeout(self.timeout, rx)
            .await
            .context("timed out")?
            .context("node is shutting down")
    }

    /// Builds, signs and publishes the owner's profile.
    pub async fn set_profile(&self, req: model::SetProfile) -> anyhow::Result<model::Published> {
        let info = self.ask(Command::HostInfo).await?;
        let own = info.own.as_ref().map(|s| &s.profile);
        let kind = match (&req.kind, own) {
            (Some(k), _) => Kind::parse(k).map_err(|e| BadInput(e.to_string()))?,
            (None, Some(o)) => o.kind,
            (None, None) => Kind::Person,
        };
        if let Some(o) = own
            && o.kind != kind
        {
            return Err(BadInput(format!(
                "the kind of a profile is fixed at creation: this one is a {}",
                o.kind.as_str()
            ))
            .into());
        }
        let location = match req.location.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(l) => Some(Location::parse(l).map_err(|e| BadInput(format!("--location: {e}")))?),
        };
        let mut extra = Vec::new();
        for kv in &req.extra {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| BadInput(format!("--extra '{kv}' is not key=value")))?;
            extra.push((k.to_owned(), v.to_owned()));
        }
        extra.sort();
        if extra.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(BadInput("--extra keys must be unique".into()).into());
        }
        let now = now_ms();
        let profile = Profile {
            account: self.account.verifying_key().to_bytes(),
            kind,
            name: req.name.clone(),
            location,
            services: req.services.clone(),
            extra,
            host: info.peer_id.to_bytes(),
            host_addrs: info
                .addrs
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                .collect(),
            seq: now.max(own.map_or(0, |o| o.seq.saturating_add(1))),
            expires_at_ms: now.saturating_add(PROFILE_TTL.as_millis() as u64),
        };
        profile.check(now).map_err(|e| BadInput(e.to_string()))?;
        self.host(profile.seal(&self.account)).await
    }

    /// Hosts a signed profile (the owner's or someone else's) and makes it durable.
    pub async fn host(&self, signed: SignedProfile) -> anyhow::Result<model::Published> {
        let acct = signed.profile.account;
        let bytes = signed.bytes.clone();
        let published = self
            .ask(|reply| Command::Host { signed, reply })
            .await?
            .map_err(BadInput)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || leafnet_storage::profiles::put(&db, &acct, &bytes))
            .await
            .context("storage task failed")??;
        Ok(published)
    }

    /// Hosts a profile given as its signed bytes.
    pub async fn host_bytes(&self, bytes: &[u8]) -> anyhow::Result<model::Published> {
        let s = SignedProfile::open(bytes, now_ms()).map_err(|e| BadInput(e.to_string()))?;
        self.host(s).await
    }

    /// Fetches and verifies the profile of `account` from the DHT (highest valid seq).
    pub async fn get_profile(&self, account: &str) -> anyhow::Result<model::Profile> {
        let id = AccountId::parse(account).map_err(|e| BadInput(e.to_string()))?;
        let key = leafnet_wire::DhtKey::new("profile", &id.to_string())?;
        let r = self
            .ask(|reply| Command::GetRecord { key, reply })
            .await?
            .map_err(|_| NotFound(format!("no valid profile found for account {id}")))?;
        serde_json::from_value(r.value).context("decoding profile")
    }

    /// Profiles within `radius_m` of (`lat`, `lon`), nearest first.
    pub async fn profiles_near(
        &self,
        lat: f64,
        lon: f64,
        radius_m: u32,
        filter: Filter,
        limit: usize,
    ) -> anyhow::Result<model::Near> {
        let started = std::time::Instant::now();
        let centre = Location::from_degrees(lat, lon).map_err(|e| BadInput(e.to_string()))?;
        if radius_m == 0 || radius_m > leafnet_geo::MAX_RADIUS_M {
            return Err(BadInput(format!(
                "radius must be 1 m to {} km",
                leafnet_geo::MAX_RADIUS_M / 1000
            ))
            .into());
        }
        if let Some(k) = &filter.kind {
            Kind::parse(k).map_err(|e| BadInput(e.to_string()))?;
        }
        let limit = limit.clamp(1, MAX_RESULTS);
        let out = self
            .ask(|reply| Command::Near {
                centre,
                radius_m,
                filter,
                limit,
                reply,
            })
            .await?
            .map_err(anyhow::Error::msg)?;
        Ok(model::Near {
            centre: [centre.lat(), centre.lon()],
            radius_m,
            precision: out.precision,
            cells: out.cells,
            cell_lookups: out.lookups,
            provider_requests: out.provider_requests,
            cells_cached: out.cache_hits,
            nodes_contacted: out.contacted,
            nodes_failed: out.failed.iter().map(ToString::to_string).collect(),
            cells_saturated: out.saturated.clone(),
            results: out
                .profiles
                .iter()
                .map(|(d, s)| model::NearProfile {
                    distance_m: *d,
                    profile: (&s.profile).into(),
                })
                .collect(),
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Nodes by distance of their configured location, widening the search until `limit`.
    pub async fn nodes_near(
        &self,
        lat: f64,
        lon: f64,
        limit: usize,
    ) -> anyhow::Result<model::NodesNear> {
        let started = std::time::Instant::now();
        let centre = Location::from_degrees(lat, lon).map_err(|e| BadInput(e.to_string()))?;
        let limit = limit.clamp(1, MAX_RESULTS);
        let mut contacted = 0;
        for radius_m in NODE_RADII_M {
            let out = self
                .ask(|reply| Command::Near {
                    centre,
                    radius_m,
                    filter: Filter::default(),
                    limit,
                    reply,
                })
                .await?
                .map_err(anyhow::Error::msg)?;
            contacted += out.contacted;
            if out.nodes.len() >= limit || radius_m == leafnet_geo::MAX_RADIUS_M {
                return Ok(model::NodesNear {
                    centre: [centre.lat(), centre.lon()],
                    radius_m,
                    nodes_contacted: contacted,
                    results: out
                        .nodes
                        .iter()
                        .map(|(p, l, d)| model::NearNode {
                            peer_id: p.to_string(),
                            location: [l.lat(), l.lon()],
                            distance_m: *d,
                        })
                        .collect(),
                    elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
                });
            }
        }
        Err(anyhow::anyhow!("no radius left to search"))
    }
}

/// Mint notes.
impl Ctx {
    /// This node has seen a statement (its signed bytes): verified, stored durably, gossiped.
    pub async fn mint_observe(&self, statement: &[u8]) -> anyhow::Result<model::Observed> {
        let statement = leafnet_mint::SignedStatement::open(statement)
            .map_err(|e| BadInput(format!("not a valid mint statement: {e}")))?;
        self.ask(|reply| Command::MintObserve { statement, reply })
            .await?
            .map_err(anyhow::Error::msg)
    }

    /// Per (issuer, asset, series): hashes seen, observers, equivocation.
    pub async fn mint_status(&self, issuer: Option<&str>) -> anyhow::Result<model::MintStatus> {
        let issuer = match issuer {
            None => None,
            Some(k) => Some(
                AccountId::parse(k)
                    .map_err(|_| BadInput(format!("issuer '{k}' is not 64 hex characters")))?
                    .0,
            ),
        };
        self.ask(|reply| Command::MintStatus { issuer, reply })
            .await
    }

    /// Every equivocation proof held.
    pub async fn mint_proofs(&self) -> anyhow::Result<Vec<model::MintProof>> {
        self.ask(Command::MintProofs).await
    }
}
