//! Per-operation costs that explain the swarm figures, measured on this thread with the same
//! records: leafnet's reader-side record validation, opening a signed profile, and record and
//! provider reads from leafnet's redb `Store` against libp2p's `MemoryStore`.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use ed25519_dalek::SigningKey;
use leafnet_geo::Location;
use leafnet_profile::{AccountId, SignedProfile};
use libp2p::{
    Multiaddr, PeerId,
    kad::{
        ProviderRecord, Record, RecordKey,
        store::{MemoryStore, MemoryStoreConfig, RecordStore},
    },
};

use crate::work::PSpec;

const PASSES: usize = 5;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Mean microseconds per call of `f` over `n` items, `PASSES` passes.
fn time_us(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for _ in 0..PASSES {
        for i in 0..n {
            f(i);
        }
    }
    t.elapsed().as_secs_f64() * 1e6 / (PASSES * n.max(1)) as f64
}

pub fn run(specs: &[PSpec], signed: &[Vec<u8>]) -> anyhow::Result<serde_json::Value> {
    let keys: Vec<Vec<u8>> = specs
        .iter()
        .map(|s| {
            AccountId(SigningKey::from_bytes(&s.seed).verifying_key().to_bytes())
                .profile_key()
                .into_bytes()
        })
        .collect();
    let n = keys.len().min(signed.len());
    let registry = leafnet_node::records::registry();
    let now = now_ms();
    let mut bad = 0usize;
    let validate_us = time_us(n, |i| {
        if registry.validate(&keys[i], &signed[i], now).is_err() {
            bad += 1;
        }
    });
    let open_us = time_us(n, |i| {
        if SignedProfile::open(&signed[i], now).is_err() {
            bad += 1;
        }
    });

    // Records: put every profile in both stores, then read each back.
    let dir = tempfile::tempdir()?;
    let local = PeerId::random();
    let db = leafnet_storage::Database::open(&dir.path().join("micro.redb"))?;
    let mut store_cfg = leafnet_storage::kad::Config::default();
    store_cfg.provider_caps = vec![(
        b"/leafnet/geo/".to_vec(),
        leafnet_node::near::GEO_PROVIDERS_PER_KEY,
    )];
    let mut redb = leafnet_storage::kad::Store::new(db, local, store_cfg)?;
    let mut mem = MemoryStore::with_config(
        local,
        MemoryStoreConfig {
            max_records: 65_536,
            max_value_bytes: 65 * 1024,
            max_providers_per_key: leafnet_node::near::GEO_PROVIDERS_PER_KEY,
            max_provided_keys: 4096,
        },
    );
    let expires = Some(Instant::now() + Duration::from_secs(3600));
    for i in 0..n {
        let mut r = Record::new(RecordKey::new(&keys[i]), signed[i].clone());
        r.expires = expires;
        r.publisher = Some(PeerId::random());
        redb.put(r.clone())
            .map_err(|e| anyhow::anyhow!("redb put: {e:?}"))?;
        mem.put(r)
            .map_err(|e| anyhow::anyhow!("memory put: {e:?}"))?;
    }
    let rkeys: Vec<RecordKey> = keys.iter().map(RecordKey::new).collect();
    let mut found = [0usize; 2];
    let redb_get_us = time_us(n, |i| {
        found[0] += usize::from(redb.get(&rkeys[i]).is_some())
    });
    let mem_get_us = time_us(n, |i| found[1] += usize::from(mem.get(&rkeys[i]).is_some()));

    // Providers: every cell every hosting node announces, one provider record per (node, cell),
    // as a node holding all of them would store them.
    let node_ids: HashMap<usize, PeerId> =
        specs.iter().map(|s| (s.host, PeerId::random())).collect();
    let addr: Multiaddr = "/memory/12345678901234".parse()?;
    let mut per_cell: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for s in specs {
        for c in leafnet_geo::cells(Location::from_degrees(s.lat, s.lon)?) {
            per_cell.entry(c).or_default().insert(s.host);
        }
    }
    let cells: Vec<(RecordKey, usize)> = per_cell
        .iter()
        .map(|(c, hosts)| (RecordKey::new(&format!("/leafnet/geo/{c}")), hosts.len()))
        .collect();
    for (c, hosts) in &per_cell {
        let key = RecordKey::new(&format!("/leafnet/geo/{c}"));
        for h in hosts {
            let rec = ProviderRecord {
                key: key.clone(),
                provider: node_ids[h],
                expires,
                addresses: vec![addr.clone()],
            };
            redb.add_provider(rec.clone())
                .map_err(|e| anyhow::anyhow!("redb add_provider: {e:?}"))?;
            mem.add_provider(rec)
                .map_err(|e| anyhow::anyhow!("memory add_provider: {e:?}"))?;
        }
    }
    let mut got = [0usize; 2];
    let redb_prov_us = time_us(cells.len(), |i| got[0] += redb.providers(&cells[i].0).len());
    let mem_prov_us = time_us(cells.len(), |i| got[1] += mem.providers(&cells[i].0).len());
    // The coarse cells (precision 1 and 2) alone: the most providers per key.
    let coarse: Vec<&(RecordKey, usize)> = cells
        .iter()
        .filter(|(k, _)| k.as_ref().len() <= "/leafnet/geo/".len() + 2)
        .collect();
    let redb_coarse_us = time_us(coarse.len(), |i| {
        got[0] += redb.providers(&coarse[i].0).len();
    });
    let mem_coarse_us = time_us(coarse.len(), |i| {
        got[1] += mem.providers(&coarse[i].0).len();
    });
    Ok(serde_json::json!({
        "records": n,
        "invalid": bad,
        "validate_us": validate_us,
        "signed_profile_open_us": open_us,
        "redb_get_us": redb_get_us,
        "memory_get_us": mem_get_us,
        "gets_found": found,
        "cell_keys": cells.len(),
        "providers_per_cell_mean": cells.iter().map(|c| c.1).sum::<usize>() as f64 / cells.len().max(1) as f64,
        "providers_per_cell_max": cells.iter().map(|c| c.1).max(),
        "redb_providers_us": redb_prov_us,
        "memory_providers_us": mem_prov_us,
        "coarse_cell_keys": coarse.len(),
        "coarse_providers_per_cell_mean": coarse.iter().map(|c| c.1).sum::<usize>() as f64 / coarse.len().max(1) as f64,
        "redb_providers_coarse_us": redb_coarse_us,
        "memory_providers_coarse_us": mem_coarse_us,
    }))
}
