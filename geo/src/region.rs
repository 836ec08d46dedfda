//! Region catalogue entries, coordinates and great-circle distance.

use serde::{Deserialize, Serialize};

/// Mean Earth radius (IUGG), in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Longest region name: one DNS label, since region names appear in GeoDNS names.
pub const MAX_REGION_NAME_LEN: usize = 63;

/// A point on Earth in degrees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    pub const fn new(lat: f64, lon: f64) -> Self {
        Self { lat, lon }
    }

    /// Finite, latitude in [-90, 90], longitude in [-180, 180].
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }

    /// Unit vector on the sphere (x towards 0°N 0°E, z towards the north pole).
    pub(crate) fn unit_vector(&self) -> [f64; 3] {
        let (lat, lon) = (self.lat.to_radians(), self.lon.to_radians());
        let (slat, clat) = lat.sin_cos();
        let (slon, clon) = lon.sin_cos();
        [clat * clon, clat * slon, slat]
    }
}

/// Great-circle distance in km (haversine formula).
pub fn haversine_km(a: LatLon, b: LatLon) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let dp = p2 - p1;
    let dl = (b.lon - a.lon).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Half the chord length between two unit vectors: `sqrt(haversine)` of their angle.
#[inline]
pub(crate) fn half_chord(u: &[f64; 3], v: &[f64; 3]) -> f64 {
    let dx = u[0] - v[0];
    let dy = u[1] - v[1];
    let dz = u[2] - v[2];
    ((dx * dx + dy * dy + dz * dz).sqrt() / 2.0).min(1.0)
}

/// Great-circle km from [`half_chord`]. Since `asin(h) ≥ h` on [0, 1], `2·R·h` is a cheap
/// lower bound of this, used to skip the `asin` for regions that cannot make the cut.
#[inline]
pub(crate) fn half_chord_to_km(h: f64) -> f64 {
    2.0 * EARTH_RADIUS_KM * h.asin()
}

/// Great-circle distance in km between two unit vectors. Same value as [`haversine_km`]
/// (the chord `c = |u − v|` satisfies `c/2 = sqrt(haversine)`), cheaper when the unit
/// vectors are precomputed.
pub(crate) fn unit_distance_km(u: &[f64; 3], v: &[f64; 3]) -> f64 {
    half_chord_to_km(half_chord(u, v))
}

fn default_multiplier() -> f64 {
    1.0
}

/// One region of the catalogue (stored at `regions/<name>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// DNS-label style: `[a-z0-9-]`, 1..=63 characters, no leading or trailing `-`.
    pub name: String,
    /// Latitude of the region's site, degrees.
    pub lat: f64,
    /// Longitude of the region's site, degrees.
    pub lon: f64,
    /// Operator steering: the region's estimated RTT is multiplied by this before ranking
    /// (Tailscale DERP's per-region score). `> 1` makes the region look farther (e.g. 1.5
    /// for an expensive region), `< 1` nearer. Default 1.0.
    #[serde(default = "default_multiplier")]
    pub score_multiplier: f64,
}

impl Region {
    /// A region with multiplier 1.0.
    pub fn new(name: impl Into<String>, lat: f64, lon: f64) -> Self {
        Self {
            name: name.into(),
            lat,
            lon,
            score_multiplier: 1.0,
        }
    }

    pub fn with_multiplier(mut self, score_multiplier: f64) -> Self {
        self.score_multiplier = score_multiplier;
        self
    }

    pub fn coords(&self) -> LatLon {
        LatLon::new(self.lat, self.lon)
    }

    pub fn validate(&self) -> Result<(), RegionError> {
        validate_region_name(&self.name)?;
        if !(self.lat.is_finite() && (-90.0..=90.0).contains(&self.lat)) {
            return Err(RegionError::Latitude {
                name: self.name.clone(),
                lat: self.lat,
            });
        }
        if !(self.lon.is_finite() && (-180.0..=180.0).contains(&self.lon)) {
            return Err(RegionError::Longitude {
                name: self.name.clone(),
                lon: self.lon,
            });
        }
        if !(self.score_multiplier.is_finite() && self.score_multiplier > 0.0) {
            return Err(RegionError::Multiplier {
                name: self.name.clone(),
                multiplier: self.score_multiplier,
            });
        }
        Ok(())
    }
}

/// Checks a region name: 1..=63 characters of `[a-z0-9-]`, not starting or ending with
/// `-` (so it is usable as a DNS label and an etcd key segment).
pub fn validate_region_name(name: &str) -> Result<(), RegionError> {
    if name.is_empty() {
        return Err(RegionError::EmptyName);
    }
    if name.len() > MAX_REGION_NAME_LEN {
        return Err(RegionError::NameTooLong {
            name: name.to_owned(),
        });
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(RegionError::BadName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RegionError {
    #[error("region name is empty")]
    EmptyName,
    #[error("region name {name:?} is longer than {MAX_REGION_NAME_LEN} characters")]
    NameTooLong { name: String },
    #[error("region name {name:?} must be lowercase letters, digits and '-', not starting or ending with '-'")]
    BadName { name: String },
    #[error("region {name:?}: latitude {lat} is not within [-90, 90]")]
    Latitude { name: String, lat: f64 },
    #[error("region {name:?}: longitude {lon} is not within [-180, 180]")]
    Longitude { name: String, lon: f64 },
    #[error("region {name:?}: score multiplier {multiplier} must be a finite number > 0")]
    Multiplier { name: String, multiplier: f64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRANKFURT: LatLon = LatLon::new(50.1109, 8.6821);
    const LONDON: LatLon = LatLon::new(51.5072, -0.1276);
    const TOKYO: LatLon = LatLon::new(35.6762, 139.6503);

    #[test]
    fn haversine_known_distances() {
        // London–Frankfurt ≈ 637 km, Frankfurt–Tokyo ≈ 9,350 km (published great-circle).
        let lf = haversine_km(LONDON, FRANKFURT);
        assert!((lf - 637.0).abs() < 5.0, "{lf}");
        let ft = haversine_km(FRANKFURT, TOKYO);
        assert!((ft - 9350.0).abs() < 30.0, "{ft}");
        assert_eq!(haversine_km(TOKYO, TOKYO), 0.0);
        // Antipodes: half the circumference.
        let half = haversine_km(LatLon::new(0.0, 0.0), LatLon::new(0.0, 180.0));
        assert!((half - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6);
    }

    #[test]
    fn unit_vector_distance_matches_haversine() {
        let pts = [
            FRANKFURT,
            LONDON,
            TOKYO,
            LatLon::new(-33.9, 151.2),
            LatLon::new(89.9, -179.0),
        ];
        for a in pts {
            for b in pts {
                let h = haversine_km(a, b);
                let u = unit_distance_km(&a.unit_vector(), &b.unit_vector());
                assert!((h - u).abs() < 1e-6, "{a:?} {b:?}: {h} vs {u}");
            }
        }
    }

    #[test]
    fn region_validation() {
        assert!(Region::new("eu-west", 53.3, -6.3).validate().is_ok());
        assert!(Region::new("ap-northeast-1", 35.7, 139.7)
            .validate()
            .is_ok());
        assert_eq!(
            Region::new("", 0.0, 0.0).validate(),
            Err(RegionError::EmptyName)
        );
        for bad in ["EU-west", "eu_west", "eu west", "-eu", "eu-", "é"] {
            assert!(
                matches!(
                    Region::new(bad, 0.0, 0.0).validate(),
                    Err(RegionError::BadName { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Region::new("a".repeat(64), 0.0, 0.0).validate(),
            Err(RegionError::NameTooLong { .. })
        ));
        assert!(matches!(
            Region::new("x", 90.5, 0.0).validate(),
            Err(RegionError::Latitude { .. })
        ));
        assert!(matches!(
            Region::new("x", f64::NAN, 0.0).validate(),
            Err(RegionError::Latitude { .. })
        ));
        assert!(matches!(
            Region::new("x", 0.0, -180.5).validate(),
            Err(RegionError::Longitude { .. })
        ));
        for m in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            assert!(matches!(
                Region::new("x", 0.0, 0.0).with_multiplier(m).validate(),
                Err(RegionError::Multiplier { .. })
            ));
        }
    }

    #[test]
    fn region_serde_default_multiplier() {
        let r: Region =
            serde_json::from_str(r#"{"name":"eu-west","lat":53.35,"lon":-6.26}"#).expect("json");
        assert_eq!(r, Region::new("eu-west", 53.35, -6.26));
        assert_eq!(r.score_multiplier, 1.0);
    }
}
