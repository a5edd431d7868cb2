"""How responsive the QGIS dock stays: `python -m bench.gui_bench` (offscreen).

Two figures that depend on the machine, so they are measured here and not asserted in tests
(the tests assert what cannot flake: the blocking work runs in task threads):

- the longest GUI-thread stall while the dock searches, plans and runs a local job on the
  sample scenes and loads its 8 layers: a 10 ms QTimer on the GUI thread, and the longest
  gap between its ticks;
- how long the job list takes to apply one poll of a 10,000-cell job in which two cells
  changed (on the GUI thread).

QGIS runs with a stub iface (pytest-qgis's) and private settings in a scratch folder.
Written to bench/results/gui.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


class GapRecorder:
    """A 10 ms timer on the GUI thread; the longest interval between its ticks is the
    longest time the GUI thread was busy (blocked) while recording."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qgis.PyQt.QtCore import QElapsedTimer, QTimer

        self.interval_ms = interval_ms
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.gaps: list[int] = []
        self.ticked = False

    def _tick(self) -> None:
        elapsed = self.clock.restart()
        if self.ticked:  # the first tick only starts the clock
            self.gaps.append(elapsed)
        self.ticked = True

    def start(self) -> GapRecorder:
        self.clock.start()
        self.timer.start()
        return self

    def stop(self) -> None:
        self.timer.stop()


def _start_qgis(work: str) -> tuple[Any, Any]:
    """A QgsApplication and a stub iface, with settings in `work` (never the user's)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["QGIS_CUSTOM_CONFIG_PATH"] = os.path.join(work, "qgis")
    os.environ["RSBATCH_HOME"] = os.path.join(work, "home")
    from pytest_qgis.mock_qgis_classes import MockMessageBar
    from pytest_qgis.qgis_interface import QgisInterface
    from qgis.core import QgsApplication
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtWidgets import QMainWindow

    app = QgsApplication([], False)
    app.initQgis()
    main = QMainWindow()
    canvas = QgsMapCanvas(main)
    iface = QgisInterface(canvas, MockMessageBar(), main)
    iface.addDockWidget = main.addDockWidget
    iface.removeDockWidget = main.removeDockWidget
    main.show()
    return app, iface


def measure_job(work: str, iface: Any) -> dict[str, Any]:
    """The longest GUI-thread stall while the dock runs the sample job end to end."""
    from qgis.core import QgsProject

    from qgis_rsbatch import classFactory
    from qgis_rsbatch.settings import Settings
    from tests.plugin.conftest import wait_until
    from tests.plugin.test_job_flow import plan_job, result_layers, submit, wait_finished
    from worker.samples import write_sample_catalog

    sample = write_sample_catalog(os.path.join(work, "sample"), crop=600)
    settings = Settings()
    settings.output_folder = os.path.join(work, "results")
    settings.poll_ms = 200
    settings.confirm_cells = 1000
    plugin = classFactory(iface)
    plugin.initGui()
    try:
        plugin.toggle_dock(True)
        dock = plugin.dock
        wait_until(lambda: dock.jobs_panel._history_task is None, 30, "the job history")
        recorder = GapRecorder().start()
        started = time.perf_counter()
        plan_job(dock, sample)
        job_id = submit(dock)
        status = wait_finished(dock, job_id)
        wait_until(lambda: len(result_layers(job_id)) == 8, 60, "8 result layers")
        seconds = time.perf_counter() - started
        recorder.stop()
        if not status.succeeded:
            raise SystemExit(f"the benchmark job failed: {status.counts}")
    finally:
        plugin.unload()
        QgsProject.instance().clear()
    gaps = sorted(recorder.gaps)
    return {"seconds": seconds, "ticks": len(gaps), "max_ms": gaps[-1],
            "p99_ms": gaps[int(0.99 * (len(gaps) - 1))], "cells": len(status.records)}


def measure_poll(cells: int = 10_000, repeats: int = 7) -> dict[str, Any]:
    """Milliseconds for the job list to apply one poll in which two cells changed."""
    from qgis_rsbatch.core.backends import JobStatus
    from qgis_rsbatch.core.contract import Status
    from qgis_rsbatch.core.tasklog.schema import Record
    from qgis_rsbatch.gui.job_model import JobModel

    times = []
    for attempt in range(repeats):
        model = JobModel()
        records = [Record(task_id=f"job#{i}", job_id="job", cell_id=f"c{i:05d}", tile="32TMT",
                          date="2024-06-01", status=Status.PENDING) for i in range(cells)]
        model.update_job("job", JobStatus("job", tuple(records), "aws"), backend="AWS")
        records[5 + attempt] = records[5 + attempt].moved(Status.RUNNING)
        records[7 + attempt] = records[7 + attempt].moved(Status.RUNNING).moved(
            Status.FAILED, error="Spot")
        started = time.perf_counter()
        model.update_job("job", JobStatus("job", tuple(records), "aws"), backend="AWS")
        times.append(1000 * (time.perf_counter() - started))
    return {"cells": cells, "median_ms": statistics.median(times), "max_ms": max(times),
            "repeats": repeats}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="rsbatch-gui-bench-")
    try:
        app, iface = _start_qgis(work)
        print("GUI responsiveness:", flush=True)
        poll = measure_poll()
        job = measure_job(work, iface)
        app.exitQgis()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    text = "\n".join([
        "# GUI responsiveness (QGIS offscreen, stub iface)",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"(load average {load} at the end). Figures depend on the machine and its load: "
        "tests only assert that the work runs off the GUI thread.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| longest GUI-thread stall, whole local job ({job['cells']} cells, search → 8 "
        f"layers, {job['seconds']:.1f} s) | {job['max_ms']} ms |",
        f"| 99th percentile gap between 10 ms ticks ({job['ticks']} ticks) | "
        f"{job['p99_ms']} ms |",
        f"| job list: one poll of a {poll['cells']:,}-cell job, two cells changed (median of "
        f"{poll['repeats']}) | {poll['median_ms']:.1f} ms |",
        f"| … the slowest of those polls | {poll['max_ms']:.1f} ms |",
    ]) + "\n"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "gui.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
