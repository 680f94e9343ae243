//! `leafnet mint …`: the issuer's offline tools (`keygen`, `sign`), the node's notes (`observe`,
//! `status`, `proofs`) and the offline proof check (`verify-proof`, no node needed).
//!
//! Files: an issuer key is 64 hex characters (mode 0600); a statement and a proof are their
//! canonical CBOR bytes. `verify-proof` also accepts a proof as hex text.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Subcommand;
use leafnet_mint::{SignedStatement, Statement, VerifiedProof};
use leafnet_node::{client::Client, datadir::DataDir, model};

use crate::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum MintCmd {
    /// Make an issuer key (the issuer's tool).
    Keygen {
        /// Where to write the key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a statement about a mint file (the issuer's tool).
    Sign {
        #[arg(long)]
        issuer_key: PathBuf,
        #[arg(long)]
        asset: String,
        #[arg(long)]
        series: u64,
        /// How long the statement is valid from now: 30d, 12h, ...
        #[arg(long, default_value = "30d")]
        valid_for: String,
        /// Where to write the statement (default: MINTFILE.statement).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The mint file the statement is about.
        mintfile: PathBuf,
    },
    /// Tell the node it has seen this statement (it signs and gossips an observation).
    Observe { statement: PathBuf },
    /// Per (issuer, asset, series): the hashes seen, by how many observers, and equivocation.
    Status {
        /// Only this issuer (hex key).
        #[arg(long)]
        issuer: Option<String>,
    },
    /// Equivocation proofs the node holds; with --out-dir, each written as <id>.proof.
    Proofs {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Check an equivocation proof offline.
    VerifyProof { proof: PathBuf },
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub(crate) async fn run(cmd: MintCmd, dd: &DataDir, json: bool) -> anyhow::Result<()> {
    match cmd {
        MintCmd::Keygen { out } => {
            let key = leafnet_mint::keyfile::write_new(&out)?;
            let issuer = hex::encode(key.verifying_key().to_bytes());
            if json {
                print_json(&serde_json::json!({ "issuer": issuer, "key_file": out }))
            } else {
                outln!("issuer {issuer}\nkey written to {}", out.display());
                Ok(())
            }
        }
        MintCmd::Sign {
            issuer_key,
            asset,
            series,
            valid_for,
            out,
            mintfile,
        } => {
            let key = leafnet_mint::keyfile::read(&issuer_key)?;
            let valid: Duration = humantime::parse_duration(&valid_for)
                .map_err(|e| anyhow::anyhow!("--valid-for '{valid_for}': {e}"))?;
            let file = read(&mintfile)?;
            let now = now_ms();
            let st = Statement {
                issuer: key.verifying_key().to_bytes(),
                asset,
                series,
                mint_hash: leafnet_mint::mint_hash(&file),
                valid_from_ms: now,
                valid_until_ms: now.saturating_add(valid.as_millis() as u64),
            };
            let signed = SignedStatement::seal(&key, st)?;
            let out = out.unwrap_or_else(|| {
                let mut p = mintfile.clone().into_os_string();
                p.push(".statement");
                p.into()
            });
            std::fs::write(&out, signed.to_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            let s = signed.statement();
            if json {
                print_json(&serde_json::json!({
                    "statement_id": hex::encode(signed.id()),
                    "issuer": hex::encode(s.issuer),
                    "asset": s.asset,
                    "series": s.series,
                    "mint_hash": hex::encode(s.mint_hash),
                    "valid_until_ms": s.valid_until_ms,
                    "file": out,
                }))
            } else {
                outln!(
                    "statement {} for {} series {} (mint hash {}) written to {}",
                    hex::encode(signed.id()),
                    s.asset,
                    s.series,
                    hex::encode(s.mint_hash),
                    out.display()
                );
                Ok(())
            }
        }
        MintCmd::Observe { statement } => {
            let bytes = read(&statement)?;
            // Check locally first: a bad file gets its own error without a node.
            SignedStatement::open(&bytes)
                .with_context(|| format!("{} is not a valid statement", statement.display()))?;
            let r: model::Observed = Client::for_data_dir(dd)?
                .post(
                    "/v1/mint/observe",
                    &model::ObserveRequest {
                        statement_hex: hex::encode(bytes),
                    },
                )
                .await?;
            if json {
                print_json(&r)
            } else {
                outln!(
                    "{} statement {} ({} series {}, hash {}){}",
                    if r.new {
                        "observed"
                    } else {
                        "already observed"
                    },
                    r.statement_id,
                    r.asset,
                    r.series,
                    r.mint_hash,
                    if r.equivocation {
                        "\nWARNING: this issuer is a proven equivocator"
                    } else {
                        ""
                    }
                );
                Ok(())
            }
        }
        MintCmd::Status { issuer } => {
            let q: Vec<(&str, String)> = issuer.into_iter().map(|i| ("issuer", i)).collect();
            let r: model::MintStatus = Client::for_data_dir(dd)?.get("/v1/mint/status", &q).await?;
            if json {
                return print_json(&r);
            }
            outln!("{} item(s), {} series", r.items, r.series.len());
            for s in &r.series {
                outln!(
                    "{} {} series {}{}",
                    s.issuer,
                    s.asset,
                    s.series,
                    if s.equivocation { "  EQUIVOCATION" } else { "" }
                );
                for h in &s.hashes {
                    outln!("  {}  {} observer(s)", h.mint_hash, h.observers);
                }
            }
            Ok(())
        }
        MintCmd::Proofs { out_dir } => {
            let r: Vec<model::MintProof> = Client::for_data_dir(dd)?
                .get("/v1/mint/proofs", &[])
                .await?;
            if let Some(dir) = &out_dir {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                for p in &r {
                    let f = dir.join(format!("{}.proof", p.id));
                    let bytes = hex::decode(&p.proof_hex).context("malformed proof from node")?;
                    std::fs::write(&f, bytes)
                        .with_context(|| format!("cannot write {}", f.display()))?;
                }
            }
            if json {
                return print_json(&r);
            }
            outln!("{} proof(s)", r.len());
            for p in &r {
                outln!(
                    "  {}  issuer {} {} series {}: {} vs {}",
                    p.id,
                    p.issuer,
                    p.asset,
                    p.series,
                    p.hashes[0],
                    p.hashes[1]
                );
            }
            Ok(())
        }
        MintCmd::VerifyProof { proof } => {
            let raw = read(&proof)?;
            // Hex text or raw bytes.
            let bytes = std::str::from_utf8(&raw)
                .ok()
                .and_then(|t| hex::decode(t.trim()).ok())
                .unwrap_or(raw);
            let v = VerifiedProof::from_bytes(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is not a valid equivocation proof: {e}", proof.display())
            })?;
            let k = v.key();
            let (a, b) = v.hashes();
            if json {
                print_json(&serde_json::json!({
                    "valid": true,
                    "id": hex::encode(v.id()),
                    "issuer": hex::encode(k.issuer),
                    "asset": k.asset,
                    "series": k.series,
                    "hashes": [hex::encode(a), hex::encode(b)],
                }))
            } else {
                outln!(
                    "valid equivocation proof: issuer {} signed two mint hashes for {} series {}:\n  {}\n  {}",
                    hex::encode(k.issuer),
                    k.asset,
                    k.series,
                    hex::encode(a),
                    hex::encode(b)
                );
                Ok(())
            }
        }
    }
}
