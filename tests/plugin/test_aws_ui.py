"""The AWS side of the dock against a fake backend with the Backend interface: stack outputs
file, profile name and region, the dollar estimate and its confirmation, submit, polling,
a failed cell's reason, S3 results loaded through the stack's settings; and what the dock
says when boto3 is missing."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
from qgis.core import Qgis

from qgis_rsbatch.core.backends import JobStatus, get_backend
from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.tasklog import user_data_dir
from qgis_rsbatch.core.tasklog.schema import Record
from qgis_rsbatch.settings import Settings
from tests.plugin.conftest import messages, wait_until
from tests.plugin.test_job_flow import plan_job

STACK = {"StackName": "team", "Region": "eu-central-1", "ResultsBucket": "team-results",
         "StateMachineArn": "arn:aws:states:eu-central-1:1:stateMachine:x",
         "TaskLogTable": "task-log", "Profile": None, "EndpointUrl": None}


class FakeAws:
    """The Backend interface, in memory: each status() call moves every cell one step; the
    cell of 32TNT 2024-06-11 fails the way a Spot interruption would."""

    name = "aws"

    def __init__(self, **options):
        self.options = options
        self.jobs: dict[str, list[Record]] = {}
        self.calls: list[str] = []

    def default_output(self):
        return "s3://team-results/results"

    def submit(self, job, *, wait=False, progress=None):
        self.calls.append("submit")
        self.submitted = job
        self.jobs[job.job_id] = [Record.for_cell(c) for c in job.cells]
        return self.status(job.job_id, advance=False)

    def status(self, job_id, advance=True):
        self.calls.append("status")
        records = self.jobs[job_id]
        if advance:
            moved = []
            for old in records:
                new = old
                if old.status is Status.PENDING:
                    new = old.moved(Status.RUNNING)
                elif old.status is Status.RUNNING and old.cell_id == "32TNT_2024-06-11":
                    new = old.moved(Status.FAILED, error="Batch job 42 failed: Host EC2 "
                                                         "(instance i-1) terminated (Spot)")
                elif old.status is Status.RUNNING:
                    outputs = {p: f"s3://team-results/results/{job_id}/{old.tile}_"
                                  f"{old.date}_{p}.tif" for p in ("rgb", "ndvi")}
                    new = old.moved(Status.SUCCEEDED, outputs=outputs)
                moved.append(new)
            self.jobs[job_id] = records = moved
        return JobStatus(job_id, tuple(records), "aws")

    def cancel(self, job_id):
        self.calls.append("cancel")
        self.jobs[job_id] = [r.moved(Status.CANCELLED, error="cancelled by the user")
                             if not r.status.finished else r for r in self.jobs[job_id]]
        return self.status(job_id, advance=False)

    def resume(self, job_id, *, wait=False, progress=None):
        self.calls.append("resume")
        self.jobs[job_id] = [replace(r.moved(Status.PENDING), error=None)
                             if r.status in (Status.FAILED, Status.CANCELLED) else r
                             for r in self.jobs[job_id]]
        return self.status(job_id, advance=False)

    def wait(self, job_id, progress=None, interval=1.0, timeout=None):
        return self.status(job_id)


@pytest.fixture
def aws(dock, monkeypatch):
    """The dock with a deployed stack 'team' and a fake AWS backend behind the pool."""
    folder = os.path.join(user_data_dir(), "stacks")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "team.json"), "w") as fh:
        json.dump(STACK, fh)
    made = {}

    def factory(name, **options):
        if name == "aws":
            made["aws"] = FakeAws(**options)
            return made["aws"]
        return get_backend(name, **options)

    dock.context.pool.factory = factory
    dock.context.pool.clear()
    monkeypatch.setattr("qgis_rsbatch.gui.backend_form.boto3_missing", lambda: None)
    run = dock.run_panel
    run.backend_form.refresh_stacks()
    run.set_backend("aws")
    run.backend_form.stack_combo.setEditText("team")
    run.backend_form.profile_combo.setEditText("analyst")
    return made


def test_aws_job_from_the_dock(dock, aws, sample, qgis_iface, monkeypatch):
    Settings().auto_load = True
    Settings().confirm_dollars = 0.0
    asked = []
    dock.context.confirm = lambda parent, title, text: asked.append(text) or True
    loads = []
    monkeypatch.setattr(dock.jobs_panel.loader, "load", loads.append)

    run = dock.run_panel
    assert run.backend_form.aws_note.isHidden()
    assert run.backend_form.s3_edit.placeholderText() == "s3://team-results/results"
    assert run.backend_form.region_edit.placeholderText() == "eu-central-1"
    plan_job(dock, sample)
    assert "$" in run.estimate_label.text() and "vCPU-hours" in run.estimate_label.text()
    run.submit_button.click()
    wait_until(dock.jobs_panel.model.rowCount, 30, "the job")
    assert asked and "larger than your confirmation threshold" in asked[0]

    backend = aws["aws"]
    assert backend.options == {"stack": "team", "profile": "analyst", "region": None}
    job = backend.submitted
    assert {c.output for c in job.cells} == {"s3://team-results/results"}
    job_id = job.job_id
    monitor = dock.jobs_panel.monitor
    wait_until(lambda: monitor.jobs[job_id].finished, 30, "the fake job to finish")

    cell = "32TNT_2024-06-11"
    assert dock.jobs_panel.cell_text(job_id, cell, 1) == "failed"
    assert "Spot" in dock.jobs_panel.cell_text(job_id, cell, 3)
    assert any("Spot" in m for m in messages(qgis_iface, Qgis.MessageLevel.Warning))
    assert "AWS stack team" in dock.jobs_panel.model.item(
        dock.jobs_panel.model.job_row(job_id), 3).text()
    # succeeded cells' results were asked for, from S3, with the stack's region and profile
    requested = [o.uri for request in loads for o in request.outputs]
    assert len(requested) == 6 and all(u.startswith("s3://team-results/") for u in requested)
    assert loads[0].s3.profile == "analyst" and loads[0].s3.region == "eu-central-1"

    dock.jobs_panel.select_job(job_id)
    dock.jobs_panel._actions["retry"].click()
    wait_until(lambda: "resume" in backend.calls, 30, "resume")
    wait_until(lambda: monitor.jobs[job_id].finished, 30, "the retried job")
    assert Settings().aws_profile == "analyst" and Settings().backend == "aws"


def test_no_confirmation_below_the_threshold(dock, aws, sample):
    Settings().confirm_dollars = 1000.0
    asked = []
    dock.context.confirm = lambda *args: asked.append(args) or True
    plan_job(dock, sample)
    dock.run_panel.submit_button.click()
    wait_until(dock.jobs_panel.model.rowCount, 30, "the job")
    assert asked == []


def test_declining_the_confirmation_submits_nothing(dock, aws, sample):
    Settings().confirm_dollars = 0.0
    dock.context.confirm = lambda *args: False
    plan_job(dock, sample)
    dock.run_panel.submit_button.click()
    assert "aws" not in aws or "submit" not in aws["aws"].calls
    assert dock.jobs_panel.model.rowCount() == 0


def test_cancel_on_aws(dock, aws, sample):
    Settings().poll_ms = 60_000  # no poll gets in the way
    dock.jobs_panel.set_poll_interval(60_000)
    plan_job(dock, sample)
    dock.run_panel.submit_button.click()
    wait_until(dock.jobs_panel.model.rowCount, 30, "the job")
    job_id = dock.jobs_panel.model.job_ids()[0]
    dock.jobs_panel.select_job(job_id)
    dock.jobs_panel._actions["cancel"].click()
    wait_until(lambda: dock.jobs_panel.monitor.jobs[job_id].finished, 30, "cancel")
    assert dock.jobs_panel.cell_text(job_id, "32TMT_2024-06-01", 1) == "cancelled"


def test_missing_boto3_says_what_to_install(dock, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "boto3" else real(name, *a))
    dock.run_panel.set_backend("aws")
    note = dock.run_panel.backend_form.aws_note
    assert not note.isHidden()
    assert "pip install boto3" in note.text() and "python3-boto3" in note.text()


def test_a_stack_never_deployed_says_how_to_deploy(dock, monkeypatch):
    monkeypatch.setattr("qgis_rsbatch.gui.backend_form.boto3_missing", lambda: None)
    dock.run_panel.set_backend("aws")
    dock.run_panel.backend_form.stack_combo.setEditText("nowhere")
    assert "make deploy STACK=nowhere" in dock.run_panel.backend_form.aws_note.text()
