//! GeoIP lookup on a MaxMind DB City database.
//!
//! The whole file is read into memory and checked once when opened (metadata, database
//! type, and a full structural verification of the search tree and data section), so a
//! missing, truncated or corrupt database is an error at startup, naming the path, not a
//! surprise on the request path. Lookups then decode only the four fields the ranking
//! needs (`location.latitude`, `location.longitude`, `country.iso_code`, `continent.code`).
//!
//! An address that is not in the database, or whose record has no valid coordinates (some
//! rows are country-level only), gives `None`: the caller falls back to its default region.
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as seen on dual-stack sockets) are looked
//! up as the IPv4 address.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{MaxMindDbError, Reader};
use serde::{Deserialize, Serialize};

use crate::region::LatLon;

/// Where an address is, as far as the database knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Degrees, within [-90, 90].
    pub lat: f64,
    /// Degrees, within [-180, 180].
    pub lon: f64,
    /// ISO 3166-1 alpha-2 country code (`country.iso_code`), e.g. "GB".
    pub country: Option<String>,
    /// Continent code (`continent.code`): AF, AN, AS, EU, NA, OC or SA.
    pub continent: Option<String>,
    /// Prefix length of the database's network holding the address: every address in it
    /// is located the same (a DNS answer made from it is valid for that network).
    #[serde(default)]
    pub prefix: u8,
}

impl Location {
    pub fn coords(&self) -> LatLon {
        LatLon::new(self.lat, self.lon)
    }
}

impl From<&Location> for LatLon {
    fn from(l: &Location) -> LatLon {
        l.coords()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("GeoIP database {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("GeoIP database {}: not a valid MaxMind DB file: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: MaxMindDbError,
    },
    #[error(
        "GeoIP database {}: database type {database_type:?} is not a City database \
         (need GeoIP2/GeoLite2 City or a database with the same record shape)",
        path.display()
    )]
    NotCity {
        path: PathBuf,
        database_type: String,
    },
    #[error("GeoIP database {}: lookup of {ip} failed: {source}", path.display())]
    Lookup {
        path: PathBuf,
        ip: IpAddr,
        #[source]
        source: MaxMindDbError,
    },
}

/// A loaded, verified City database. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
}

/// The label used as "path" for databases built with [`GeoIp::from_bytes`].
pub const IN_MEMORY: &str = "<in-memory>";

impl GeoIp {
    /// Reads and verifies the database at `path`. Errors name the path.
    ///
    /// Verification walks the whole file once (tens of ms per MB); do it at startup or on
    /// reload, off the request path.
    pub fn open(path: impl AsRef<Path>) -> Result<GeoIp, GeoError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::build(bytes, path.to_owned())
    }

    /// Same checks as [`GeoIp::open`] on a database already in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp, GeoError> {
        Self::build(bytes, PathBuf::from(IN_MEMORY))
    }

    fn build(bytes: Vec<u8>, path: PathBuf) -> Result<GeoIp, GeoError> {
        let reader = match Reader::from_source(bytes) {
            Ok(r) => r,
            Err(source) => return Err(GeoError::Invalid { path, source }),
        };
        let database_type = reader.metadata().database_type.clone();
        let lower = database_type.to_ascii_lowercase();
        if !(lower.contains("city") || lower.contains("enterprise")) {
            return Err(GeoError::NotCity {
                path,
                database_type,
            });
        }
        if let Err(source) = reader.verify() {
            return Err(GeoError::Invalid { path, source });
        }
        Ok(GeoIp { reader, path })
    }

    /// The location of `ip`, or `None` when the database has no coordinates for it (or the
    /// record cannot be decoded; use [`GeoIp::try_lookup`] to see that error).
    pub fn lookup(&self, ip: IpAddr) -> Option<Location> {
        self.try_lookup(ip).ok().flatten()
    }

    /// Like [`GeoIp::lookup`], but a record that fails to decode is an error.
    pub fn try_lookup(&self, ip: IpAddr) -> Result<Option<Location>, GeoError> {
        let ip = ip.to_canonical();
        let err = |source| GeoError::Lookup {
            path: self.path.clone(),
            ip,
            source,
        };
        let result = self.reader.lookup(ip).map_err(err)?;
        let network = result.network().map_err(err)?;
        // An IPv4 address matched above the IPv4 subtree of an IPv6 database comes back
        // with an IPv6 network: its IPv4 part is what is left past the 96-bit prefix.
        let prefix = match ip.is_ipv4() && network.ip().is_ipv6() {
            true => network.prefix().saturating_sub(96),
            false => network.prefix(),
        };
        let Some(rec) = result.decode::<CityRecord<'_>>().map_err(err)? else {
            return Ok(None);
        };
        let (Some(lat), Some(lon)) = (rec.location.latitude, rec.location.longitude) else {
            return Ok(None);
        };
        if !LatLon::new(lat, lon).is_valid() {
            return Ok(None);
        }
        Ok(Some(Location {
            lat,
            lon,
            country: rec.country.iso_code.map(str::to_owned),
            continent: rec.continent.code.map(str::to_owned),
            prefix,
        }))
    }

    /// `database_type` from the metadata, e.g. "GeoIP2-City".
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built (Unix seconds), for a staleness metric.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// The path it was opened from ([`IN_MEMORY`] for [`GeoIp::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The subset of a GeoIP2 City record that ranking needs. Unknown fields are skipped.
#[derive(Deserialize)]
struct CityRecord<'a> {
    #[serde(default)]
    location: LocationRecord,
    #[serde(borrow, default)]
    country: CountryRecord<'a>,
    #[serde(borrow, default)]
    continent: ContinentRecord<'a>,
}

#[derive(Deserialize, Default)]
struct LocationRecord {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize, Default)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct ContinentRecord<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}
