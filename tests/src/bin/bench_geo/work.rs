//! The workload of `leafnet-bench-geo`: where the profiles are, who hosts them, and the mixed,
//! shuffled schedule of gets and radius queries both swarms run (node choices from one seeded
//! generator, so both swarms see the same schedule).

use std::collections::{BTreeSet, HashMap};

use leafnet_geo::Location;

/// SplitMix64: a small deterministic generator (no `rand` dependency).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Cluster centres (lat, lon, name): far apart, none near a pole or the antimeridian.
pub const CLUSTERS: [(f64, f64, &str); 4] = [
    (52.5200, 13.4050, "Berlin"),
    (-1.2864, 36.8172, "Nairobi"),
    (-23.5505, -46.6333, "Sao Paulo"),
    (35.6762, 139.6503, "Tokyo"),
];

/// How far from its cluster centre a profile may be, by tier (km): 4 in 10 profiles within
/// 0.8 km ("core", found by 1 km queries), 3 in 10 within 40 km, 3 in 10 within 900 km.
pub const TIERS_KM: [f64; 3] = [0.8, 40.0, 900.0];

fn tier_of(i: usize) -> usize {
    match (i / CLUSTERS.len()) % 10 {
        0..=3 => 0,
        4..=6 => 1,
        _ => 2,
    }
}

/// The point at `d_km` from (`lat`, `lon`) towards `bearing` (radians), on a flat local map
/// (good enough for placing test points; distances are measured exactly later).
fn offset(lat: f64, lon: f64, d_km: f64, bearing: f64) -> (f64, f64) {
    let dlat = d_km * bearing.cos() / 111.195;
    let dlon = d_km * bearing.sin() / (111.195 * lat.to_radians().cos());
    (lat + dlat, lon + dlon)
}

/// A uniformly random point within `r_km` of (`lat`, `lon`).
fn in_disk(rng: &mut Rng, lat: f64, lon: f64, r_km: f64) -> (f64, f64) {
    let d = r_km * rng.f().sqrt();
    let b = rng.f() * std::f64::consts::TAU;
    offset(lat, lon, d, b)
}

/// One profile of the workload.
#[derive(Debug, Clone)]
pub struct PSpec {
    /// The account's signing key seed.
    pub seed: [u8; 32],
    pub lat: f64,
    pub lon: f64,
    /// Index of the hosting node (the same index in both swarms).
    pub host: usize,
    pub cluster: usize,
    pub tier: usize,
}

/// `profiles` profiles, cluster `i % 4`, tier by [`tier_of`], each on a random node.
pub fn profiles(profiles: usize, nodes: usize, seed: u64) -> Vec<PSpec> {
    let mut rng = Rng(seed ^ 0x9e0_9e0);
    (0..profiles)
        .map(|i| {
            let cluster = i % CLUSTERS.len();
            let tier = tier_of(i);
            let (clat, clon, _) = CLUSTERS[cluster];
            let (lat, lon) = in_disk(&mut rng, clat, clon, TIERS_KM[tier]);
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            seed[8..16].copy_from_slice(&0x6e0_be4c_u64.to_le_bytes());
            PSpec {
                seed,
                lat,
                lon,
                host: rng.below(nodes),
                cluster,
                tier,
            }
        })
        .collect()
}

/// Radius query groups: three fixed radii and one of radii picked so the cover has 9 cells.
pub const GROUPS: [&str; 4] = ["1 km", "50 km", "1000 km", "9 cells"];
const FIXED_RADII_M: [u32; 3] = [1_000, 50_000, 1_000_000];

/// One measured (or warm-up) operation.
#[derive(Debug, Clone)]
pub enum Op {
    /// Get profile `p` from node `from` (never its host).
    Get { from: usize, p: usize },
    /// A radius query from node `from`.
    Near {
        from: usize,
        group: usize,
        lat: f64,
        lon: f64,
        radius_m: u32,
    },
}

/// A query centre: a random point within 300 m of a random cluster centre.
fn centre(rng: &mut Rng) -> (f64, f64) {
    let (lat, lon, _) = CLUSTERS[rng.below(CLUSTERS.len())];
    in_disk(rng, lat, lon, 0.3)
}

/// Radii, geometric from 200 m to 2,000 km, whose cover of a circle at (`lat`, `lon`) has
/// exactly 9 cells.
pub fn nine_cell_radii(lat: f64, lon: f64) -> Vec<u32> {
    let Ok(c) = Location::from_degrees(lat, lon) else {
        return Vec::new();
    };
    (0..=400)
        .map(|k| (200.0 * 10_000f64.powf(f64::from(k) / 400.0)).round() as u32)
        .filter(|r| leafnet_geo::cover(c, f64::from(*r)).1.len() == 9)
        .collect()
}

/// `gets` gets and `per_group` radius queries of each group, shuffled.
pub fn schedule(
    specs: &[PSpec],
    nodes: usize,
    gets: usize,
    per_group: usize,
    seed: u64,
) -> Vec<Op> {
    let mut rng = Rng(seed);
    let mut ops = Vec::with_capacity(gets + 4 * per_group);
    for _ in 0..gets {
        let p = rng.below(specs.len());
        let mut from = rng.below(nodes - 1);
        if from >= specs[p].host {
            from += 1;
        }
        ops.push(Op::Get { from, p });
    }
    for (group, radius_m) in FIXED_RADII_M.iter().enumerate() {
        for _ in 0..per_group {
            let (lat, lon) = centre(&mut rng);
            ops.push(Op::Near {
                from: rng.below(nodes),
                group,
                lat,
                lon,
                radius_m: *radius_m,
            });
        }
    }
    let mut nine = 0;
    for _ in 0..per_group * 20 {
        if nine == per_group {
            break;
        }
        let (lat, lon) = centre(&mut rng);
        let radii = nine_cell_radii(lat, lon);
        if radii.is_empty() {
            continue;
        }
        let radius_m = radii[rng.below(radii.len())];
        ops.push(Op::Near {
            from: rng.below(nodes),
            group: 3,
            lat,
            lon,
            radius_m,
        });
        nine += 1;
    }
    // Fisher-Yates: gets and queries interleaved, so both see the same swarm state.
    for i in (1..ops.len()).rev() {
        let j = rng.below(i + 1);
        ops.swap(i, j);
    }
    ops
}

/// The hosting nodes of every announced cell (every precision), by cell.
pub fn cell_hosts(specs: &[PSpec]) -> HashMap<String, BTreeSet<usize>> {
    let mut m: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for s in specs {
        if let Ok(l) = Location::from_degrees(s.lat, s.lon) {
            for c in leafnet_geo::cells(l) {
                m.entry(c).or_default().insert(s.host);
            }
        }
    }
    m
}

/// For the cover of a radius query: the hosting nodes announcing any of its cells (all of them
/// must be asked for an exact answer), and the most hosting nodes of one cell.
pub fn cover_hosts(
    hosts: &HashMap<String, BTreeSet<usize>>,
    lat: f64,
    lon: f64,
    radius_m: u32,
) -> (usize, usize) {
    let Ok(c) = Location::from_degrees(lat, lon) else {
        return (0, 0);
    };
    let (_, cells) = leafnet_geo::cover(c, f64::from(radius_m));
    let mut all = BTreeSet::new();
    let mut max = 0;
    for cell in &cells {
        if let Some(h) = hosts.get(cell) {
            all.extend(h.iter().copied());
            max = max.max(h.len());
        }
    }
    (all.len(), max)
}
