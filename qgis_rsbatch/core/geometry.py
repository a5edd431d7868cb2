"""Small planar geometry on GeoJSON-like coordinates, standard library only.

What the grid and the AOI code need and QGIS's Python may lack shapely for: a geometry as
flat parts, clipping parts to a band of x (longitude strips of UTM zones, the antimeridian),
densifying edges before a projection bends them, and testing a part against a rectangle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import InvalidInput

Part = tuple  # ("point", [x, y]) | ("line", [[x, y], …]) | ("polygon", [ring, …])


def flatten(geometry: Mapping[str, Any]) -> list[Part]:
    """Geometry -> [("point", p) | ("line", [p…]) | ("polygon", [ring…])]."""
    kind = geometry["type"]
    if kind == "GeometryCollection":
        return [part for g in geometry["geometries"] for part in flatten(g)]
    singles = {"Point": "point", "LineString": "line", "Polygon": "polygon"}
    coords = geometry.get("coordinates") or []
    if kind in singles:
        return [(singles[kind], coords)]
    if kind.startswith("Multi") and kind[5:] in singles:
        return [(singles[kind[5:]], c) for c in coords]
    raise InvalidInput(f"geometry type {kind!r} is not supported")


def part_positions(part: Part) -> list:
    """Every position of a part (a polygon's rings one after the other)."""
    kind, coords = part
    if kind == "point":
        return [coords]
    if kind == "line":
        return coords
    return [p for ring in coords for p in ring]


def geometry_from_parts(parts: list[Part]) -> dict:
    kinds = {kind for kind, _ in parts}
    names = {"point": "Point", "line": "LineString", "polygon": "Polygon"}
    if len(kinds) == 1:
        kind = kinds.pop()
        coords = [c for _, c in parts]
        if len(coords) == 1:
            return {"type": names[kind], "coordinates": coords[0]}
        return {"type": "Multi" + names[kind], "coordinates": coords}
    return {"type": "GeometryCollection",
            "geometries": [geometry_from_parts([p]) for p in parts]}


def translate_part(part: Part, dx: float) -> Part:
    kind, coords = part
    if kind == "point":
        return kind, [coords[0] + dx, coords[1]]
    if kind == "line":
        return kind, [[x + dx, y] for x, y in coords]
    return kind, [[[x + dx, y] for x, y in ring] for ring in coords]


def clip_part_x(part: Part, lo: float, hi: float) -> list[Part]:
    """The pieces of a part with lo <= x <= hi (polygons by Sutherland-Hodgman; holes stay
    holes under even-odd filling, and a zero-width bridge along a cut encloses nothing)."""
    kind, coords = part
    if kind == "point":
        return [part] if lo <= coords[0] <= hi else []
    if kind == "line":
        return [("line", piece) for piece in _clip_line(coords, lo, hi)]
    rings = [_clip_ring(ring, lo, hi) for ring in coords]
    if not rings[0]:
        return []
    return [("polygon", [r for r in rings if r])]


def _clip_ring(ring: list, lo: float, hi: float) -> list:
    points = ring[:-1]
    for bound, keep_above in ((lo, True), (hi, False)):
        if not points:
            return []
        inside = [(x >= bound) if keep_above else (x <= bound) for x, _ in points]
        out = []
        for i, (x2, y2) in enumerate(points):
            x1, y1 = points[i - 1]
            if inside[i] != inside[i - 1]:
                t = (bound - x1) / (x2 - x1)
                out.append([bound, y1 + t * (y2 - y1)])
            if inside[i]:
                out.append([x2, y2])
        points = out
    if len(points) < 3:
        return []
    return [*points, list(points[0])]


def _clip_line(line: list, lo: float, hi: float) -> list[list]:
    pieces: list[list] = []
    current: list = []
    for (x1, y1), (x2, y2) in zip(line, line[1:]):
        t0, t1 = 0.0, 1.0
        dx = x2 - x1
        for p, q in ((-dx, x1 - lo), (dx, hi - x1)):
            if p == 0:
                if q < 0:
                    t0, t1 = 1.0, 0.0
            elif p < 0:
                t0 = max(t0, q / p)
            else:
                t1 = min(t1, q / p)
        if t0 > t1:
            if current:
                pieces.append(current)
                current = []
            continue
        start = [x1 + t0 * dx, y1 + t0 * (y2 - y1)]
        end = [x1 + t1 * dx, y1 + t1 * (y2 - y1)]
        if not current or current[-1] != start:
            if current:
                pieces.append(current)
            current = [start]
        current.append(end)
    if current:
        pieces.append(current)
    return pieces


def densify_points(points: list, step: float) -> list:
    """Insert points so no segment is longer than `step` in x or in y (2-D: a z is dropped)."""
    out = [[points[0][0], points[0][1]]]
    for (x1, y1, *_), (x2, y2, *_) in zip(points, points[1:]):
        n = max(1, math.ceil(max(abs(x2 - x1), abs(y2 - y1)) / step))
        out.extend([x1 + (x2 - x1) * k / n, y1 + (y2 - y1) * k / n] for k in range(1, n + 1))
    return out


def densify_part(part: Part, step: float) -> Part:
    kind, coords = part
    if kind == "point":
        return part
    if kind == "line":
        return kind, densify_points(coords, step)
    return kind, [densify_points(ring, step) for ring in coords]


def densify_geometry(geometry: dict, step: float) -> dict:
    """A copy with every line and ring densified (`densify_points`); types are kept."""
    kind = geometry["type"]
    if kind == "GeometryCollection":
        return {"type": kind, "geometries": [densify_geometry(g, step)
                                             for g in geometry["geometries"]]}
    depth = {"LineString": 0, "MultiLineString": 1, "Polygon": 1, "MultiPolygon": 2}.get(kind)

    def walk(coords: list, level: int) -> list:
        if level == 0:
            return densify_points(coords, step)
        return [walk(c, level - 1) for c in coords]
    coords = geometry["coordinates"]
    return {"type": kind, "coordinates": coords if depth is None else walk(coords, depth)}


def ring_crossing(ring: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """Where two non-adjacent edges of a closed ring cross each other, or None.

    Only proper crossings count (a point inside both edges): a bow-tie, drawn by hand or
    left by a bad export, has two lobes of opposite orientation whose areas cancel, so it
    would pass for "zero area" or, asymmetric, silently cover less than it shows. Edges are
    swept in order of their smallest x so that a long ring does not cost n² tests.
    """
    points = [(float(p[0]), float(p[1])) for p in ring]
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    n = len(points)
    if n < 4:
        return None
    edges = sorted(range(n), key=lambda i: min(points[i][0], points[(i + 1) % n][0]))
    for position, i in enumerate(edges):
        a, b = points[i], points[(i + 1) % n]
        right = max(a[0], b[0])
        for j in edges[position + 1:]:
            c, d = points[j], points[(j + 1) % n]
            if min(c[0], d[0]) > right:
                break
            if abs(i - j) in (1, n - 1):  # neighbours share a vertex
                continue
            crossing = _proper_crossing(a, b, c, d)
            if crossing is not None:
                return crossing
    return None


def _proper_crossing(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float],
                     d: tuple[float, float]) -> tuple[float, float] | None:
    """The point where segments ab and cd cross strictly inside both, or None."""
    def side(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    d1, d2 = side(c, d, a), side(c, d, b)
    d3, d4 = side(a, b, c), side(a, b, d)
    if d1 * d2 >= 0 or d3 * d4 >= 0:
        return None
    t = d1 / (d1 - d2)
    return a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])


def ring_area(ring: Sequence[Sequence[float]]) -> float:
    """Signed shoelace area (positive counter-clockwise)."""
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:])) / 2


class PlanarShape:
    """Parts in one plane, indexed by rows of y so a rectangle test reads few edges."""

    def __init__(self, parts: Iterable[Part]) -> None:
        self.points: list[tuple[float, float]] = []
        segments: list[tuple[float, float, float, float, int]] = []
        polygons = 0
        for kind, coords in parts:
            if kind == "point":
                self.points.append((coords[0], coords[1]))
                continue
            owner = polygons if kind == "polygon" else -1
            for line in (coords if kind == "polygon" else [coords]):
                segments.extend((x1, y1, x2, y2, owner)
                                for (x1, y1), (x2, y2) in zip(line, line[1:]))
                self.points.append((line[0][0], line[0][1]))
            polygons += kind == "polygon"
        self.polygons = polygons
        xs = [p[0] for p in self.points] + [c for s in segments for c in (s[0], s[2])]
        ys = [p[1] for p in self.points] + [c for s in segments for c in (s[1], s[3])]
        self.empty = not xs
        self.bbox = (min(xs), min(ys), max(xs), max(ys)) if xs else (0.0, 0.0, 0.0, 0.0)
        self._rows = max(1, min(512, len(segments) // 4))
        self._height = (self.bbox[3] - self.bbox[1]) / self._rows or 1.0
        self._buckets: list[list[tuple]] = [[] for _ in range(self._rows)]
        for s in segments:
            for row in range(self._row(min(s[1], s[3])), self._row(max(s[1], s[3])) + 1):
                self._buckets[row].append(s)

    def _row(self, y: float) -> int:
        return min(self._rows - 1, max(0, int((y - self.bbox[1]) / self._height)))

    def intersects_rect(self, xmin: float, ymin: float, xmax: float, ymax: float) -> bool:
        """Whether the closed rectangle touches any part (vertex in, edge across, or inside)."""
        bx0, by0, bx1, by1 = self.bbox
        if self.empty or xmax < bx0 or xmin > bx1 or ymax < by0 or ymin > by1:
            return False
        if any(xmin <= x <= xmax and ymin <= y <= ymax for x, y in self.points):
            return True
        for row in range(self._row(ymin), self._row(ymax) + 1):
            for x1, y1, x2, y2, _ in self._buckets[row]:
                if _segment_hits_rect((x1, y1, x2, y2), (xmin, ymin, xmax, ymax)):
                    return True
        return self.polygons > 0 and self.contains_point(xmin, ymin)

    def contains_point(self, px: float, py: float) -> bool:
        """Inside any polygon part (even-odd across its rings)."""
        if self.empty or not self.bbox[1] <= py <= self.bbox[3]:
            return False
        parity: dict[int, bool] = {}
        for x1, y1, x2, y2, owner in self._buckets[self._row(py)]:
            crosses = owner >= 0 and (y1 > py) != (y2 > py)
            if crosses and px < x1 + (py - y1) * (x2 - x1) / (y2 - y1):
                parity[owner] = not parity.get(owner, False)
        return any(parity.values())


def _segment_hits_rect(segment: tuple[float, float, float, float],
                       rect: tuple[float, float, float, float]) -> bool:
    """Liang-Barsky: does the closed segment meet the closed rectangle?"""
    x1, y1, x2, y2 = segment
    xmin, ymin, xmax, ymax = rect
    if max(x1, x2) < xmin or min(x1, x2) > xmax or max(y1, y2) < ymin or min(y1, y2) > ymax:
        return False
    t0, t1 = 0.0, 1.0
    dx, dy = x2 - x1, y2 - y1
    for p, q in ((-dx, x1 - xmin), (dx, xmax - x1), (-dy, y1 - ymin), (dy, ymax - y1)):
        if p == 0:
            if q < 0:
                return False
        else:
            r = q / p
            if p < 0:
                t0 = max(t0, r)
            else:
                t1 = min(t1, r)
            if t0 > t1:
                return False
    return True
