"""The GUI's product choices, styles and layer groups come from the registry: the dock's
checkboxes, Processing's enum and the CLI's help all list exactly its products."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

from qgis_rsbatch import cli
from qgis_rsbatch.core import products
from qgis_rsbatch.gui.layer_tree import add_output_layer, job_group
from qgis_rsbatch.gui.results import Output
from qgis_rsbatch.gui.styles import style_product
from tests.plugin.test_results import _ndvi_file, _rgb_file

INDICES = [n for n in products.NAMES if products.get(n).is_index]


def test_dock_processing_and_cli_offer_exactly_the_registry_s_products(dock, qgis_processing):
    checks = dock.search_panel.product_checks
    assert list(checks) == list(products.NAMES)
    assert [box.text() for box in checks.values()] == [
        p.title for p in products.PRODUCTS.values()]
    assert [box.toolTip() for box in checks.values()] == [
        p.description for p in products.PRODUCTS.values()]
    chosen = products.NAMES[1::2]  # every other product
    for name, box in checks.items():
        box.setChecked(name in chosen)
    assert dock.search_panel.products() == chosen
    assert dock.search_panel.request_options()["products"] == chosen

    # the dock's plugin registered the Processing provider (initGui calls initProcessing)
    algorithm = QgsApplication.processingRegistry().algorithmById("rsbatch:runjob")
    enum = algorithm.parameterDefinition("PRODUCTS")
    assert enum.options() == [p.title for p in products.PRODUCTS.values()]
    assert [products.NAMES[i] for i in enum.defaultValue()] == list(products.DEFAULT_PRODUCTS)

    run = cli._parser()._subparsers._group_actions[0].choices["run"]
    option = next(a for a in run._actions if "--products" in a.option_strings)
    assert option.help.startswith("comma-separated, some of: " + ", ".join(products.NAMES))


@pytest.mark.parametrize("product", INDICES)
def test_each_index_is_styled_with_its_registry_ramp(tmp_path, product):
    layer = QgsRasterLayer(_ndvi_file(tmp_path / f"{product}.tif"), product, "gdal")
    style_product(layer, product)
    style = products.get(product).style
    renderer = layer.renderer()
    function = renderer.shader().rasterShaderFunction()
    assert (function.minimumValue(), function.maximumValue()) == (style.minimum, style.maximum)
    assert renderer.nodataColor().alpha() == 0
    ok, r, g, b, _a = function.shade(style.maximum)
    assert ok and f"#{r:02x}{g:02x}{b:02x}" == style.colors()[-1]
    ok, r, g, b, _a = function.shade(style.minimum)
    assert ok and f"#{r:02x}{g:02x}{b:02x}" == style.colors()[0]
    assert layer.customProperty("rsbatch/product") == product


def test_product_groups_stack_in_the_registry_s_layer_order(tmp_path, qgis_new_project):
    project = QgsProject.instance()
    path = _ndvi_file(tmp_path / "i.tif")
    for product in reversed(products.NAMES):
        source = _rgb_file(tmp_path / "r.tif") if product == "rgb" else path
        add_output_layer(project, Output("job-2", "32TMT_2024-06-01", "32TMT", "2024-06-01",
                                         product, f"file://{source}?{product}"), source)
    group = job_group(project, "job-2", create=False)
    titles = [products.get(name).title for name in products.LAYER_ORDER]
    assert [g.name() for g in group.children()] == titles and titles[-1] == "RGB"
    last = products.NAMES[-1]
    assert group.findGroup(products.get(last).title).findLayers()[0].name() == (
        f"32TMT 2024-06-01 {products.get(last).title} · job-2")
