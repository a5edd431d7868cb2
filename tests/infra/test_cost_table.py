"""One source for what a job costs: core.costs, the estimate, the README, the benchmark."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from infra import cost_table
from qgis_rsbatch.core import costs
from qgis_rsbatch.core.contract import Job
from qgis_rsbatch.core.estimate import estimate

from .conftest import ROOT


def test_the_readme_cost_table_is_the_one_the_constants_make():
    text = cost_table.README.read_text(encoding="utf-8")
    assert cost_table.table() in text, "run `make cost-table`"
    assert cost_table.main(["--check"]) == 0


def test_the_readme_says_what_the_estimate_says_of_10000_full_tiles():
    bands = {k: f"s3://b/{k}.tif" for k in ("blue", "green", "red", "nir", "scl")}
    job = Job.from_dict({"job_id": "j", "cells": [
        {"tile": tile, "date": (date(2020, 1, 1) + timedelta(days=d)).isoformat(),
         "bands": bands, "products": ["rgb", "ndvi"], "output": "s3://r/x"}
        for d in range(2500) for tile in ("32TMT", "32TNT", "32TMS", "32TNS")]})
    guess = estimate(job, backend="aws")
    text = cost_table.table()
    assert f"{guess.vcpu_hours:.0f} vCPU-h" in text
    assert f"**${guess.dollars:.2f} in all**" in text
    assert 3 < guess.dollars < 5  # the order of magnitude the README always claimed


def test_the_worker_timings_are_the_benchmarks():
    measured = json.loads((ROOT / "bench" / "results" / "worker.json").read_text())
    ours = {tuple(c["products"].split(",")): c["seconds"] for c in measured["contenders"]
            if c["name"] == "ours"}
    assert set(ours) == set(costs.WORKER_BENCH["seconds"])
    for products, seconds in costs.WORKER_BENCH["seconds"].items():
        assert seconds == pytest.approx(ours[products], abs=0.05), products
    assert measured["date"][:10] in costs.WORKER_BENCH["source"]  # the same run


def test_the_readmes_speed_table_is_the_benchmarks():
    from bench.worker_bench import README_END, README_START, readme_table

    measured = json.loads((ROOT / "bench" / "results" / "worker.json").read_text())
    text = (ROOT / "README.md").read_text()
    table = text[text.index(README_START):text.index(README_END) + len(README_END)]
    assert table == readme_table(measured["contenders"])
    assert f"| {costs.WORKER_BENCH['seconds'][('rgb', 'ndvi')]:.1f} |" in table
