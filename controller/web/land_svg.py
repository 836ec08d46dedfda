#!/usr/bin/env python3
# Writes the path of controller/web/land.svg from world-atlas's land-110m.json (npm pack world-atlas@2):
#   python3 controller/web/land_svg.py package/land-110m.json > path.txt
"""Natural Earth 110m land (public domain, via the world-atlas package's TopoJSON) as one
SVG path in an equirectangular projection: x = (lon + 180) * 2, y = (90 - lat) * 2
(a 720 x 360 box)."""
import json, sys
topo = json.load(open(sys.argv[1]))
sx, sy = topo["transform"]["scale"]
tx, ty = topo["transform"]["translate"]
arcs = []
for arc in topo["arcs"]:
    x = y = 0
    pts = []
    for dx, dy in arc:
        x += dx; y += dy
        pts.append((x * sx + tx, y * sy + ty))
    arcs.append(pts)
def ring(indices):
    pts = []
    for i in indices:
        a = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
        pts.extend(a if not pts else a[1:])
    return pts
geom = topo["objects"]["land"]["geometries"]
out = []
for g in geom:
    polys = g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]
    for poly in polys:
        for r in poly:
            pts = ring(r)
            if len(pts) < 3:
                continue
            # A ring that crosses the antimeridian is drawn as open pieces (no edge across
            # the whole map).
            d, prev, crossed = "", None, False
            for lon, lat in pts:
                cmd = "M" if prev is None or abs(lon - prev) > 180 else "L"
                crossed |= prev is not None and abs(lon - prev) > 180
                d += f"{cmd}{(lon + 180) * 2:.1f} {(90 - lat) * 2:.1f}"
                prev = lon
            out.append(d if crossed else d + "Z")
print("".join(out))
