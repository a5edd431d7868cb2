"""`python -m infra.deploy` against a moto server: the real template, created, updated, read
back, destroyed, and the outputs file the `aws` backend and the plugin read."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from infra import deploy
from qgis_rsbatch.core.tasklog import schema, user_data_dir

from .conftest import MOTO_PARAMETERS, REGION

STACK = "rsbatch-deploy"


def _cli(url: str, command: str, *extra: str) -> int:
    return deploy.main([command, "--stack", STACK, "--region", REGION, "--endpoint-url", url,
                        *extra])


def _params(**values: str) -> list[str]:
    return [arg for k, v in {**MOTO_PARAMETERS, **values}.items()
            for arg in ("--param", f"{k}={v}")]


def test_deploy_creates_the_stack_and_writes_the_outputs_file(moto_env, capsys):
    assert _cli(moto_env, "deploy", *_params(ImageTag="v1")) == 0

    path = Path(user_data_dir()) / "stacks" / f"{STACK}.json"
    assert deploy.outputs_path(STACK) == path
    saved = json.loads(path.read_text())
    assert saved["StackName"] == STACK and saved["Region"] == REGION
    assert saved["EndpointUrl"] == moto_env
    assert saved["TaskLogTable"] == schema.TABLE_NAME
    assert saved["TaskLogUri"] == f"dynamodb://{schema.TABLE_NAME}?region={REGION}"
    assert saved["StateMachineArn"].endswith(f":stateMachine:{STACK}-jobs")
    assert saved["JobsPrefix"] == f"s3://{saved['ResultsBucket']}/_rsbatch/jobs/"
    assert saved["ImageTag"] == "v1"
    printed = json.loads(capsys.readouterr().out)
    assert printed["TopicArn"] == saved["TopicArn"]

    def client(service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=moto_env)

    table = client("dynamodb").describe_table(TableName=schema.TABLE_NAME)["Table"]
    assert table["KeySchema"] == [{"AttributeName": schema.HASH_KEY, "KeyType": "HASH"}]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == schema.JOB_INDEX
    # (moto's CloudFormation leaves TTL off: test_template holds the table's TTL attribute)
    functions = {f["FunctionName"]: f for f in client("lambda").list_functions()["Functions"]}
    assert functions[f"{STACK}-plan"]["Handler"] == "infra.handler.plan"
    assert functions[f"{STACK}-plan"]["Environment"]["Variables"]["RESULTS_BUCKET"] == \
        saved["ResultsBucket"]
    assert functions[f"{STACK}-record-failure"]["Handler"] == "infra.handler.record_failure"
    assert functions[f"{STACK}-summarize"]["Handler"] == "infra.handler.summarize"
    [definition] = client("batch").describe_job_definitions(
        jobDefinitionName=f"{STACK}-worker")["jobDefinitions"]
    assert definition["containerProperties"]["image"].endswith("/rsbatch-worker:v1")
    assert definition["retryStrategy"]["attempts"] == 3
    [queue] = client("batch").describe_job_queues(jobQueues=[saved["JobQueueArn"]])["jobQueues"]
    assert len(queue["computeEnvironmentOrder"]) == 1  # no On-Demand environment by default
    assert client("ecr").describe_repositories()["repositories"][0]["repositoryName"] == \
        "rsbatch-worker"


def test_a_second_deploy_keeps_the_earlier_parameters(moto_env):
    assert _cli(moto_env, "deploy", *_params(ImageTag="v1", WorkerVcpus="4")) == 0
    assert _cli(moto_env, "deploy", *_params()) == 0  # no ImageTag, no WorkerVcpus given
    saved = json.loads(deploy.outputs_path(STACK).read_text())
    assert saved["ImageTag"] == "v1"
    stack = boto3.client("cloudformation", region_name=REGION, endpoint_url=moto_env
                         ).describe_stacks(StackName=STACK)["Stacks"][0]
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert str(values["WorkerVcpus"]) == "4"


def test_outputs_prints_one_value_for_scripts(moto_env, capsys):
    assert _cli(moto_env, "deploy", *_params()) == 0
    capsys.readouterr()
    assert _cli(moto_env, "outputs", "--key", "RepositoryUri") == 0
    assert capsys.readouterr().out.strip().endswith(".amazonaws.com/rsbatch-worker")
    assert _cli(moto_env, "outputs", "--key", "Nope") == 2


def _own_network(url: str) -> dict[str, str]:
    """An existing VPC and subnets (moto cannot delete a stack's own VPC resources)."""
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=url)
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["VpcId"] == vpc]
    return {"VpcId": vpc, "SubnetIds": ",".join(subnets[:2])}


@pytest.mark.parametrize("empty", [False, True])
def test_destroy_deletes_the_stack_and_empties_the_bucket_only_on_request(moto_env, capsys,
                                                                          empty):
    assert _cli(moto_env, "deploy", *_params(**_own_network(moto_env))) == 0
    bucket = json.loads(deploy.outputs_path(STACK).read_text())["ResultsBucket"]
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_env)
    s3.put_object(Bucket=bucket, Key="out/job/32TMT_2024-06-01_rgb.tif", Body=b"cog")
    capsys.readouterr()

    assert _cli(moto_env, "destroy", *(["--empty-bucket"] if empty else [])) == 0

    cfn = boto3.client("cloudformation", region_name=REGION, endpoint_url=moto_env)
    assert not [s for s in cfn.list_stacks()["StackSummaries"]
                if s["StackName"] == STACK and s["StackStatus"] != "DELETE_COMPLETE"]
    assert not deploy.outputs_path(STACK).exists()
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    if empty:
        assert bucket not in buckets
    else:  # the results outlive the stack, and the user is told where
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
        assert f"kept s3://{bucket}" in capsys.readouterr().err
