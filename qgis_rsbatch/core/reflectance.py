"""Which scale and offset turn a scene's digital numbers into reflectance (DESIGN.md table).

From ESA processing baseline 04.00 on, L2A digital numbers carry +1000 (BOA_ADD_OFFSET
-1000, so offset -0.1 at scale 0.0001), and that holds for every product ESA reprocessed
into Collection 1 whatever its acquisition date: the baseline decides, never the date.
Catalogs describe this inconsistently (Earth Search's `sentinel-2-l2a` says -0.1 where
Element 84 already removed the 1000, earth-search #9), so each source kind has its own
small rule here. Each returns a `Reflectance`; `corrections` says, in words a person can
check, where the rule overrode what the metadata claimed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: the L2A quantification: DN 10000 is reflectance 1
DEFAULT_SCALE = 0.0001
#: BOA_ADD_OFFSET -1000 at DEFAULT_SCALE, present in baseline 04.00+ digital numbers
BASELINE_04_OFFSET = -0.1
#: the first baseline whose digital numbers carry +1000
OFFSET_BASELINE = (4, 0)

_BASELINE_RE = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\s*$")
_PRODUCT_BASELINE_RE = re.compile(r"_N(\d{2})(\d{2})_")
_BOA_OFFSET_RE = re.compile(
    r"<BOA_ADD_OFFSET[^>]*>\s*(-?\d+(?:\.\d+)?)\s*</BOA_ADD_OFFSET>", re.IGNORECASE
)
_BOA_QUANT_RE = re.compile(
    r"<BOA_QUANTIFICATION_VALUE[^>]*>\s*(\d+(?:\.\d+)?)\s*</BOA_QUANTIFICATION_VALUE>",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Reflectance:
    """reflectance = DN * scale + offset; `offset_check` asks the worker to verify it."""

    scale: float
    offset: float
    offset_check: bool = False
    corrections: tuple[str, ...] = ()


def parse_baseline(value: Any) -> tuple[int, int] | None:
    """'05.00' → (5, 0); None for anything that is not a baseline."""
    if value is None:
        return None
    match = _BASELINE_RE.match(str(value))
    return (int(match.group(1)), int(match.group(2))) if match else None


def baseline_of(properties: Mapping[str, Any]) -> str | None:
    """The processing baseline as 'NN.NN': `s2:processing_baseline`, else `_Nxxxx_` of the
    product name (`s2:product_uri`, or the seed's `productName`)."""
    parsed = parse_baseline(properties.get("s2:processing_baseline"))
    if parsed:
        return f"{parsed[0]:02d}.{parsed[1]:02d}"
    for key in ("s2:product_uri", "productName", "s2:product_name"):
        found = baseline_from_product_name(properties.get(key))
        if found:
            return found
    return None


def baseline_from_product_name(name: Any) -> str | None:
    """'S2A_MSIL2A_20200305T103021_N0500_R108_…' → '05.00'."""
    if not name:
        return None
    match = _PRODUCT_BASELINE_RE.search(str(name))
    return f"{match.group(1)}.{match.group(2)}" if match else None


def has_boa_offset(baseline: str | None) -> bool | None:
    """Whether ESA's digital numbers of this baseline carry +1000; None when unknown."""
    parsed = parse_baseline(baseline)
    return None if parsed is None else parsed >= OFFSET_BASELINE


def raster_value(raster_band: Mapping[str, Any] | None, key: str) -> float | None:
    """A number from one `raster:bands` entry, or None when absent or not a number."""
    if not raster_band:
        return None
    value = raster_band.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _scale(raster_band: Mapping[str, Any] | None) -> float:
    scale = raster_value(raster_band, "scale")
    return scale if scale and scale > 0 else DEFAULT_SCALE


def baseline_rule(baseline: str | None, scale: float = DEFAULT_SCALE,
                  why: str = "") -> Reflectance:
    """Baseline ≥ 04.00 → -0.1, else 0; an unknown baseline → 0, verified from the pixels."""
    carries = has_boa_offset(baseline)
    if carries is None:
        return Reflectance(scale, 0.0, True, (
            f"{why}no processing baseline known: offset 0 assumed, to be verified from pixels",
        ))
    return Reflectance(scale, BASELINE_04_OFFSET if carries else 0.0, False, ())


def _raster_bands_or_baseline(properties: Mapping[str, Any],
                              raster_band: Mapping[str, Any] | None) -> Reflectance:
    offset = raster_value(raster_band, "offset")
    if offset is not None:
        return Reflectance(_scale(raster_band), offset, False, ())
    return baseline_rule(baseline_of(properties), _scale(raster_band),
                         "no raster:bands offset; ")


def for_c1(properties: Mapping[str, Any],
           raster_band: Mapping[str, Any] | None) -> Reflectance:
    """Earth Search `sentinel-2-c1-l2a`: ESA's DNs untouched, and `raster:bands` says so."""
    return _raster_bands_or_baseline(properties, raster_band)


def for_earth_search_l2a(properties: Mapping[str, Any],
                         raster_band: Mapping[str, Any] | None) -> Reflectance:
    """Earth Search `sentinel-2-l2a` COGs: `raster:bands` offset is ignored (earth-search #9).

    Element 84 removed the 1000 from many COGs yet left -0.1 in the metadata; the flag
    `earthsearch:boa_offset_applied` is the better witness, but it is false on some shifted
    items too (earth-search #66, #71), so a -0.1 from this rule is always verified.
    """
    scale = _scale(raster_band)
    claimed = raster_value(raster_band, "offset")
    baseline = baseline_of(properties)
    carries = has_boa_offset(baseline)
    applied = properties.get("earthsearch:boa_offset_applied") is True

    def note(offset: float, reason: str) -> tuple[str, ...]:
        if claimed is None or abs(claimed - offset) < 1e-12:
            return ()
        return (f"raster:bands offset {claimed:g} replaced by {offset:g}: {reason}",)

    if carries is False:
        return Reflectance(scale, 0.0, False,
                           note(0.0, f"baseline {baseline} < 04.00 has no BOA offset"))
    if applied:
        return Reflectance(scale, 0.0, False, note(
            0.0, "earthsearch:boa_offset_applied is true, Element 84 already removed the "
            "1000 (earth-search #9)"))
    # baseline 04.00+ (or unknown) and the flag not true: the 1000 is probably still there
    if carries:
        reason = f"baseline {baseline} and earthsearch:boa_offset_applied is not true"
        return Reflectance(scale, BASELINE_04_OFFSET, True, note(BASELINE_04_OFFSET, reason))
    reason = "no processing baseline and earthsearch:boa_offset_applied is not true"
    return Reflectance(scale, BASELINE_04_OFFSET, True, (
        *note(BASELINE_04_OFFSET, reason),
        f"{reason}: offset {BASELINE_04_OFFSET:g} assumed, to be verified from pixels"))


def for_other(properties: Mapping[str, Any],
              raster_band: Mapping[str, Any] | None) -> Reflectance:
    """Any other STAC catalog: trust `raster:bands` when it has an offset, else the baseline."""
    return _raster_bands_or_baseline(properties, raster_band)


def for_sentinel_s2_l2a(product_name: str | None = None, metadata_xml: str | None = None,
                        baseline: str | None = None) -> Reflectance:
    """ESA's original JP2s (requester-pays `sentinel-s2-l2a`): ESA's DNs, ESA's metadata.

    `metadata_xml` (the product's metadata.xml) states BOA_ADD_OFFSET and the
    quantification outright and wins; else the baseline (given, or `_N0400_` in the
    product name of the tile's tileInfo.json) decides.
    """
    if metadata_xml:
        offsets = [float(v) for v in _BOA_OFFSET_RE.findall(metadata_xml)]
        quant = _BOA_QUANT_RE.search(metadata_xml)
        scale = 1.0 / float(quant.group(1)) if quant and float(quant.group(1)) > 0 else (
            DEFAULT_SCALE)
        if offsets:
            if len(set(offsets)) > 1:
                return Reflectance(scale, offsets[0] * scale, True, (
                    f"metadata.xml lists different BOA_ADD_OFFSET values {sorted(set(offsets))}"
                    f"; using {offsets[0]:g}, to be verified from pixels",))
            return Reflectance(scale, offsets[0] * scale, False, ())
        if quant:
            # a metadata.xml without BOA_ADD_OFFSET is a pre-04.00 product
            return Reflectance(scale, 0.0, False, ())
    known = parse_baseline(baseline)
    found = (f"{known[0]:02d}.{known[1]:02d}" if known
             else baseline_from_product_name(product_name))
    return baseline_rule(found, DEFAULT_SCALE)
