//! Coordinates as integer micro-degrees.

/// Micro-degrees per degree.
pub const E6: f64 = 1_000_000.0;

/// A point as integer micro-degrees (what profiles carry on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub lat_e6: i32,
    pub lon_e6: i32,
}

/// Why a location was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum LocationError {
    #[error("latitude {0} is outside -90..90")]
    Lat(f64),
    #[error("longitude {0} is outside -180..180")]
    Lon(f64),
    #[error("'{0}' is not LAT,LON")]
    Syntax(String),
}

impl Location {
    /// From degrees, checking the ranges.
    pub fn from_degrees(lat: f64, lon: f64) -> Result<Self, LocationError> {
        if !(-90.0..=90.0).contains(&lat) {
            return Err(LocationError::Lat(lat));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(LocationError::Lon(lon));
        }
        Ok(Self {
            lat_e6: (lat * E6).round() as i32,
            lon_e6: (lon * E6).round() as i32,
        })
    }

    /// Parses `LAT,LON` in degrees.
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        let (a, b) = s
            .split_once(',')
            .ok_or_else(|| LocationError::Syntax(s.into()))?;
        let lat: f64 = a
            .trim()
            .parse()
            .map_err(|_| LocationError::Syntax(s.into()))?;
        let lon: f64 = b
            .trim()
            .parse()
            .map_err(|_| LocationError::Syntax(s.into()))?;
        if !lat.is_finite() || !lon.is_finite() {
            return Err(LocationError::Syntax(s.into()));
        }
        Self::from_degrees(lat, lon)
    }

    /// Whether the stored micro-degrees are in range (for data from the wire).
    pub fn is_valid(&self) -> bool {
        (-90_000_000..=90_000_000).contains(&self.lat_e6)
            && (-180_000_000..=180_000_000).contains(&self.lon_e6)
    }

    pub fn lat(&self) -> f64 {
        f64::from(self.lat_e6) / E6
    }

    pub fn lon(&self) -> f64 {
        f64::from(self.lon_e6) / E6
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.6},{:.6}", self.lat(), self.lon())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_locations() {
        assert_eq!(
            Location::parse("52.5, 13.4").unwrap(),
            Location::from_degrees(52.5, 13.4).unwrap()
        );
        assert!(Location::parse("91,0").is_err());
        assert!(Location::parse("0,181").is_err());
        assert!(Location::parse("x").is_err());
        assert!(Location::parse("NaN,1").is_err());
        assert!(
            !Location {
                lat_e6: 90_000_001,
                lon_e6: 0
            }
            .is_valid()
        );
    }
}
