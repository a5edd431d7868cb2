"""Transverse Mercator on WGS 84, forward and inverse, in pure Python (UTM zones).

The grid needs exact UTM coordinates where neither pyproj nor GDAL can be counted on
(QGIS's own Python, the Lambda), so this is Krüger's series to sixth order in the third
flattening n (Karney 2011, "Transverse Mercator with an accuracy of a few nanometers").
Within a few thousand kilometres of the central meridian it agrees with PROJ to far below
a millimetre; the grid never goes further than ~25° of longitude from a zone's meridian.

Northings here are *true* northings (negative south of the equator) unless a function says
otherwise: the grid works in one continuous plane per zone and adds the false northing of
10,000,000 m only when it names a southern EPSG code.
"""

from __future__ import annotations

import math

# WGS 84
A = 6378137.0
F = 1 / 298.257223563
K0 = 0.9996
FALSE_EASTING = 500000.0
FALSE_NORTHING_SOUTH = 10000000.0

_E2 = F * (2 - F)
_E = math.sqrt(_E2)
_N = F / (2 - F)
# rectifying radius: meridian arc length per radian of rectifying latitude
_A_RECT = A / (1 + _N) * (1 + _N**2 / 4 + _N**4 / 64 + _N**6 / 256)


def _series(coefficients: tuple[tuple[float, ...], ...]) -> tuple[float, ...]:
    """Evaluate each polynomial in n (coefficients from n^1 upward) at WGS 84's n."""
    return tuple(sum(c * _N ** (k + 1) for k, c in enumerate(row)) for row in coefficients)


# Krüger's alpha (forward) and beta (inverse) coefficients, row j holds the terms of the
# j-th coefficient for n^1 … n^6 (zeros below its leading power).
_ALPHA = _series((
    (1 / 2, -2 / 3, 5 / 16, 41 / 180, -127 / 288, 7891 / 37800),
    (0, 13 / 48, -3 / 5, 557 / 1440, 281 / 630, -1983433 / 1935360),
    (0, 0, 61 / 240, -103 / 140, 15061 / 26880, 167603 / 181440),
    (0, 0, 0, 49561 / 161280, -179 / 168, 6601661 / 7257600),
    (0, 0, 0, 0, 34729 / 80640, -3418889 / 1995840),
    (0, 0, 0, 0, 0, 212378941 / 319334400),
))
_BETA = _series((
    (1 / 2, -2 / 3, 37 / 96, -1 / 360, -81 / 512, 96199 / 604800),
    (0, 1 / 48, 1 / 15, -437 / 1440, 46 / 105, -1118711 / 3870720),
    (0, 0, 17 / 480, -37 / 840, -209 / 4480, 5569 / 90720),
    (0, 0, 0, 4397 / 161280, -11 / 504, -830251 / 7257600),
    (0, 0, 0, 0, 4583 / 161280, -108847 / 3991680),
    (0, 0, 0, 0, 0, 20648693 / 638668800),
))


def central_meridian(zone: int) -> float:
    """Longitude (degrees) of the central meridian of UTM zone 1…60."""
    return -183.0 + 6.0 * zone


def wrap_longitude(lon: float) -> float:
    """Longitude folded into [-180, 180)."""
    return (lon + 180.0) % 360.0 - 180.0


def _conformal_tan(tau: float) -> float:
    """tan of the conformal latitude for tan(latitude) = tau."""
    sigma = math.sinh(_E * math.atanh(_E * tau / math.hypot(1.0, tau)))
    return tau * math.hypot(1.0, sigma) - sigma * math.hypot(1.0, tau)


def _geodetic_tan(tau_c: float) -> float:
    """Invert `_conformal_tan` by Newton's method (converges in 2-3 steps)."""
    tau = tau_c
    for _ in range(8):
        tau_i = _conformal_tan(tau)
        step = ((tau_c - tau_i) / math.hypot(1.0, tau_i)
                * (1 + (1 - _E2) * tau * tau) / ((1 - _E2) * math.hypot(1.0, tau)))
        tau += step
        if abs(step) < 1e-14 * max(1.0, abs(tau)):
            break
    return tau


def forward_tm(lon: float, lat: float, lon0: float) -> tuple[float, float]:
    """Transverse Mercator (UTM scale and false easting, no false northing): lon/lat → x, y."""
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"latitude {lat} is outside [-90, 90]")
    lam = math.radians(wrap_longitude(lon - lon0))
    phi = math.radians(lat)
    tau_c = _conformal_tan(math.tan(phi)) if abs(lat) < 90.0 else math.copysign(math.inf, lat)
    xi_p = math.atan2(tau_c, math.cos(lam))
    eta_p = math.asinh(math.sin(lam) / math.hypot(tau_c, math.cos(lam)))
    xi, eta = xi_p, eta_p
    for j, alpha in enumerate(_ALPHA, start=1):
        xi += alpha * math.sin(2 * j * xi_p) * math.cosh(2 * j * eta_p)
        eta += alpha * math.cos(2 * j * xi_p) * math.sinh(2 * j * eta_p)
    return FALSE_EASTING + K0 * _A_RECT * eta, K0 * _A_RECT * xi


def inverse_tm(x: float, y: float, lon0: float) -> tuple[float, float]:
    """Inverse of `forward_tm`: x, true northing y → lon (not wrapped), lat in degrees."""
    xi = y / (K0 * _A_RECT)
    eta = (x - FALSE_EASTING) / (K0 * _A_RECT)
    xi_p, eta_p = xi, eta
    for j, beta in enumerate(_BETA, start=1):
        xi_p -= beta * math.sin(2 * j * xi) * math.cosh(2 * j * eta)
        eta_p -= beta * math.cos(2 * j * xi) * math.sinh(2 * j * eta)
    sinh_eta = math.sinh(eta_p)
    cos_xi = math.cos(xi_p)
    tau_c = math.sin(xi_p) / math.hypot(sinh_eta, cos_xi)
    lat = math.degrees(math.atan(_geodetic_tan(tau_c)))
    lon = lon0 + math.degrees(math.atan2(sinh_eta, cos_xi))
    return lon, lat


def forward(lon: float, lat: float, zone: int, south: bool = False) -> tuple[float, float]:
    """lon/lat (degrees) → UTM easting, northing of `zone`; `south` adds the false northing."""
    x, y = forward_tm(lon, lat, central_meridian(_check_zone(zone)))
    return x, y + (FALSE_NORTHING_SOUTH if south else 0.0)


def inverse(x: float, y: float, zone: int, south: bool = False) -> tuple[float, float]:
    """UTM easting, northing of `zone` → lon in [-180, 180), lat (degrees)."""
    lon, lat = inverse_tm(x, y - (FALSE_NORTHING_SOUTH if south else 0.0),
                          central_meridian(_check_zone(zone)))
    return wrap_longitude(lon), lat


def epsg_code(zone: int, south: bool) -> int:
    """WGS 84 / UTM EPSG code: 326zz north, 327zz south."""
    return (32700 if south else 32600) + _check_zone(zone)


def parse_epsg(epsg: int) -> tuple[int, bool] | None:
    """(zone, south) for a WGS 84 / UTM EPSG code, None for any other code."""
    zone = epsg % 100
    if epsg // 100 in (326, 327) and 1 <= zone <= 60:
        return zone, epsg // 100 == 327
    return None


def _check_zone(zone: int) -> int:
    if not 1 <= int(zone) <= 60:
        raise ValueError(f"UTM zone {zone} is outside 1…60")
    return int(zone)
