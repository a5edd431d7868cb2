"""`make screenshots-zip`: the plugin as an analyst gets it, in real QGIS under Xvfb.

Outside QGIS (the project's Python): unzip `make package`'s ZIP into a throw-away QGIS
profile (the plugin enabled, no checkout, no worker Python), point pip only at the
wheelhouse (`make wheelhouse`), start `xvfb-run qgis --code <this file>`.
Inside QGIS: press "Try it with sample data", answer the offer to set up the worker
environment (a real modal question: screenshot, then Yes), wait for the set-up and the
sample data, search, submit, wait for the layers, show the Settings tab's worker line.
The steps and screenshots are tools/screenshots.py's Driver's.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile

CONFIG_ENV = "RSBATCH_SCREENSHOTS_ZIP"
try:
    ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
except NameError:  # run by QGIS's --code, which gives no __file__
    ROOT = json.loads(os.environ[CONFIG_ENV])["root"]
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.screenshots import SCREEN, Driver, new_profile, run_qgis  # noqa: E402


# --- outside QGIS ----------------------------------------------------------------------------
def prepare_and_run(plugin_zip: str, wheelhouse: str, out: str, work: str,
                    timeout: int) -> int:
    work = os.path.abspath(work)
    profile = new_profile(work)
    with zipfile.ZipFile(plugin_zip) as archive:  # Plugins ▸ Install from ZIP
        archive.extractall(os.path.join(profile, "python", "plugins"))
    config = {"out": os.path.abspath(out), "results": os.path.join(work, "results"),
              "profile": profile, "root": ROOT}
    os.makedirs(config["out"], exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "RSBATCH", "QT_QPA"))}
    venv_bin = os.path.join(sys.prefix, "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != venv_bin)
    env.update({CONFIG_ENV: json.dumps(config), "HOME": os.path.join(work, "home"),
                "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
                "PIP_FIND_LINKS": os.path.abspath(wheelhouse)})
    os.makedirs(env["HOME"])
    print("starting QGIS under Xvfb with the plugin from the ZIP …", flush=True)
    result = run_qgis("screenshots-zip", work, os.path.abspath(__file__), env, timeout,
                      os.path.join(config["out"], ".screenshots-zip.json"))
    if result is None:
        return 1
    for path in result["shots"]:
        print(f"  {path}")
    return 0


# --- inside QGIS -------------------------------------------------------------------------------
class ZipDriver(Driver):
    """The first minutes of a ZIP install: sample data, the set-up offer, a whole job."""

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        self.steps = [self.setup, self.press_sample, self.offer, self.setting_up,
                      self.filled, self.search_sample, self.scenes_listed, self.submit,
                      self.finished_job, self.settings_tab, self.done]
        self.sample: dict = {}

    def setup(self):
        self.iface.mainWindow().setGeometry(0, 0, *SCREEN)
        self.iface.newProject(False)
        from qgis_rsbatch.environments import profile_folder
        from qgis_rsbatch.settings import Settings

        # the plugin must come from the profile, never from a checkout
        here = os.path.realpath(profile_folder())
        if not here.startswith(os.path.realpath(self.config["profile"])):
            raise AssertionError(f"the profile folder is {here}")
        Settings().output_folder = self.config["results"]
        self.plugin.toggle_dock(True)
        self.dock.setMinimumWidth(470)
        self.dock.sample_data.ready.connect(self.sample.update)
        return True

    def press_sample(self):
        from qgis.PyQt.QtCore import QTimer

        # a modal question opens a nested event loop: press from a fresh timer turn
        QTimer.singleShot(0, self.dock.sample_button.click)
        return True

    def offer(self):
        from qgis.PyQt.QtWidgets import QApplication, QMessageBox

        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            return False
        self.shot("zip-setup-offer.png")
        box.button(QMessageBox.StandardButton.Yes).click()
        return True

    def setting_up(self):
        setup = self.dock.context.worker_setup
        if setup.task is None or setup.task.progress() < 20:
            return bool(self.sample)  # already past it (a fast wheelhouse)
        self.shot("zip-setup-running.png")
        return True

    def filled(self):
        if not self.sample or not self.dock.aoi_panel.tiles:
            return False
        self.zoom_to_sample(16)
        return self.rendered_shot("zip-sample-filled.png")

    def zoom_to_sample(self, factor: float) -> None:
        self.config["sample"] = self.sample
        self.zoom_to_aoi(factor)

    def search_sample(self):
        self.zoom_to_sample(1.3)
        self.dock.search_panel.search_button.click()
        return True

    def scenes_listed(self):
        return bool(self.dock.search_panel.model.scenes() and self.dock.run_panel.plan)

    def finished_job(self):
        from qgis.core import QgsProject

        panel = self.dock.jobs_panel
        if not panel.model.rowCount():
            return False
        self.job_id = panel.model.job_ids()[0]
        job = panel.monitor.jobs.get(self.job_id)
        layers = [la for la in QgsProject.instance().mapLayers().values()
                  if la.customProperty("rsbatch/job_id") == self.job_id]
        if job is None or not job.finished or len(layers) < 2 * len(job.status.records):
            return False
        if self._render_for != "zip-sample-results.png":
            panel.select_job(self.job_id)
            panel.tree.expandAll()
            self.zoom_to_sample(1.15)
        return self.rendered_shot("zip-sample-results.png")

    def settings_tab(self):
        panel = self.dock.settings_panel
        if not getattr(self, "_checking", False):
            self._checking = True
            self.dock.show_tab("settings")
            panel.last_check = None
            panel.check_worker(announce=False)
            return False
        if panel.last_check is None:
            return False
        if not panel.last_check.ok:
            raise AssertionError(panel.last_check.message)
        self.shot("zip-settings-worker.png")
        return True

    def done(self):
        from qgis.core import QgsApplication

        self.timer.stop()
        with open(os.path.join(self.config["out"], ".screenshots-zip.json"), "w") as fh:
            json.dump({"shots": self.shots, "error": self.error, "job_id": self.job_id}, fh)
        QgsApplication.exit(0)
        return True


def _main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zip", required=True, help="the plugin ZIP (make package)")
    parser.add_argument("--wheelhouse", default="build/wheelhouse")
    parser.add_argument("--out", default="docs", help="where the PNGs go")
    parser.add_argument("--work", default="build/screenshots-zip", help="scratch folder")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    return prepare_and_run(args.zip, args.wheelhouse, args.out, args.work, args.timeout)


if os.environ.get(CONFIG_ENV) and "qgis.utils" in sys.modules and \
        getattr(sys.modules["qgis.utils"], "iface", None) is not None:
    _DRIVER = ZipDriver(json.loads(os.environ[CONFIG_ENV]))
    _DRIVER.start()
elif __name__ == "__main__":
    sys.exit(_main())
