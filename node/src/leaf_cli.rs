//! `leafnet account | certify | pay | balance | history | receipt`: the leaf money, as a client
//! of the running node's control API (`account id` alone works without a node). Amounts are in
//! leaf with at most three decimals (1 leaf = 1000 minor units); `--json` prints the API's answer.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use leafnet_node::{client::Client, datadir::DataDir, model};

use crate::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum AccountCmd {
    /// Print the account id, creating the account key on first use (no node needed).
    Id,
    /// Close the account (only at balance zero with no payment in flight).
    Close,
}

pub(crate) async fn account(
    cmd: Option<AccountCmd>,
    dd: &DataDir,
    json: bool,
) -> anyhow::Result<()> {
    let a: model::LeafAccount = match cmd {
        Some(AccountCmd::Id) => return account_id(dd, json),
        None => match get_account(dd).await {
            Ok(a) => a,
            Err(e) => return Err(with_offline_id(dd, json, e)),
        },
        Some(AccountCmd::Close) => {
            Client::for_data_dir(dd)?
                .post("/v1/leaf/account/close", &serde_json::json!({}))
                .await?
        }
    };
    if json {
        return print_json(&a);
    }
    outln!("account      {}", a.account_id);
    outln!("membership   {}", a.membership);
    outln!(
        "balance      {} leaf ({} reserved by payments in flight; bounds ±{})",
        a.balance_leaf,
        model::fmt_leaf(a.reserved as i128),
        model::fmt_leaf(a.max_balance as i128)
    );
    outln!(
        "chain        {} records{}",
        a.chain_length,
        if a.closed { ", closed" } else { "" }
    );
    outln!("parameters   {}", a.params_hash);
    if !a.equivocators.is_empty() {
        outln!("equivocators {} proven (refused)", a.equivocators.len());
    }
    Ok(())
}

async fn get_account(dd: &DataDir) -> anyhow::Result<model::LeafAccount> {
    Client::for_data_dir(dd)?.get("/v1/leaf/account", &[]).await
}

/// `leafnet account id`: the data dir's account id, from its key file (created when missing),
/// with no node involved.
fn account_id(dd: &DataDir, json: bool) -> anyhow::Result<()> {
    dd.ensure()?;
    let id = hex::encode(dd.load_or_create_account()?.verifying_key().to_bytes());
    if json {
        return print_json(&serde_json::json!({ "account_id": id }));
    }
    outln!("{id}");
    Ok(())
}

/// `leafnet account` with no node running still shows the account id when the data dir has an
/// account key (it does not create one); the error, and exit code 2, stay.
fn with_offline_id(dd: &DataDir, json: bool, e: anyhow::Error) -> anyhow::Error {
    if e.downcast_ref::<leafnet_node::client::NoNode>().is_none() || !dd.account_key().exists() {
        return e;
    }
    if let Ok(key) = dd.load_or_create_account() {
        let id = hex::encode(key.verifying_key().to_bytes());
        if json {
            let _ = print_json(&serde_json::json!({ "account_id": id, "node": "not running" }));
        } else {
            outln!("account      {id}");
            outln!("node         not running");
        }
    }
    e
}

pub(crate) async fn balance(dd: &DataDir, json: bool) -> anyhow::Result<()> {
    let a: model::LeafAccount = Client::for_data_dir(dd)?
        .get("/v1/leaf/account", &[])
        .await?;
    if json {
        return print_json(&serde_json::json!({
            "account_id": a.account_id,
            "balance": a.balance,
            "balance_leaf": a.balance_leaf,
            "reserved": a.reserved,
            "available": a.available,
            "max_balance": a.max_balance,
        }));
    }
    outln!(
        "{} leaf (available {}, reserved {})",
        a.balance_leaf,
        model::fmt_leaf(a.available as i128),
        model::fmt_leaf(a.reserved as i128)
    );
    Ok(())
}

pub(crate) async fn pay(
    dd: &DataDir,
    json: bool,
    payee: String,
    amount: String,
    memo: Option<String>,
    invoice: Option<PathBuf>,
) -> anyhow::Result<()> {
    // Checked here too so that a typo costs no round trip (the node checks again).
    leafnet_node::leaf::parse_amount(&amount).map_err(anyhow::Error::msg)?;
    let invoice_hex = match invoice {
        None => None,
        Some(p) => {
            Some(hex::encode(std::fs::read(&p).with_context(|| {
                format!("cannot read invoice {}", p.display())
            })?))
        }
    };
    let req = model::PayRequest {
        payee,
        amount,
        memo,
        invoice_hex,
    };
    let p: model::Payment = Client::for_data_dir(dd)?.post("/v1/leaf/pay", &req).await?;
    if json {
        return print_json(&p);
    }
    print_payment(&p);
    if p.status == "refused" {
        anyhow::bail!(
            "the payee refused: {}",
            p.reason.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}

fn print_payment(p: &model::Payment) {
    let extra = match p.status.as_str() {
        "pending" | "abort-requested" => {
            " (the payee has not answered yet; the amount stays reserved and the node keeps trying)"
                .to_owned()
        }
        _ => p
            .reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
    };
    outln!(
        "{} {} leaf to {} — {}{} (transfer {}, {:.0} ms)",
        if p.status == "paid" {
            "paid"
        } else {
            "payment"
        },
        p.amount_leaf,
        p.payee,
        p.status,
        extra,
        p.transfer_id,
        p.elapsed_ms
    );
}

pub(crate) async fn history(dd: &DataDir, json: bool) -> anyhow::Result<()> {
    let h: Vec<model::HistoryEntry> = Client::for_data_dir(dd)?
        .get("/v1/leaf/history", &[])
        .await?;
    if json {
        return print_json(&h);
    }
    outln!(
        "{:>5}  {:<10} {:>12}  {:<16} {:<10} {:>12}  memo",
        "seq",
        "record",
        "amount",
        "counterparty",
        "status",
        "balance"
    );
    for e in &h {
        outln!(
            "{:>5}  {:<10} {:>12}  {:<16} {:<10} {:>12}  {}",
            e.seq,
            e.kind,
            if e.amount == 0 {
                String::new()
            } else {
                model::fmt_leaf(e.amount as i128)
            },
            e.counterparty.get(..16).unwrap_or(&e.counterparty),
            e.status,
            model::fmt_leaf(e.balance as i128),
            e.memo.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub(crate) async fn receipt(
    dd: &DataDir,
    json: bool,
    id: String,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let r: model::Receipt = Client::for_data_dir(dd)?
        .get(&format!("/v1/leaf/receipt/{}", id.trim()), &[])
        .await?;
    if let Some(path) = &out {
        let hexed = r
            .receipt_hex
            .as_ref()
            .context("this transfer was not paid: there is no receipt to write")?;
        let bytes = hex::decode(hexed).context("the node sent a receipt that is not hex")?;
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        return print_json(&r);
    }
    let p = &r.payment;
    outln!("transfer  {}", p.transfer_id);
    outln!("direction {}", r.direction);
    outln!("payer     {}", p.payer);
    outln!("payee     {}", p.payee);
    outln!("amount    {} leaf", p.amount_leaf);
    outln!("status    {}", p.status);
    if let Some(m) = &p.memo {
        outln!("memo      {m}");
    }
    if let Some(path) = out {
        outln!("receipt written to {}", path.display());
    }
    Ok(())
}

pub(crate) async fn certify(
    dd: &DataDir,
    json: bool,
    subject: String,
    object: bool,
) -> anyhow::Result<()> {
    let req = model::CertifyRequest { subject, object };
    let c: model::Certified = Client::for_data_dir(dd)?
        .post("/v1/leaf/certify", &req)
        .await?;
    if json {
        return print_json(&c);
    }
    outln!(
        "certified {} as {} (valid until {} ms; stored on {} peers)",
        c.subject,
        if c.kind == "object" {
            "your object"
        } else {
            "a human"
        },
        c.expires_ms,
        c.stored_on
    );
    Ok(())
}

pub(crate) async fn certs(dd: &DataDir, json: bool, subject: String) -> anyhow::Result<()> {
    let c: model::Certs = Client::for_data_dir(dd)?
        .get(&format!("/v1/leaf/certs/{}", subject.trim()), &[])
        .await?;
    if json {
        return print_json(&c);
    }
    let status = if c.genesis {
        "genesis member".to_owned()
    } else if c.member {
        format!("member ({} of {} certifications)", c.certified_by, c.needed)
    } else if let Some(o) = &c.owner {
        format!("object of {o}")
    } else {
        format!(
            "not a member ({} of {} certifications)",
            c.certified_by, c.needed
        )
    };
    outln!("{}  {status}", c.subject);
    for x in &c.certifications {
        outln!(
            "  by {}  {:<6} expires {}{}",
            x.certifier,
            x.kind,
            fmt_ms(x.expires_ms),
            if x.valid { "" } else { "  (not valid)" }
        );
    }
    Ok(())
}

/// Unix milliseconds as an RFC 3339 time (seconds).
fn fmt_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}
