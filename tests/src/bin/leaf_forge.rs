//! `leafnet-leaf-forge`: a test tool that forks a leaf account's chain. Given the account's key
//! file and its chain, it signs TWO different cheques at the chain's next sequence number (both
//! naming the same previous record), which no honest node ever does: each alone looks like the
//! account's next record, the pair is an equivocation proof. The tests hand one to some nodes
//! (`POST /v1/leaf/seen`) and the other to others, and check that every node catches the fork.
//!
//! ```text
//! leafnet-leaf-forge --key DATA_DIR/account.key [--chain FILE] --payee ACCOUNT [--payee ACCOUNT]
//!                    [--amount MINOR] [--deadline-s SECONDS]
//! ```
//!
//! The chain (`--chain FILE`, or stdin without it or with `-`) is what `GET /v1/leaf/chain`
//! answers (a JSON object with `entries_hex`), a JSON array of hex strings, or hex entries
//! separated by white space. Every entry is opened (signature, size, encoding, field rules) and
//! the chain's links, sequence numbers and account are checked against the key before anything
//! is signed. With one `--payee` the cheques differ in amount (`--amount` and one minor unit
//! more); with two, in payee. The two signed cheques are printed as hex, one a line, on stdout.
//! Errors are one line on stderr, exit code 1.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{io::Read as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use leafnet_leaf::{Body, Memo, Record, SignedEntry};

/// Signs two different cheques at an account's next sequence number (a forked chain).
#[derive(Debug, Parser)]
#[command(name = "leafnet-leaf-forge")]
struct Args {
    /// The account key file (64 hex characters: the ed25519 secret, as in account.key).
    #[arg(long)]
    key: PathBuf,
    /// The account's chain: `GET /v1/leaf/chain` JSON, a JSON array of hex entries, or hex
    /// entries separated by white space; `-` or nothing reads stdin.
    #[arg(long)]
    chain: Option<PathBuf>,
    /// The payee of the cheques (64 hex); give it twice for two different payees.
    #[arg(long, required = true, num_args = 1)]
    payee: Vec<String>,
    /// The first cheque's amount, in minor units (1 leaf = 1000).
    #[arg(long, default_value_t = 1000)]
    amount: u64,
    /// The cheques' deadline, seconds from now.
    #[arg(long, default_value_t = 3600)]
    deadline_s: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

fn account(hexed: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hexed.trim(), &mut b)
        .map_err(|_| anyhow::anyhow!("{what} '{hexed}' is not 64 hex characters"))?;
    Ok(b)
}

/// The chain's entries from the text of `GET /v1/leaf/chain`, a JSON array or bare hex.
fn entries(text: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let hexes: Vec<String> = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => {
            serde_json::from_value(o.get("entries_hex").cloned().unwrap_or_default())
                .context("the JSON object has no entries_hex array of strings")?
        }
        Ok(v @ serde_json::Value::Array(_)) => {
            serde_json::from_value(v).context("the JSON array is not an array of strings")?
        }
        _ => text.split_whitespace().map(str::to_owned).collect(),
    };
    hexes
        .iter()
        .enumerate()
        .map(|(i, h)| hex::decode(h.trim()).with_context(|| format!("entry {i} is not hex")))
        .collect()
}

fn run(args: Args) -> anyhow::Result<Vec<String>> {
    let key_text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read {}", args.key.display()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&account(&key_text, "the key")?);
    let me = key.verifying_key().to_bytes();
    let text = match &args.chain {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the chain from stdin")?;
            s
        }
    };
    let raw = entries(&text)?;
    anyhow::ensure!(
        !raw.is_empty(),
        "the chain is empty: it has at least its Open record"
    );
    // The chain as it stands: every entry opens, is the key's, and links to the one before.
    let mut last: Option<SignedEntry> = None;
    for (i, bytes) in raw.iter().enumerate() {
        let e = SignedEntry::open(bytes).with_context(|| format!("entry {i} does not open"))?;
        let r = e.record();
        anyhow::ensure!(
            r.account == me,
            "entry {i} belongs to {}, not to the key's account {}",
            hex::encode(r.account),
            hex::encode(me)
        );
        anyhow::ensure!(r.seq == i as u64, "entry {i} has sequence number {}", r.seq);
        let prev = last.as_ref().map_or([0; 32], SignedEntry::hash);
        anyhow::ensure!(r.prev == prev, "entry {i} does not link to entry {}", i - 1);
        last = Some(e);
    }
    let last = last.context("the chain is empty")?;
    anyhow::ensure!(
        !matches!(last.record().body, Body::Close),
        "the account is closed: nothing follows its Close record"
    );
    let payees = args
        .payee
        .iter()
        .map(|p| account(p, "the payee"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(payees.len() <= 2, "at most two --payee");
    anyhow::ensure!(
        payees.iter().all(|p| *p != me),
        "a cheque to oneself is not a cheque"
    );
    let (p1, p2) = (payees[0], *payees.last().unwrap_or(&payees[0]));
    let a2 = if p1 == p2 {
        args.amount
            .checked_add(1)
            .context("--amount is too large")?
    } else {
        args.amount
    };
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis() as u64
        + args.deadline_s.saturating_mul(1000);
    let cheque = |payee: [u8; 32], amount: u64| {
        SignedEntry::seal(
            &key,
            Record {
                account: me,
                seq: last.record().seq + 1,
                prev: last.hash(),
                body: Body::Cheque {
                    payee,
                    amount,
                    deadline_ms,
                    memo: Memo::Text("forged".into()),
                },
            },
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot sign a cheque of {amount} to {}: {e}",
                hex::encode(payee)
            )
        })
    };
    let (c1, c2) = (cheque(p1, args.amount)?, cheque(p2, a2)?);
    anyhow::ensure!(c1.hash() != c2.hash(), "the two cheques are the same");
    Ok(vec![hex::encode(c1.as_bytes()), hex::encode(c2.as_bytes())])
}
