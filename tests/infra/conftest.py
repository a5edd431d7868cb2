"""Fixtures for the stack's tests: the template as data, and the stack deployed to moto.

The moto server here runs inside the test process (a ThreadedMotoServer), unlike
tests/conftest.py's: the state machine's interpreter, Batch and Lambda run where moto runs,
and tests/infra/motohooks.py patches them to call the real handler and worker. The worker
itself runs as a subprocess (the container's command line), so its GDAL reads S3 through a
real socket, and nothing GDAL does touches a server in its own process.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
REGION = "us-east-1"
STACK = "rsbatch-e2e"
#: moto 5.2.5 splits only given CommaDelimitedList values, not defaults, and describes a
#: list parameter as a Python list: give every list parameter, on every deploy
MOTO_PARAMETERS = {
    "InstanceTypes": "c6i,m6i",
    "SourceBucketArns": "arn:aws:s3:::sentinel-s2-l2a,arn:aws:s3:::sentinel-cogs",
    "SubnetIds": "",
}
_SUB = re.compile(r"\$\{([A-Za-z0-9:.]+)\}")


def pytest_configure(config: pytest.Config) -> None:
    # moto's CloudFormation lacks bucket policies and SNS subscriptions; test_template
    # checks ours
    config.addinivalue_line(
        "filterwarnings", "ignore:Tried to parse AWS.+not supported by moto:UserWarning")


def load_template() -> dict[str, Any]:
    """The template as plain data, intrinsic functions as {"Fn::…": …} / {"Ref": …}."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))


def definition_text() -> str:
    """The state machine's DefinitionString before substitution (the one source)."""
    sub = load_template()["Resources"]["JobStateMachine"]["Properties"]["DefinitionString"]
    return sub["Fn::Sub"]


def state_machine_definition(values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The definition with each ${Name} replaced: from `values`, else a plausible stand-in."""
    known = {
        "AWS::Partition": "aws", "MaxConcurrency": "1000", "JobTimeLimitSeconds": "604800",
        "JobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/rsbatch-queue",
        "WorkerJobDefinition":
            "arn:aws:batch:us-east-1:123456789012:job-definition/rsbatch-worker:1",
        "NotificationTopic": "arn:aws:sns:us-east-1:123456789012:rsbatch",
        **(values or {}),
    }

    def stand_in(match: re.Match) -> str:
        name = match.group(1)
        if name in known:
            return str(known[name])
        if name.endswith(".Arn"):  # the functions
            return f"arn:aws:lambda:us-east-1:123456789012:function:{name[:-4]}"
        return name

    return json.loads(_SUB.sub(stand_in, definition_text()))


# --- a moto server in this process, with the hooks ------------------------------------------

@pytest.fixture(scope="session")
def inprocess_moto() -> Iterator[str]:
    """A ThreadedMotoServer on a free port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _moto_api(url: str, path: str, body: Any = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method="POST")
    urllib.request.urlopen(request, timeout=30)


def _set_config(url: str, *, execute: bool) -> None:
    _moto_api(url, "/moto-api/config", {
        "batch": {"use_docker": False}, "lambda": {"use_docker": False},
        "stepfunctions": {"execute_state_machine": execute}})


@pytest.fixture
def moto_env(inprocess_moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh moto; boto3, the interpreter (MOTO_PORT) and the worker all pointed at it."""
    from moto.core.config import default_user_config

    saved = json.loads(json.dumps(default_user_config))  # moto's config is process-wide
    _moto_api(inprocess_moto, "/moto-api/reset")
    _set_config(inprocess_moto, execute=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", inprocess_moto)
    monkeypatch.setenv("MOTO_PORT", inprocess_moto.rsplit(":", 1)[1])
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    yield inprocess_moto
    default_user_config.clear()
    default_user_config.update(saved)


@dataclass
class Stack:
    """The deployed stack, its executable state machine and what its hooks saw."""

    url: str
    outputs: dict[str, str]
    state_machine_arn: str
    queue_url: str
    hooks: Any

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.url)

    def run(self, execution_input: Mapping[str, Any], name: str | None = None,
            timeout: float = 240) -> dict[str, Any]:
        """Start an execution, wait for it to finish, return describe_execution's answer."""
        sfn = self.client("stepfunctions")
        kwargs = {"name": name} if name else {}
        arn = sfn.start_execution(stateMachineArn=self.state_machine_arn,
                                  input=json.dumps(execution_input), **kwargs)["executionArn"]
        def ended() -> dict[str, Any] | None:
            described = sfn.describe_execution(executionArn=arn)
            return described if described["status"] != "RUNNING" else None

        return wait_until(ended, timeout, "the execution to end", interval=0.25)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        return sfn.get_execution_history(executionArn=execution_arn,
                                         maxResults=1000)["events"]

    def messages(self) -> list[dict[str, Any]]:
        """The SNS messages delivered to the test's SQS queue: body and event attribute."""
        sqs = self.client("sqs")
        found = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                        WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                envelope = json.loads(message["Body"])
                attributes = envelope.get("MessageAttributes") or {}
                found.append({"subject": envelope.get("Subject"),
                              "event": (attributes.get("event") or {}).get("Value"),
                              "body": json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=self.queue_url,
                                   ReceiptHandle=message["ReceiptHandle"])

    def records(self, job_id: str) -> dict[str, Any]:
        """The job's task-log records by cell id (read through core's store)."""
        from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog

        store = DynamoTaskLog(self.outputs["TaskLogTable"], region=REGION,
                              endpoint_url=self.url)
        return {record.cell_id: record for record in store.job_records(job_id)}


@pytest.fixture
def deploy_stack(moto_env: str) -> Iterator[Any]:
    """deploy(**parameters) → Stack: the real template deployed with infra/deploy.py.

    moto does not execute state machines made by CloudFormation, so the deployed one's
    definition (read back, substitutions resolved) is created again through the API under
    the same name, in moto's executing backend. An SQS queue subscribed to the topic
    collects the messages.
    """
    from infra.deploy import Deployer

    from .motohooks import Hooks, install

    stacks = []

    def deploy(**parameters: str) -> Stack:
        deployer = Deployer(STACK, region=REGION, endpoint_url=moto_env)
        outputs = deployer.deploy({**MOTO_PARAMETERS, **parameters})
        sfn = deployer.client("stepfunctions")
        described = sfn.describe_state_machine(stateMachineArn=outputs["StateMachineArn"])
        _set_config(moto_env, execute=True)
        arn = sfn.create_state_machine(name=described["name"],
                                       definition=described["definition"],
                                       roleArn=described["roleArn"])["stateMachineArn"]
        sqs, sns = deployer.client("sqs"), deployer.client("sns")
        queue_url = sqs.create_queue(QueueName="rsbatch-messages")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]
                                             )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=outputs["TopicArn"], Protocol="sqs", Endpoint=queue_arn)
        hooks = Hooks(endpoint_url=moto_env)
        stacks.append(install(hooks))
        return Stack(moto_env, outputs, arn, queue_url, hooks)

    yield deploy
    for patches in stacks:
        patches.close()


BANDS_BUCKET = "rsbatch-test-bands"
#: generated scenes are this many 10 m pixels on a side
SIZE = 300


def _upload_scene(s3: Any, bucket: str, prefix: str, paths: dict[str, str]) -> dict[str, str]:
    hrefs = {}
    for key, path in paths.items():
        name = f"{prefix}/{Path(path).name}"
        s3.upload_file(path, bucket, name)
        hrefs[key] = f"s3://{bucket}/{name}"
    return hrefs


@pytest.fixture
def bands(deploy_stack: Any, scene_factory: Any) -> Any:
    """make(tile, date, seed) → band hrefs of a generated scene uploaded to moto S3."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BANDS_BUCKET)

    def make(tile: str, date: str, seed: int) -> dict[str, str]:
        paths = scene_factory(tile=tile, date=date, size=SIZE, seed=seed, cloud=0.1)
        return _upload_scene(s3, BANDS_BUCKET, f"{tile}/{date}", paths)

    return make
