//! The location network's geometry, sans IO.
//!
//! The world is cut into geohash cells. A node announces a provider record
//! `/leafnet/geo/<cell>` for the cell of every hosted profile (and of its own location) at every
//! precision in [`PRECISIONS`]. A radius query asks for the providers of [`cover`]`(centre,
//! radius)`: the cells, at one precision, that together contain the circle's bounding box (with
//! the poles and the antimeridian handled), so every point inside the circle lies in a queried
//! cell. Hosts then filter by the exact great-circle distance ([`distance_m`]).
//!
//! Tests are at the bottom of this file (property tests against brute force).

pub mod protocol;

use geo::{Distance as _, Haversine, Point};
pub use leafnet_profile::Location;

/// Geohash precisions announced and queried (1: about 5000 km cells, 6: about 1 km).
pub const PRECISIONS: [usize; 6] = [1, 2, 3, 4, 5, 6];
/// The most cells one query asks for.
pub const MAX_CELLS: usize = 16;
/// The largest radius a query may ask for, in metres.
pub const MAX_RADIUS_M: u32 = 2_500_000;
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The cell of `loc` at `precision`.
pub fn cell(loc: Location, precision: usize) -> String {
    // Longitude 180 is the same meridian as -180; geohash wants [-180, 180).
    let lon = if loc.lon() >= 180.0 {
        -180.0
    } else {
        loc.lon()
    };
    geohash::encode(
        geohash::Coord {
            x: lon,
            y: loc.lat(),
        },
        precision,
    )
    .unwrap_or_default()
}

/// The cells of `loc` at every announced precision.
pub fn cells(loc: Location) -> Vec<String> {
    PRECISIONS.iter().map(|p| cell(loc, *p)).collect()
}

/// Great-circle (haversine) distance in metres.
pub fn distance_m(a: Location, b: Location) -> f64 {
    Haversine.distance(Point::new(a.lon(), a.lat()), Point::new(b.lon(), b.lat()))
}

/// Cell height and width in degrees at `precision`.
fn cell_size(precision: usize) -> (f64, f64) {
    let bits = 5 * precision;
    let lon_bits = bits.div_ceil(2);
    let lat_bits = bits / 2;
    (
        180.0 / f64::from(1u32 << lat_bits),
        360.0 / f64::from(1u32 << lon_bits),
    )
}

/// Latitude and longitude ranges (degrees) of the circle's bounding box; longitude ranges are
/// split at the antimeridian, and a circle over a pole spans every longitude.
fn bbox(centre: Location, radius_m: f64) -> ((f64, f64), Vec<(f64, f64)>) {
    let ang = radius_m / EARTH_RADIUS_M; // radians
    let dlat = ang.to_degrees();
    let lat = centre.lat();
    let (lat_min, lat_max) = ((lat - dlat).max(-90.0), (lat + dlat).min(90.0));
    let full = vec![(-180.0, 180.0)];
    if lat + dlat >= 90.0 || lat - dlat <= -90.0 {
        return ((lat_min, lat_max), full);
    }
    let s = ang.sin() / lat.to_radians().cos();
    if s >= 1.0 {
        return ((lat_min, lat_max), full);
    }
    let dlon = s.asin().to_degrees();
    let (lo, hi) = (centre.lon() - dlon, centre.lon() + dlon);
    let lons = if lo < -180.0 {
        vec![(lo + 360.0, 180.0), (-180.0, hi)]
    } else if hi > 180.0 {
        vec![(lo, 180.0), (-180.0, hi - 360.0)]
    } else {
        vec![(lo, hi)]
    };
    ((lat_min, lat_max), lons)
}

/// Grid indices spanned by [lo, hi] for cells of `size` starting at `origin`.
fn span(lo: f64, hi: f64, origin: f64, size: f64, cells: i64) -> (i64, i64) {
    let a = (((lo - origin) / size).floor() as i64).clamp(0, cells - 1);
    let b = (((hi - origin) / size).floor() as i64).clamp(0, cells - 1);
    (a, b)
}

/// The geohash cells to query for a circle: the finest precision whose cover of the circle's
/// bounding box has at most [`MAX_CELLS`] cells. Every point within `radius_m` of `centre` lies
/// in one of them.
pub fn cover(centre: Location, radius_m: f64) -> (usize, Vec<String>) {
    let ((lat_min, lat_max), lons) = bbox(centre, radius_m.max(0.0));
    let mut best = (PRECISIONS[0], Vec::new());
    for &p in PRECISIONS.iter() {
        let (h, w) = cell_size(p);
        let rows = (180.0 / h).round() as i64;
        let cols = (360.0 / w).round() as i64;
        let (r0, r1) = span(lat_min, lat_max, -90.0, h, rows);
        let mut cells = Vec::new();
        let mut count = 0usize;
        let nrows = (r1 - r0 + 1) as usize;
        for &(lo, hi) in &lons {
            let (c0, c1) = span(lo, hi, -180.0, w, cols);
            count += nrows * (c1 - c0 + 1) as usize;
        }
        if count > MAX_CELLS {
            if p == PRECISIONS[0] {
                // Cannot happen for radii up to MAX_RADIUS_M; answer with the coarse cover anyway.
            } else {
                break;
            }
        }
        for &(lo, hi) in &lons {
            let (c0, c1) = span(lo, hi, -180.0, w, cols);
            for r in r0..=r1 {
                for c in c0..=c1 {
                    let lat = -90.0 + (r as f64 + 0.5) * h;
                    let lon = -180.0 + (c as f64 + 0.5) * w;
                    let cell =
                        geohash::encode(geohash::Coord { x: lon, y: lat }, p).unwrap_or_default();
                    if !cells.contains(&cell) {
                        cells.push(cell);
                    }
                }
            }
        }
        best = (p, cells);
        if count > MAX_CELLS {
            break;
        }
    }
    best
}

/// The cells one precision finer than `cell` that may hold points within `radius_m` of
/// `centre` (a superset: those whose box meets the circle's bounding box). A query descends into
/// them when `cell`'s full provider list (read with `geo/1`'s `Providers` request) is at the
/// holders' cap of 256 providers.
pub fn children_in(cell: &str, centre: Location, radius_m: f64) -> Vec<String> {
    const BASE32: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let ((lat_min, lat_max), lons) = bbox(centre, radius_m.max(0.0));
    BASE32
        .iter()
        .map(|c| format!("{cell}{}", char::from(*c)))
        .filter(|child| {
            let Ok(r) = geohash::decode_bbox(child) else {
                return false;
            };
            let (a, b) = (r.min(), r.max());
            b.y >= lat_min && a.y <= lat_max && lons.iter().any(|(lo, hi)| b.x >= *lo && a.x <= *hi)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    trait CellAt {
        fn cell_at(&self, p: usize) -> String;
    }
    impl CellAt for Location {
        fn cell_at(&self, p: usize) -> String {
            cell(*self, p)
        }
    }

    fn loc(lat: f64, lon: f64) -> Location {
        Location::from_degrees(lat, lon).unwrap()
    }

    #[test]
    fn cell_sizes() {
        assert_eq!(cell_size(1), (45.0, 45.0));
        assert_eq!(cell_size(2), (5.625, 11.25));
        assert_eq!(cell_size(6), (180.0 / 32768.0, 360.0 / 32768.0 * 1.0 * 1.0));
    }

    #[test]
    fn small_and_large_circles() {
        let (p, cells) = cover(loc(52.52, 13.40), 1_000.0);
        assert!(p >= 5, "1 km uses fine cells, got {p}");
        assert!(cells.len() <= MAX_CELLS);
        let (p, cells) = cover(loc(52.52, 13.40), 2_000_000.0);
        assert!(p <= 2);
        assert!(!cells.is_empty() && cells.len() <= MAX_CELLS);
    }

    #[test]
    fn children_cover_the_circle_within_their_parent() {
        let c = loc(52.52, 13.40);
        let (p, cells) = cover(c, 20_000.0);
        for parent in &cells {
            let kids = children_in(parent, c, 20_000.0);
            assert!(kids.len() <= 32 && kids.iter().all(|k| k.starts_with(parent.as_str())));
        }
        // the centre's own child cell is always among its parent's children in the circle
        let parent = c.cell_at(p);
        assert!(children_in(&parent, c, 20_000.0).contains(&c.cell_at(p + 1)));
    }

    #[test]
    fn pole_and_antimeridian() {
        let (_, cells) = cover(loc(89.9, 10.0), 50_000.0);
        // every longitude near the pole
        for lon in [-179.0, -90.0, 0.0, 90.0, 179.0] {
            assert!(
                cells.contains(&loc(89.8, lon).cell_at(cells[0].len())),
                "{lon}"
            );
        }
        let (_, cells) = cover(loc(0.0, 179.99), 20_000.0);
        let p = cells[0].len();
        assert!(cells.contains(&loc(0.0, -179.95).cell_at(p)));
        assert!(cells.contains(&loc(0.0, 179.95).cell_at(p)));
        assert_eq!(loc(0.0, 180.0).cell_at(3), loc(0.0, -180.0).cell_at(3));
    }

    fn arb_loc() -> impl Strategy<Value = Location> {
        (-90_000_000i32..=90_000_000, -180_000_000i32..180_000_000)
            .prop_map(|(lat_e6, lon_e6)| Location { lat_e6, lon_e6 })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Every point inside the circle lies in a covered cell.
        #[test]
        fn cover_contains_every_point_in_the_circle(
            c in arb_loc(), r in 500.0f64..2_500_000.0, q in arb_loc(), t in 0.0f64..1.0
        ) {
            // a point on the segment from c towards q, scaled to be within r
            let d = distance_m(c, q);
            let target = if d <= r { q } else {
                // walk along the great circle: interpolate in lat/lon is not exact, so test
                // points near the centre by shrinking the offset and keep those inside.
                let f = t * r / d.max(1.0);
                let mut dlon = q.lon() - c.lon();
                if dlon > 180.0 { dlon -= 360.0 } else if dlon < -180.0 { dlon += 360.0 }
                let mut lon = c.lon() + f * dlon;
                if lon >= 180.0 { lon -= 360.0 } else if lon < -180.0 { lon += 360.0 }
                loc(c.lat() + f * (q.lat() - c.lat()), lon)
            };
            prop_assume!(distance_m(c, target) <= r);
            let (p, cells) = cover(c, r);
            prop_assert!(cells.len() <= MAX_CELLS);
            prop_assert!(cells.contains(&target.cell_at(p)), "p={} target={} cells={:?}", p, target, cells);
        }
    }
}
