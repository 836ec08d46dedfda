#!/usr/bin/env python3
"""Generate geo/testdata/synthetic-city.mmdb, a tiny GeoIP2-City-shaped database.

It maps documentation/test address ranges (RFC 5737, RFC 3849, RFC 9637, RFC 2544)
to known cities so the geo crate's tests know exactly where each client is. The
records have the GeoIP2 City shape (continent.code, country.iso_code,
location.latitude/longitude, city.names.en, ...) so `maxminddb::geoip2::City`
decodes them like a real City database.

Regenerate (the .mmdb is committed; tests never need Python):

    python3 -m venv /tmp/mmdb-venv
    /tmp/mmdb-venv/bin/pip install mmdb-writer==0.2.7 netaddr==1.3.0
    /tmp/mmdb-venv/bin/python geo/testdata/make_synthetic.py

then run `cargo test -p nexrtc-geo` (the tests assert every entry below). The output
is byte-for-byte reproducible: build_epoch is pinned instead of the current time.
"""

import os
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# Pinned so the file does not change on every regeneration (2025-01-01T00:00:00Z).
BUILD_EPOCH = 1735689600

# (network, city, country ISO code, continent code, latitude, longitude)
# Keep this table in sync with geo/tests/synthetic.rs.
ENTRIES = [
    ("198.51.100.0/25", "Frankfurt", "DE", "EU", 50.1109, 8.6821),
    ("198.51.100.128/25", "London", "GB", "EU", 51.5072, -0.1276),
    ("203.0.113.0/25", "Tokyo", "JP", "AS", 35.6762, 139.6503),
    ("203.0.113.128/25", "Singapore", "SG", "AS", 1.3521, 103.8198),
    ("192.0.2.0/24", "Ashburn", "US", "NA", 39.0438, -77.4874),
    ("198.18.0.0/16", "Sydney", "AU", "OC", -33.8688, 151.2093),
    ("2001:db8::/32", "São Paulo", "BR", "SA", -23.5505, -46.6333),
    ("3fff::/20", "Tokyo", "JP", "AS", 35.6762, 139.6503),
]

# A record with a country but no coordinates (like MaxMind's country-level rows):
# the crate must treat it as "location unknown".
COUNTRY_ONLY = ("198.19.0.0/16", "DE", "EU")

CONTINENT_NAMES = {
    "EU": "Europe",
    "AS": "Asia",
    "NA": "North America",
    "SA": "South America",
    "OC": "Oceania",
}


class PinnedWriter(MMDBWriter):
    def _build_meta(self):
        meta = super()._build_meta()
        meta["build_epoch"] = BUILD_EPOCH
        return meta


def city_record(city, iso, continent, lat, lon):
    return {
        "city": {"names": {"en": city}},
        "continent": {"code": continent, "names": {"en": CONTINENT_NAMES[continent]}},
        "country": {"iso_code": iso, "names": {"en": iso}},
        "location": {"latitude": float(lat), "longitude": float(lon), "accuracy_radius": 50},
        "registered_country": {"iso_code": iso, "names": {"en": iso}},
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "synthetic-city.mmdb")
    writer = PinnedWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="NexRTC-Synthetic-City",
        languages=["en"],
        description={"en": "NexRTC synthetic GeoIP2-City-shaped test database"},
    )
    for net, city, iso, continent, lat, lon in ENTRIES:
        writer.insert_network(IPSet([net]), city_record(city, iso, continent, lat, lon))
    net, iso, continent = COUNTRY_ONLY
    writer.insert_network(
        IPSet([net]),
        {
            "continent": {"code": continent, "names": {"en": CONTINENT_NAMES[continent]}},
            "country": {"iso_code": iso, "names": {"en": iso}},
        },
    )
    writer.to_db_file(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
