"""Settings persist under rsbatch/ (and never hold a secret); QGIS's proxy reaches the catalog
search; the worker-Python check says exactly what to install; the scene list's ticks."""

from __future__ import annotations

import sys
import urllib.request

import pytest
from qgis.core import QgsNetworkAccessManager, QgsSettings
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtNetwork import QNetworkProxy

from qgis_rsbatch.gui.backends import check_worker_python
from qgis_rsbatch.gui.proxy import proxies_for
from qgis_rsbatch.settings import Settings
from tests.plugin.conftest import wait_until


def test_settings_persist_under_the_rsbatch_prefix():
    settings = Settings()
    settings.output_folder = "/data/out"
    settings.products = ["ndvi"]
    settings.max_cloud = 12.5
    settings.cloud_mask = False
    fresh = Settings(QgsSettings())
    assert fresh.output_folder == "/data/out" and fresh.products == ["ndvi"]
    assert fresh.max_cloud == 12.5 and fresh.cloud_mask is False
    keys = [k for k in QgsSettings().allKeys() if k.startswith("rsbatch/")]
    assert "rsbatch/local/output_folder" in keys
    assert not [k for k in keys if any(w in k.lower() for w in ("secret", "password",
                                                                "access_key", "token"))]


def test_the_dock_remembers_the_search_and_run_choices(dock, sample):
    from tests.plugin.test_job_flow import plan_job

    dock.search_panel.product_checks["ndvi"].setChecked(False)
    plan_job(dock, sample)
    assert Settings().products == ["rgb"]
    assert Settings().catalog == sample["catalog"]
    assert sample["catalog"] in Settings().recent_catalogs


def _set_proxy(kind: QNetworkProxy.ProxyType, host: str, port: int, user: str = "",
               password: str = "", excludes: tuple[str, ...] = ()):
    settings = QgsSettings()
    settings.setValue("proxy/proxyEnabled", True)
    settings.setValue("proxy/proxyType", "HttpProxy" if kind ==
                      QNetworkProxy.ProxyType.HttpProxy else "Socks5Proxy")
    proxy = QNetworkProxy(kind, host, port, user, password)
    QgsNetworkAccessManager.instance().setFallbackProxyAndExcludes(proxy, list(excludes), [])


@pytest.fixture
def no_proxy_after():
    yield
    QgsSettings().remove("proxy")
    QgsNetworkAccessManager.instance().setFallbackProxyAndExcludes(QNetworkProxy(), [], [])


def test_qgis_proxy_becomes_the_catalog_searchs_proxies(no_proxy_after):
    assert proxies_for("https://earth-search.aws.element84.com/v1") == {}
    _set_proxy(QNetworkProxy.ProxyType.HttpProxy, "proxy.example", 3128, "ana", "p@ss",
               excludes=("https://internal.example",))
    expected = "http://ana:p%40ss@proxy.example:3128"
    assert proxies_for("https://earth-search.aws.element84.com/v1") == {
        "http": expected, "https": expected}
    assert proxies_for("https://internal.example/stac") == {}
    QgsSettings().setValue("proxy/proxyType", "DefaultProxy")
    assert proxies_for("https://earth-search.aws.element84.com/v1") is None


def test_the_search_goes_through_the_configured_proxy(dock, sample, no_proxy_after,
                                                      monkeypatch):
    """The search task is given QGIS's proxy (a static catalog ignores it, so spy)."""
    seen = {}
    from qgis_rsbatch.core import catalog

    real = catalog.search

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(catalog, "search", spy)
    _set_proxy(QNetworkProxy.ProxyType.HttpProxy, "proxy.example", 8080)
    from tests.plugin.test_job_flow import plan_job

    plan_job(dock, sample)
    assert seen["proxies"] == {"http": "http://proxy.example:8080",
                               "https": "http://proxy.example:8080"}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(seen["proxies"]))
    assert any(isinstance(h, urllib.request.ProxyHandler) for h in opener.handlers)


def test_worker_check_accepts_the_project_venv():
    result = check_worker_python(sys.executable)
    assert result.ok, result.message
    assert "rasterio" in result.message


def test_worker_check_says_what_to_install(tmp_path):
    result = check_worker_python("/usr/bin/python3")
    assert not result.ok
    assert "/usr/bin/python3 -m pip install" in result.message and "rasterio" in result.message
    missing = check_worker_python(str(tmp_path / "nope" / "python"))
    assert not missing.ok and "not an executable" in missing.message


def test_worker_check_refuses_an_environment_made_before_the_worker_needed_numba(tmp_path):
    """An environment set up by an older plugin has numpy and rasterio but not numba and
    zstandard: the check names them (and the set-up runs again), rather than letting the
    first cell fail on an import."""
    hidden = tmp_path / "hide"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(
        "import sys\nsys.modules['numba'] = None\nsys.modules['zstandard'] = None\n")
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={hidden} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    result = check_worker_python(str(python))
    assert not result.ok
    assert "pip install numba zstandard" in result.message


def test_worker_check_from_the_settings_tab(dock):
    panel = dock.settings_panel
    wait_until(lambda: panel.last_check is not None, 60, "the check made on opening")
    panel.last_check = None
    panel.python_widget.setFilePath("/usr/bin/python3")
    assert Settings().worker_python == "/usr/bin/python3"
    panel.check_worker()
    wait_until(lambda: panel.last_check is not None, 60, "the check")
    assert not panel.last_check.ok
    assert "pip install" in panel.check_label.text()


def test_untick_scenes(dock, sample):
    from tests.plugin.test_job_flow import plan_job

    plan_job(dock, sample)
    model = dock.search_panel.model
    assert dock.search_panel.count_label.text() == "4 of 4 scene(s) ticked"
    model.setData(model.index(1, 0), Qt.CheckState.Unchecked, Qt.ItemDataRole.CheckStateRole)
    assert len(model.selected()) == 3
    wait_until(lambda: dock.run_panel.plan, 30, "a new estimate")
    assert "3 cell(s)" in dock.run_panel.estimate_label.text()
    dock.search_panel.none_button.click()
    assert not dock.run_panel.submit_button.isEnabled()


def test_submitting_with_a_python_that_cannot_run_the_worker_says_what_to_install(
        dock, sample, qgis_iface):
    from qgis.core import Qgis

    from tests.plugin.test_job_flow import plan_job

    Settings().worker_python = "/usr/bin/python3"
    plan_job(dock, sample)
    dock.run_panel.submit_button.click()
    wait_until(lambda: dock.run_panel._submit_task is None, 60, "the submit task")
    critical = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert any("/usr/bin/python3 lacks" in m and "pip install" in m for m in critical)
    assert dock.jobs_panel.model.rowCount() == 0


def test_opening_the_dock_checks_the_worker_python(dock):
    wait_until(lambda: dock.settings_panel.last_check is not None, 60, "the check")
    assert dock.settings_panel.last_check.ok


def test_changing_the_search_clears_stale_scenes(dock, sample):
    from tests.plugin.test_job_flow import plan_job

    plan_job(dock, sample)
    dock.search_panel.cloud_spin.setValue(10)
    assert dock.search_panel.model.scenes() == []
    assert "Search again" in dock.search_panel.status_label.text()
    assert not dock.run_panel.submit_button.isEnabled()


def test_the_area_cloud_limit_goes_from_the_dock_into_the_request(dock):
    from qgis.core import QgsApplication

    panel = dock.search_panel
    assert panel.aoi_cloud_spin.text() == "no limit" and panel.max_aoi_cloud() is None
    panel.aoi_cloud_spin.setValue(60)
    assert panel.request_options()["max_aoi_cloud"] == 60.0
    panel._save()  # what a search does first
    assert Settings().max_aoi_cloud == 60.0
    algorithm = QgsApplication.processingRegistry().algorithmById("rsbatch:runjob")
    parameter = algorithm.parameterDefinition("MAX_AOI_CLOUD")
    assert parameter.flags() & parameter.Flag.FlagOptional and parameter.maximum() == 100
