//! `leafnet object run | id | buy`: an object that sells access, and the client side.
//!
//! The object keeps its files in `<data dir>/object/`: `object.key` (its account key, 64 hex,
//! mode 0600, created on first run) and `object.redb` (the invoices it already redeemed).

use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use leafnet_node::{
    client::Client,
    datadir::DataDir,
    model,
    object::{ObjectConfig, Offer, run_object},
};

use crate::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum ObjectCmd {
    /// Run an object that sells access to RESOURCE for PRICE leaf, paid to its OWNER.
    Run {
        /// The owner's account id (who is paid; it certifies the object with
        /// `leafnet certify <object id> --object`).
        #[arg(long)]
        owner: String,
        /// In leaf, at most 3 decimals.
        #[arg(long, allow_hyphen_values = true)]
        price: String,
        /// What access is sold to (1 to 128 bytes).
        #[arg(long)]
        resource: String,
        /// How long a grant lasts: 1h, 30m, 1d.
        #[arg(long, default_value = "1h")]
        duration: String,
        /// Listen multiaddr (repeatable). Default: loopback, TCP and QUIC, free ports.
        #[arg(long)]
        listen: Vec<String>,
        /// The network (default: the data dir's configured network, else main).
        #[arg(long)]
        network: Option<String>,
    },
    /// The object's account id (creates its key).
    Id,
    /// Buy access from the object at ADDRESS (a multiaddr ending in /p2p/<id>) through the
    /// running node: invoice → pay the owner → present the receipt → access granted.
    Buy { address: String },
}

fn object_dir(dd: &DataDir) -> std::path::PathBuf {
    dd.root().join("object")
}

fn object_key(dd: &DataDir) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let dir = object_dir(dd);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    DataDir::new(&dir).load_or_create_account()
}

pub(crate) async fn run(cmd: ObjectCmd, dd: &DataDir, json: bool) -> anyhow::Result<()> {
    match cmd {
        ObjectCmd::Id => {
            let k = object_key(dd)?;
            let id = hex::encode(k.verifying_key().to_bytes());
            if json {
                return print_json(&serde_json::json!({ "object_id": id }));
            }
            outln!("{id}");
            Ok(())
        }
        ObjectCmd::Buy { address } => {
            let b: model::Bought = Client::for_data_dir(dd)?
                .post(
                    "/v1/leaf/buy",
                    &model::BuyRequest {
                        object: address.clone(),
                    },
                )
                .await?;
            if json {
                return print_json(&b);
            }
            outln!(
                "access granted to '{}' until {} (paid {} leaf to {}, transfer {}, {:.0} ms)",
                b.resource,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_millis(b.until_ms)
                ),
                b.amount_leaf,
                b.owner,
                b.transfer_id,
                b.elapsed_ms
            );
            Ok(())
        }
        ObjectCmd::Run {
            owner,
            price,
            resource,
            duration,
            listen,
            network,
        } => {
            let mut o = [0u8; 32];
            hex::decode_to_slice(owner.trim(), &mut o).map_err(|_| {
                anyhow::anyhow!("--owner '{owner}' is not an account id (64 hex characters)")
            })?;
            let price = leafnet_node::leaf::parse_amount(&price)
                .map_err(|e| anyhow::anyhow!("--price: {e}"))?;
            let duration: Duration = humantime::parse_duration(&duration)
                .map_err(|e| anyhow::anyhow!("--duration '{duration}': {e}"))?;
            anyhow::ensure!(!duration.is_zero(), "--duration must be positive");
            let network = match network {
                Some(n) => n,
                None if dd.config().exists() => leafnet_config::Config::load(&dd.config())?
                    .network
                    .name
                    .clone(),
                None => "main".into(),
            };
            let listen = if listen.is_empty() {
                vec![
                    "/ip4/127.0.0.1/tcp/0".to_owned(),
                    "/ip4/127.0.0.1/udp/0/quic-v1".to_owned(),
                ]
            } else {
                listen
            };
            let listen = listen
                .iter()
                .map(|a| {
                    a.parse()
                        .map_err(|e| anyhow::anyhow!("--listen '{a}' is not a multiaddr: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let key = object_key(dd)?;
            let h = run_object(ObjectConfig {
                key,
                offer: Offer {
                    owner: o,
                    price,
                    resource: resource.clone(),
                    duration,
                },
                network,
                listen,
                db_path: object_dir(dd).join("object.redb"),
            })
            .await?;
            let id = hex::encode(h.account);
            if json {
                print_json(&serde_json::json!({
                    "object_id": id,
                    "owner": owner,
                    "price": price,
                    "resource": resource,
                    "addrs": h.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }))?;
            } else {
                outln!(
                    "object {id}, selling '{resource}' for {} leaf, paid to {owner}",
                    model::fmt_leaf(price as i128)
                );
                for a in &h.addrs {
                    outln!("listening on {a}");
                }
                outln!("its owner certifies it with: leafnet certify {id} --object");
            }
            crate::wait_for_signal().await;
            h.stop().await;
            Ok(())
        }
    }
}
