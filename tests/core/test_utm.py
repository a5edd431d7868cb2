"""The pure-Python Transverse Mercator must match PROJ to below a millimetre."""

from __future__ import annotations

import pytest

from qgis_rsbatch.core import utm

MM = 1e-3


def _sample_points(spread: float = 9.0):
    """(zone, south, lon, lat) on a regular grid: every 7th zone, both hemispheres, 80°S to
    84°N, up to `spread`° either side of the central meridian (tiles reach past zone edges)."""
    offsets = [spread * k / 4 for k in range(-4, 5)]
    for zone in range(1, 61, 7):
        for south in (False, True):
            lats = range(-80, 1, 5) if south else range(0, 85, 5)
            for lat in lats:
                for offset in offsets:
                    yield zone, south, utm.central_meridian(zone) + offset + 0.123, lat + 0.456


def test_central_meridian_maps_to_false_easting():
    assert utm.forward(9.0, 0.0, 32) == pytest.approx((500000.0, 0.0), abs=1e-9)
    assert utm.forward(9.0, 0.0, 32, south=True) == pytest.approx((500000.0, 1e7), abs=1e-9)
    x, y = utm.forward(9.0, 45.0, 32)
    assert x == pytest.approx(500000.0, abs=1e-9)
    # meridian arc to 45°N on WGS 84 is 4,984,944.378 m, scaled by k0 = 0.9996
    assert y == pytest.approx(4984944.378 * 0.9996, abs=1e-3)


def test_round_trip_is_below_a_millimetre():
    for zone, south, lon, lat in _sample_points(spread=20.0):
        x, y = utm.forward(lon, lat, zone, south)
        lon2, lat2 = utm.inverse(x, y, zone, south)
        x2, y2 = utm.forward(lon2, lat2, zone, south)
        assert abs(x2 - x) < MM, (zone, south, lon, lat)
        assert abs(y2 - y) < MM, (zone, south, lon, lat)
        assert utm.wrap_longitude(lon2 - lon) == pytest.approx(0.0, abs=1e-10)
        assert lat2 == pytest.approx(lat, abs=1e-10)


def test_matches_pyproj_forward_and_inverse():
    pyproj = pytest.importorskip("pyproj")
    transformers: dict[int, object] = {}
    for zone, south, lon, lat in _sample_points():
        epsg = utm.epsg_code(zone, south)
        if epsg not in transformers:
            transformers[epsg] = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
        to_utm = transformers[epsg]
        expected = to_utm.transform(lon, lat)
        x, y = utm.forward(lon, lat, zone, south)
        assert abs(x - expected[0]) < MM, (epsg, lon, lat)
        assert abs(y - expected[1]) < MM, (epsg, lon, lat)
        lon_p, lat_p = to_utm.transform(x, y, direction="INVERSE")
        lon_u, lat_u = utm.inverse(x, y, zone, south)
        # 1e-8° is about a millimetre
        assert abs(utm.wrap_longitude(lon_u - lon_p)) < 1e-8
        assert abs(lat_u - lat_p) < 1e-8


def test_inverse_tm_keeps_longitudes_continuous_across_the_antimeridian():
    # a point 1° east of 180 seen from zone 60 (central meridian 177°E)
    x, y = utm.forward(-179.0, -17.0, 60, south=True)
    lon, lat = utm.inverse_tm(x, y - utm.FALSE_NORTHING_SOUTH, utm.central_meridian(60))
    assert lon == pytest.approx(181.0, abs=1e-9)
    assert lat == pytest.approx(-17.0, abs=1e-9)
    assert utm.inverse(x, y, 60, south=True)[0] == pytest.approx(-179.0, abs=1e-9)


@pytest.mark.parametrize(("epsg", "expected"), [
    (32632, (32, False)), (32739, (39, True)), (32601, (1, False)), (32760, (60, True)),
    (4326, None), (32600, None), (32661, None), (3857, None),
])
def test_parse_epsg(epsg, expected):
    assert utm.parse_epsg(epsg) == expected
    if expected:
        assert utm.epsg_code(*expected) == epsg


def test_rejects_zones_and_latitudes_out_of_range():
    with pytest.raises(ValueError, match="zone 61"):
        utm.forward(0.0, 0.0, 61)
    with pytest.raises(ValueError, match="latitude 91"):
        utm.forward(0.0, 91.0, 31)
