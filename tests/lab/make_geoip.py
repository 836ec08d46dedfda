#!/usr/bin/env python3
"""Generate tests/lab/lab-city.mmdb: the GeoIP database of the multi-region lab.

The lab gives region k (1..6, in the order of lab/planet.toml) the addresses 10.k.0.0/16.
This database places each region's addresses at its city, as a real GeoIP2 City database
would, except one client subnet per region, 10.k.9.0/24, which it places on another
continent on purpose: the lab's mis-geolocated clients (a VPN exit, a mobile carrier's
gateway, a stale entry), which only client latency probes can correct.

Regenerate (the .mmdb is committed; tests never need Python):

    python3 -m venv /tmp/mmdb-venv
    /tmp/mmdb-venv/bin/pip install mmdb-writer==0.2.7 netaddr==1.3.0
    /tmp/mmdb-venv/bin/python tests/lab/make_geoip.py

The output is byte-for-byte reproducible (build_epoch pinned). tests/lab_geoip.rs checks
every entry against this table.
"""

import os
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet

BUILD_EPOCH = 1735689600  # 2025-01-01T00:00:00Z

# (index, region, city, country, continent, latitude, longitude): lab/planet.toml's order.
REGIONS = [
    (1, "us-east", "Ashburn", "US", "NA", 39.0438, -77.4874),
    (2, "us-west", "Boardman", "US", "NA", 45.8399, -119.7006),
    (3, "eu-west", "Dublin", "IE", "EU", 53.3498, -6.2603),
    (4, "eu-central", "Frankfurt", "DE", "EU", 50.1109, 8.6821),
    (5, "ap-northeast", "Tokyo", "JP", "AS", 35.6762, 139.6503),
    (6, "sa-east", "Sao Paulo", "BR", "SA", -23.5505, -46.6333),
]

# Region index whose 10.k.9.0/24 is placed in another region's city (deliberately wrong).
MISPLACED = {1: 5, 2: 4, 3: 6, 4: 2, 5: 3, 6: 1}

CONTINENT_NAMES = {"EU": "Europe", "AS": "Asia", "NA": "North America", "SA": "South America"}


class PinnedWriter(MMDBWriter):
    def _build_meta(self):
        meta = super()._build_meta()
        meta["build_epoch"] = BUILD_EPOCH
        return meta


def record(region):
    _, _, city, iso, continent, lat, lon = region
    return {
        "city": {"names": {"en": city}},
        "continent": {"code": continent, "names": {"en": CONTINENT_NAMES[continent]}},
        "country": {"iso_code": iso, "names": {"en": iso}},
        "location": {"latitude": lat, "longitude": lon, "accuracy_radius": 50},
        "registered_country": {"iso_code": iso, "names": {"en": iso}},
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "lab-city.mmdb")
    writer = PinnedWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="NexRTC-Lab-City",
        languages=["en"],
        description={"en": "NexRTC multi-region lab GeoIP2-City-shaped database"},
    )
    by_index = {r[0]: r for r in REGIONS}
    for region in REGIONS:
        k = region[0]
        # The region's /16 without its misplaced /24, then the /24 elsewhere.
        rest = IPSet([f"10.{k}.0.0/16"]) - IPSet([f"10.{k}.9.0/24"])
        writer.insert_network(rest, record(region))
        writer.insert_network(IPSet([f"10.{k}.9.0/24"]), record(by_index[MISPLACED[k]]))
    writer.to_db_file(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
