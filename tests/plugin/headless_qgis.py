"""A headless QGIS session as an analyst's QGIS runs it, for the ZIP-install tests.

Run with QGIS's own Python (Debian's /usr/bin/python3: no rasterio, no boto3), never the
project's .venv: `python3 headless_qgis.py steps.json result.json`. It starts QgsApplication
with QGIS's organisation and application names (so the profile is
~/.local/share/QGIS/QGIS3/profiles/default, as in QGIS desktop), puts the profile's plugin
folder on sys.path as QGIS does, loads the installed rsbatch plugin and its Processing
provider, runs the steps and writes what happened as JSON. Steps:

- {"do": "algorithm", "id": "rsbatch:…", "params": {…}, "load": bool}
- {"do": "modules"}: where rsbatch's modules were loaded from, and what sys.modules holds
- {"do": "python", "code": "…"}: exec code with `result` (a dict) to fill
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main(steps_path: str, result_path: str) -> int:
    from qgis.core import QgsApplication, QgsProject
    from qgis.PyQt.QtCore import QCoreApplication

    QCoreApplication.setOrganizationName("QGIS")
    QCoreApplication.setApplicationName("QGIS3")
    app = QgsApplication([], False)
    app.initQgis()
    profile = QgsApplication.qgisSettingsDirPath()
    sys.path.insert(0, os.path.join(profile, "python", "plugins"))  # what QGIS does
    sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    from processing.core.Processing import Processing

    Processing.initialize()
    from qgis_rsbatch import classFactory

    plugin = classFactory(None)  # as qgis_process loads plugins: Processing only
    plugin.initProcessing()
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    with open(steps_path, encoding="utf-8") as fh:
        steps = json.load(fh)
    results = []
    for step in steps:
        outcome: dict = {"do": step["do"]}
        try:
            if step["do"] == "algorithm":
                feedback = QgsProcessingFeedback()
                run = processing.runAndLoadResults if step.get("load") else processing.run
                answer = run(step["id"], step.get("params", {}), feedback=feedback)
                outcome["result"] = {k: v if isinstance(v, (str, int, float, list, type(None)))
                                     else str(v) for k, v in answer.items()}
                outcome["ok"] = True
            elif step["do"] == "modules":
                outcome["files"] = {name: getattr(module, "__file__", None)
                                    for name, module in sys.modules.items()
                                    if name.split(".")[0] in ("qgis_rsbatch", "worker")}
                outcome["rasterio"] = "rasterio" in sys.modules
                outcome["ok"] = True
            elif step["do"] == "python":
                scope: dict = {"result": {}}
                exec(step["code"], scope)  # noqa: S102 - the test's own code
                outcome["result"] = scope["result"]
                outcome["ok"] = True
        except QgsProcessingException as exc:
            outcome.update(ok=False, error=str(exc))
        except Exception as exc:  # report, and go on: QGIS must stay usable
            outcome.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc())
        outcome["layers"] = sorted(layer.name() for layer in
                                   QgsProject.instance().mapLayers().values())
        results.append(outcome)
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump({"profile": profile, "steps": results}, fh, indent=1)
    plugin.unload()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
