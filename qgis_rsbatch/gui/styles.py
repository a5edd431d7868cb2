"""How rsbatch's products look on the map: one source for the dock, Processing and `render`.

* RGB (uint16 reflectance × 10000, nodata 0): a min/max stretch of each band over the same
  reflectance range, 0 – 0.3 by default, so every cell and date of a job shares one stretch
  and a mosaic shows no seams (a per-file cumulative cut would give each tile its own
  colours); "cumulative" (2 – 98 %) is there for single scenes with unusual brightness.
  QGIS 3.22's GDAL provider applies the file's band scale (0.0001) when reading, so the
  layer's values may be reflectance or reflectance × 10000: `reflectance_factor` asks the
  provider which, instead of assuming either.
* The indices (float32, nodata NaN): a continuous colour ramp (NDVI: ColorBrewer RdYlGn, 11
  classes) pinned to the product's range (−1 … 1), so colours mean the same in every layer;
  NaN is transparent. Ramps and ranges are the registry's (core/products.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from qgis.core import (
    Qgis,
    QgsBilinearRasterResampler,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsCubicRasterResampler,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsMultiBandColorRenderer,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

from ..core import products
from .compat import SHADER_CONTINUOUS, SHADER_INTERPOLATED

#: reflectance shown from black to full colour in RGB layers (the registry's style)
RGB_REFLECTANCE = (products.get("rgb").style.minimum, products.get("rgb").style.maximum)
#: fractions cut at each end by the "cumulative" RGB stretch
CUMULATIVE_CUT = (0.02, 0.98)
#: pixels sampled for a cumulative cut (QGIS reads an overview of about this size)
CUMULATIVE_SAMPLE = 250_000
#: NDVI's ramp, low to high (the registry's style)
NDVI_COLORS = products.get("ndvi").style.colors()
PRODUCT_PROPERTY = "rsbatch/product"
_FLOAT_TYPES = (Qgis.DataType.Float32, Qgis.DataType.Float64)


def reflectance_factor(layer: QgsRasterLayer, band: int = 1) -> float:
    """Layer units per unit of reflectance: 1 when QGIS already applied the file's band scale
    (it then reports float values), else 1/scale (10000 for rsbatch's RGB)."""
    provider = layer.dataProvider()
    if provider.dataType(band) in _FLOAT_TYPES:
        return 1.0
    scale = provider.bandScale(band)
    return 1.0 / scale if scale not in (0.0, 1.0) else 10000.0


def rgb_limits(layer: QgsRasterLayer, mode: str = "fixed") -> list[tuple[float, float]]:
    """(min, max) of bands 1-3 in layer units: the fixed reflectance range, or a cumulative
    cut of each band (reads pixels: call it off the GUI thread for remote files)."""
    provider = layer.dataProvider()
    if mode == "cumulative":
        low, high = CUMULATIVE_CUT
        limits = []
        for band in (1, 2, 3):
            lo, hi = provider.cumulativeCut(band, low, high, QgsRectangle(), CUMULATIVE_SAMPLE)
            limits.append((lo, hi) if hi > lo else (lo, lo + 1))
        return limits
    factor = reflectance_factor(layer)
    return [(RGB_REFLECTANCE[0] * factor, RGB_REFLECTANCE[1] * factor)] * 3


def _smooth(layer: QgsRasterLayer, zoomed_in: bool) -> None:
    resample = layer.resampleFilter()
    if resample is None:
        return
    resample.setZoomedOutResampler(QgsBilinearRasterResampler())
    if zoomed_in:
        resample.setZoomedInResampler(QgsCubicRasterResampler())
    resample.setMaxOversampling(2.0)


def style_rgb(layer: QgsRasterLayer, limits: Sequence[tuple[float, float]] | None = None,
              product: str = "rgb") -> QgsMultiBandColorRenderer:
    """Bands 1, 2, 3 as red, green, blue, each stretched min → max (`rgb_limits`)."""
    provider = layer.dataProvider()
    limits = list(limits or rgb_limits(layer))
    renderer = QgsMultiBandColorRenderer(provider, 1, 2, 3)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for band, setter, (low, high) in zip((1, 2, 3), setters, limits):
        enhancement = QgsContrastEnhancement(provider.dataType(band))
        enhancement.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum, True)
        enhancement.setMinimumValue(low)
        enhancement.setMaximumValue(high)
        setter(enhancement)
    layer.setRenderer(renderer)
    _smooth(layer, zoomed_in=False)
    layer.setCustomProperty(PRODUCT_PROPERTY, product)
    layer.triggerRepaint()
    return renderer


def ramp(colors: Sequence[str]) -> QgsGradientColorRamp:
    """A continuous gradient through `colors`, evenly spaced."""
    qcolors = [QColor(c) for c in colors]
    step = 1.0 / (len(qcolors) - 1)
    stops = [QgsGradientStop(i * step, c) for i, c in enumerate(qcolors[1:-1], start=1)]
    return QgsGradientColorRamp(qcolors[0], qcolors[-1], False, stops)


def ramp_shader(style: products.Style) -> QgsColorRampShader:
    """The style's colour ramp, interpolated, pinned to its minimum … maximum."""
    low, high = style.minimum, style.maximum
    colors = style.colors()
    function = QgsColorRampShader(low, high, ramp(colors), SHADER_INTERPOLATED,
                                  SHADER_CONTINUOUS)
    items = []
    for index, color in enumerate(colors):
        value = low + (high - low) * index / (len(colors) - 1)
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(color), f"{value:.1f}"))
    function.setColorRampItemList(items)
    function.setClip(False)
    return function


def style_index(layer: QgsRasterLayer, product: str) -> QgsSingleBandPseudoColorRenderer:
    """Band 1 through the product's ramp (registry style); no-data (NaN) stays transparent."""
    style = products.get(product).style
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp_shader(style))
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(style.minimum)
    renderer.setClassificationMax(style.maximum)
    renderer.setNodataColor(QColor(0, 0, 0, 0))
    layer.setRenderer(renderer)
    _smooth(layer, zoomed_in=False)
    layer.setCustomProperty(PRODUCT_PROPERTY, product)
    layer.triggerRepaint()
    return renderer


def style_ndvi(layer: QgsRasterLayer) -> QgsSingleBandPseudoColorRenderer:
    """NDVI's style (RdYlGn from −1 to 1)."""
    return style_index(layer, "ndvi")


def style_product(layer: QgsRasterLayer, product: str,
                  limits: Sequence[tuple[float, float]] | None = None) -> None:
    """Style `layer` as `product` by the kind of its registry style."""
    kind = products.get(product).style.kind
    if kind == "rgb-stretch":
        style_rgb(layer, limits, product)
    elif kind == "ramp":
        style_index(layer, product)
    else:
        raise ValueError(f"product {product!r} has an unknown style kind {kind!r}")
