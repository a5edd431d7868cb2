"""The template checked as it stands: linters, the task-log schema, IAM, the state machine.

cfn-lint, asl-validator (npm) and checkov (its own virtualenv) are installed by `make test`
(infra/infra.mk); run alone, a test whose tool is missing is skipped with the command that
installs it, except under CI where a missing tool is a failure.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qgis_rsbatch.core.tasklog import schema

from .conftest import ROOT, TEMPLATE, definition_text, load_template, state_machine_definition
from .motohooks import SPOT_REASON, _retry_action

ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
CHECKOV = ROOT / ".checkov-venv" / "bin" / "checkov"
#: actions AWS offers no resource-level permissions for: "*" is the only possible Resource
UNSCOPABLE = {
    "batch:DescribeJobs", "batch:ListJobs", "batch:DescribeJobQueues",
    "batch:DescribeComputeEnvironments", "cloudwatch:PutMetricData", "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules", "xray:GetSamplingTargets", "logs:CreateLogDelivery",
    "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def _tool(path: Path, install: str) -> str:
    if path.exists():
        return str(path)
    if os.environ.get("CI"):
        pytest.fail(f"{path} is missing: `{install}` should have installed it")
    pytest.skip(f"{path.name} is not installed: run `{install}`")
    return ""


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


# --- linters -------------------------------------------------------------------------------

def test_cfn_lint_finds_nothing():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    done = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _asl_validate(definition: dict, tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    validator = _tool(ASL_VALIDATOR, "make node_modules/.installed")
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(definition))
    return subprocess.run([validator, "--json-path", str(path)], capture_output=True,
                          text=True, check=False)


def test_asl_validator_accepts_the_state_machine_and_both_map_variants(tmp_path):
    definition = state_machine_definition()
    done = _asl_validate(definition, tmp_path, "whole")
    assert done.returncode == 0, done.stdout + done.stderr
    # each variant's per-cell processor, validated as a state machine of its own
    for name in ("Run cells", "Run cells (distributed)"):
        processor = definition["States"][name]["ItemProcessor"]
        done = _asl_validate({"StartAt": processor["StartAt"], "States": processor["States"]},
                             tmp_path, name.replace(" ", "_"))
        assert done.returncode == 0, (name, done.stdout + done.stderr)


def test_asl_validator_would_catch_a_dangling_next(tmp_path):
    definition = state_machine_definition()
    definition["States"]["Summarize"]["Next"] = "Nowhere"
    assert _asl_validate(definition, tmp_path, "broken").returncode != 0


def test_checkov_finds_nothing_and_every_skip_says_why(template):
    checkov = _tool(CHECKOV, "make .checkov-venv/.installed-3.3.30")
    done = subprocess.run([checkov, "-f", str(TEMPLATE), "--framework", "cloudformation",
                           "--skip-download", "--quiet", "-o", "json"],
                          capture_output=True, text=True, check=False)
    report = json.loads(done.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 30, f"{name} skips {skip['id']} without a reason"


# --- the task log: one schema ----------------------------------------------------------------

def test_the_table_is_the_one_core_tasklog_schema_describes(template):
    table = template["Resources"]["TaskLogTable"]["Properties"]
    assert template["Parameters"]["TaskLogTableName"]["Default"] == schema.TABLE_NAME
    assert table["TableName"] == {"Ref": "TaskLogTableName"}
    # keys, index and billing as the tests' and benches' moto tables are made
    shape = schema.table_shape()
    assert {key: table[key] for key in shape} == shape
    assert table["TimeToLiveSpecification"] == {"AttributeName": schema.TTL_ATTRIBUTE,
                                                "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert template["Outputs"]["JobIndex"]["Value"] == schema.JOB_INDEX
    query = template["Resources"]["SummaryFunctionRole"]["Properties"]["Policies"][0]
    assert {"Fn::Sub": f"${{TaskLogTable.Arn}}/index/{schema.JOB_INDEX}"} in [
        s["Resource"] for s in query["PolicyDocument"]["Statement"]]


# --- security ------------------------------------------------------------------------------

def _statements(template: dict) -> list[tuple[str, dict]]:
    found = []
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for policy in props.get("Policies", []):
            found += [(name, s) for s in policy["PolicyDocument"]["Statement"]]
        if resource["Type"] == "AWS::S3::BucketPolicy":
            found += [(name, s) for s in props["PolicyDocument"]["Statement"]]
    return found


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def test_no_policy_grants_a_wildcard_where_a_resource_can_be_named(template):
    statements = _statements(template)
    assert len(statements) > 20
    for owner, statement in statements:
        if statement["Effect"] != "Allow":
            continue
        actions = _as_list(statement["Action"])
        assert all("*" not in action for action in actions), (owner, actions)
        assert "Principal" not in statement, owner
        for resource in _as_list(statement["Resource"]):
            if resource == "*":
                assert set(actions) <= UNSCOPABLE, (owner, actions)
            else:  # a named resource, or one of its own children (bucket/*, table/index/…)
                text = json.dumps(resource)
                assert '"*"' not in text and ":*:*" not in text, (owner, resource)


def test_each_role_is_assumed_by_one_service(template):
    for name, role in resources(template, "AWS::IAM::Role").items():
        [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert list(statement["Principal"]) == ["Service"], name
        assert isinstance(statement["Principal"]["Service"], str), name


def test_the_results_bucket_is_private_encrypted_and_denies_plain_http(template):
    bucket = template["Resources"]["ResultsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policy = template["Resources"]["ResultsBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "ResultsBucket"}
    deny = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert len(deny) == 1
    assert deny[0]["Principal"] == "*" and deny[0]["Action"] == "s3:*"
    assert {"Fn::GetAtt": ["ResultsBucket", "Arn"]} in deny[0]["Resource"]
    assert {"Fn::Sub": "${ResultsBucket.Arn}/*"} in deny[0]["Resource"]
    expire = next(r for r in bucket["LifecycleConfiguration"]["Rules"]
                  if r["Id"] == "ExpireOldResults")
    assert expire["ExpirationInDays"]["Fn::If"][1] == {"Ref": "ResultsRetentionDays"}


def test_the_worker_security_group_admits_nothing_in(template):
    group = template["Resources"]["WorkerSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert [(r["FromPort"], r["ToPort"]) for r in group["SecurityGroupEgress"]] == [(443, 443)]


# --- Batch -----------------------------------------------------------------------------------

def test_spot_capacity_with_an_optional_on_demand_environment_behind_it(template):
    spot = template["Resources"]["SpotComputeEnvironment"]["Properties"]["ComputeResources"]
    assert spot["Type"] == "SPOT"
    assert set(template["Parameters"]["SpotAllocationStrategy"]["AllowedValues"]) == {
        "SPOT_CAPACITY_OPTIMIZED", "SPOT_PRICE_CAPACITY_OPTIMIZED"}
    for key in ("MinvCpus", "DesiredvCpus", "MaxvCpus"):
        assert spot[key] == {"Ref": f"Spot{key}"}
    order = template["Resources"]["JobQueue"]["Properties"]["ComputeEnvironmentOrder"]["Fn::If"]
    assert order[0] == "HasOnDemand"
    assert [e["ComputeEnvironment"]["Ref"] for e in order[1]] == [
        "SpotComputeEnvironment", "OnDemandComputeEnvironment"]
    assert [e["ComputeEnvironment"]["Ref"] for e in order[2]] == ["SpotComputeEnvironment"]


@pytest.mark.parametrize(("exit_code", "status_reason", "reason", "action"), [
    (None, SPOT_REASON, "", "RETRY"),                           # Spot reclaimed the host
    (1, "Essential container in task exited", "", "RETRY"),     # retryable worker error
    (2, "Essential container in task exited", "", "EXIT"),      # bad input
    (3, "Essential container in task exited", "", "EXIT"),      # cancelled
    (137, "Essential container in task exited", "OutOfMemoryError: Container killed", "EXIT"),
])
def test_the_retry_strategy_retries_interruptions_and_gives_up_on_bad_input(
        template, exit_code, status_reason, reason, action):
    strategy = template["Resources"]["WorkerJobDefinition"]["Properties"]["RetryStrategy"]
    assert strategy["Attempts"] == {"Ref": "JobAttempts"}
    assert _retry_action(strategy, exit_code, status_reason, reason) == action


def test_the_job_definition_runs_the_worker_image_with_the_stack_task_log(template):
    job = template["Resources"]["WorkerJobDefinition"]["Properties"]
    container = job["ContainerProperties"]
    assert "${WorkerRepository}:${ImageTag}" in container["Image"]["Fn::Sub"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["RSBATCH_TASK_LOG"] == {"Fn::Sub": "dynamodb://${TaskLogTable}?region=${AWS::Region}"}
    assert {r["Type"] for r in container["ResourceRequirements"]} == {"VCPU", "MEMORY"}
    assert job["Timeout"] == {"AttemptDurationSeconds": {"Ref": "JobTimeoutSeconds"}}
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "WorkerLogGroup"}


# --- the state machine -----------------------------------------------------------------------

def test_every_substitution_in_the_definition_is_defined(template):
    import re

    names = set(re.findall(r"\$\{([A-Za-z0-9:.]+)\}", definition_text()))
    known = set(template["Resources"]) | set(template["Parameters"])
    for name in names:
        assert name.startswith("AWS::") or name.split(".")[0] in known, name


def test_both_map_variants_process_a_cell_the_same_way():
    states = state_machine_definition()["States"]
    inline, distributed = states["Run cells"], states["Run cells (distributed)"]
    assert inline["ItemProcessor"]["ProcessorConfig"] == {"Mode": "INLINE"}
    assert distributed["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    # state names are unique across a whole state machine: the distributed copy's carry a
    # suffix, and are otherwise the inline ones
    suffix = " (distributed)"
    text = json.dumps(distributed["ItemProcessor"]["States"]).replace(suffix, "")
    assert json.loads(text) == inline["ItemProcessor"]["States"]
    assert all(name.endswith(suffix) for name in distributed["ItemProcessor"]["States"])
    assert distributed["ItemReader"]["Resource"].endswith(":::s3:getObject")
    assert inline["MaxConcurrency"] == distributed["MaxConcurrency"] == 1000


def test_a_failed_cell_is_recorded_and_announced_and_the_job_goes_on():
    cell = state_machine_definition()["States"]["Run cells"]["ItemProcessor"]["States"]
    run = cell["Run worker"]
    assert run["Resource"].endswith(":::batch:submitJob.sync")
    assert run["Parameters"]["ContainerOverrides"] == {"Command.$": "$.command",
                                                       "Environment.$": "$.environment"}
    assert "Batch.AWSBatchException" in run["Retry"][0]["ErrorEquals"]
    assert run["Retry"][0]["BackoffRate"] > 1
    assert run["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                             "Next": "Record failure"}]
    assert cell["Record failure"]["Catch"][0]["Next"] == "Cell or unit?"
    assert cell["Failed after all?"]["Default"] == "Cell or unit?"
    # a reduce unit's item carries its kind (infra/units.py): its failure is its own event
    which = cell["Cell or unit?"]
    assert which["Choices"] == [{"Variable": "$.kind", "IsPresent": True,
                                 "Next": "Notify unit failure"}]
    assert which["Default"] == "Notify failure"
    for name, event in (("Notify failure", "cell.failed"), ("Notify unit failure", "unit.failed")):
        notice = cell[name]
        assert notice["Resource"].endswith(":::sns:publish")
        assert notice["Parameters"]["Message"]["event"] == event
        assert notice["Parameters"]["MessageAttributes"]["event"]["StringValue"] == event
        assert notice["Next"] == "Cell failed"
    for name, state in cell.items():  # nothing inside a cell can fail the job
        assert state["Type"] in ("Pass", "Choice") or state.get("Catch"), name


def test_time_limits_bound_every_wait_and_a_failed_summary_is_still_announced(template):
    definition = state_machine_definition()
    states = definition["States"]
    assert definition["TimeoutSeconds"] == 604800  # the stand-in for JobTimeLimitSeconds
    assert "TimeoutSeconds\": ${JobTimeLimitSeconds}" in definition_text()
    for name in ("Run cells", "Run cells (distributed)"):
        cell = states[name]["ItemProcessor"]["States"]
        run = next(s for s in cell.values() if s.get("Resource", "").endswith("submitJob.sync"))
        assert run["TimeoutSecondsPath"] == "$.cell_timeout"  # queue + run, per cell
        assert run["Parameters"]["Tags"]["rsbatch:cell.$"] == "$.cell_id"  # for the watchdog
    summarize = states["Summarize"]
    assert summarize["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                   "Next": "Notify unsummarized"}]
    notice = states["Notify unsummarized"]
    assert notice["Resource"].endswith(":::sns:publish")
    assert notice["Parameters"]["Message"]["event"] == "job.completed"
    assert states[notice["Next"]]["Type"] == "Fail"
    # both limits are stack parameters the plan function and the state machine read
    env = template["Resources"]["PlanFunction"]["Properties"]["Environment"]["Variables"]
    assert env["CELL_TIME_LIMIT"] == {"Ref": "CellTimeLimitSeconds"}
    assert env["JOB_TIME_LIMIT"] == {"Ref": "JobTimeLimitSeconds"}
    rules = resources(template, "AWS::Events::Rule")
    ended = rules["ExecutionEndedRule"]["Properties"]
    assert ended["EventPattern"]["detail"]["status"] == ["ABORTED", "TIMED_OUT", "FAILED"]
    assert ended["Targets"][0]["Arn"] == {"Fn::GetAtt": ["ReconcileFunction", "Arn"]}
    schedule = rules["WatchdogSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Fn::Sub": "rate(${WatchdogIntervalMinutes} minutes)"}
    for function in ("WatchdogFunction", "ReconcileFunction"):
        permission = next(p["Properties"] for p in resources(
            template, "AWS::Lambda::Permission").values()
            if p["Properties"]["FunctionName"] == {"Ref": function})
        assert permission["Principal"] == "events.amazonaws.com"


def test_every_planning_failure_is_announced_and_fails_the_execution():
    states = state_machine_definition()["States"]
    assert states["Plan"]["Catch"][0]["Next"] == "Notify rejected"
    assert states["Notify rejected"]["Next"] == "Rejected"
    assert states["Rejected"] == {"Type": "Fail", "ErrorPath": "$.error.Error",
                                  "CausePath": "$.error.Cause"}
    assert states["Notify completed"]["OutputPath"] == "$.result.summary"


def test_the_dashboard_shows_the_metrics_the_watchdog_publishes(template):
    import re

    from infra import watch

    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    known = set(template["Resources"]) | set(variables)
    names = set(re.findall(r"\$\{([A-Za-z0-9:.]+)\}", body))
    assert all(n.startswith("AWS::") or n.split(".")[0] in known for n in names), names
    dashboard = json.loads(re.sub(r"\$\{([A-Za-z0-9:.]+)\}", lambda m: str(
        variables.get(m.group(1), "x")), body))
    metrics = [m for w in dashboard["widgets"] for m in w["properties"].get("metrics", [])]
    ours = [m for m in metrics if m[0] == watch.METRIC_NAMESPACE]
    assert {m[1] for m in ours} == {watch.JOBS_METRIC, watch.CANCELLED_METRIC}
    assert {m[5] for m in ours if m[1] == watch.JOBS_METRIC} == set(watch.ACTIVE_STATES)
    assert any(m[:2] == ["AWS/States", "ExecutionsFailed"] for m in metrics)
    logs = [w for w in dashboard["widgets"] if w["type"] == "log"]
    assert logs and "SOURCE '${WorkerLogGroup}'" in body
    role = template["Resources"]["WatchdogFunctionRole"]["Properties"]["Policies"][0]
    [put] = [s for s in role["PolicyDocument"]["Statement"]
             if s["Action"] == "cloudwatch:PutMetricData"]
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace":
                                                 watch.METRIC_NAMESPACE}}


def test_the_outputs_hold_what_a_client_needs(template):
    assert {"StateMachineArn", "TaskLogTable", "TaskLogUri", "ResultsBucket", "JobsPrefix",
            "TopicArn", "JobQueueArn", "JobDefinitionArn", "RepositoryUri", "Region",
            "JobIndex", "ImageTag", "WorkerLogGroup"} <= set(template["Outputs"])


def test_the_template_fits_cloudformations_inline_limit_or_goes_through_s3():
    # deploy.py always passes a TemplateURL (1 MB limit); say so if the 51,200 bytes of a
    # TemplateBody are ever the limit someone hits with the console
    assert TEMPLATE.stat().st_size < 1_000_000


def test_fnmatch_is_how_the_retry_rules_read(template):
    # the hooks' evaluator reads EvaluateOnExit as AWS Batch documents it: glob patterns,
    # first match wins; a sanity check that the patterns are globs and not regexes
    rules = template["Resources"]["WorkerJobDefinition"]["Properties"]["RetryStrategy"][
        "EvaluateOnExit"]
    assert fnmatch.fnmatchcase(SPOT_REASON, rules[0]["OnStatusReason"])
    assert len(rules) <= 5  # AWS Batch's limit
