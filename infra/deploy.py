"""Deploy, inspect and destroy the rsbatch stack with boto3 (`make deploy`, `make destroy`).

    python -m infra.deploy deploy  --stack rsbatch --region eu-central-1 [--param K=V ...]
    python -m infra.deploy outputs --stack rsbatch --region eu-central-1
    python -m infra.deploy destroy --stack rsbatch --region eu-central-1 [--empty-bucket]

`deploy` packages the Lambda functions (infra/handler.py with core's contract, seed,
errors and tasklog modules), uploads the package and the template to an artifacts
bucket, creates or updates the stack, waits, and writes the stack's outputs to
`<user data dir>/stacks/<stack>.json`, where the `aws` backend and the plugin read them.
Every command takes `--endpoint-url`, so tests deploy the real template to a moto server.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import zipfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qgis_rsbatch.core.errors import InvalidInput, RsbatchError, SourceUnavailable
from qgis_rsbatch.core.tasklog import user_data_dir

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"
#: what the functions import: the handler and the pure core modules it uses (no GUI, no worker)
LAMBDA_FILES = (
    "infra/__init__.py",
    "infra/failures.py",
    "infra/handler.py",
    "infra/summary.py",
    "infra/units.py",
    "infra/watch.py",
    "qgis_rsbatch/__init__.py",
    "qgis_rsbatch/core/__init__.py",
    "qgis_rsbatch/core/contract.py",
    "qgis_rsbatch/core/errors.py",
    "qgis_rsbatch/core/products.py",
    "qgis_rsbatch/core/seed.py",
    "qgis_rsbatch/core/tasklog/__init__.py",
    "qgis_rsbatch/core/tasklog/base.py",
    "qgis_rsbatch/core/tasklog/dynamodb.py",
    "qgis_rsbatch/core/tasklog/schema.py",
)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same sources give the same package hash
_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "DELETE_COMPLETE"}


def lambda_package(root: Path = ROOT) -> bytes:
    """The functions' zip, byte-for-byte reproducible from the sources."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in LAMBDA_FILES:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (root / name).read_bytes())
    return buffer.getvalue()


def outputs_path(stack: str) -> Path:
    """Where a stack's outputs are written for the `aws` backend and the plugin."""
    return Path(user_data_dir()) / "stacks" / f"{stack}.json"


class Deployer:
    """One stack in one account and region, through boto3 (optionally at a custom endpoint)."""

    def __init__(self, stack: str, *, region: str | None = None, profile: str | None = None,
                 endpoint_url: str | None = None, session: Any = None) -> None:
        import boto3

        self.stack = stack
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.session = session or boto3.session.Session(profile_name=profile,
                                                        region_name=region)
        if not self.session.region_name:
            raise InvalidInput("no AWS region: give REGION=… (--region) or set one in the "
                               "profile (aws configure set region …)")
        self.region: str = self.session.region_name

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region,
                                   endpoint_url=self.endpoint_url)

    # --- artifacts -------------------------------------------------------------------------
    def artifacts_bucket(self, name: str | None = None) -> str:
        """The bucket holding packages and templates; made private and encrypted if new."""
        from botocore.exceptions import ClientError

        s3 = self.client("s3")
        if not name:
            account = self.client("sts").get_caller_identity()["Account"]
            name = f"rsbatch-artifacts-{account}-{self.region}"
        try:
            s3.head_bucket(Bucket=name)
            return name
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise SourceUnavailable(f"artifacts bucket {name}: {exc}") from exc
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        s3.create_bucket(**kwargs)
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        return name

    def upload(self, bucket: str, key: str, body: bytes) -> None:
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=body)

    def _template_url(self, bucket: str, key: str) -> str:
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        return f"https://{bucket}.s3.{self.region}.{suffix}/{key}"

    # --- the stack ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            stacks = self.client("cloudformation").describe_stacks(StackName=self.stack)
        except ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        return stacks["Stacks"][0] if stacks.get("Stacks") else None

    def deploy(self, parameters: Mapping[str, str] | None = None, *,
               artifacts_bucket: str | None = None, template: Path = TEMPLATE) -> dict[str, str]:
        """Create or update the stack; returns its outputs (and writes the outputs file)."""
        from botocore.exceptions import ClientError

        bucket = self.artifacts_bucket(artifacts_bucket)
        package = lambda_package()
        code_key = f"lambda/rsbatch-functions-{hashlib.sha256(package).hexdigest()[:20]}.zip"
        self.upload(bucket, code_key, package)
        body = template.read_bytes()
        template_key = f"templates/{self.stack}-{hashlib.sha256(body).hexdigest()[:20]}.yaml"
        self.upload(bucket, template_key, body)

        given = {"LambdaCodeBucket": bucket, "LambdaCodeKey": code_key, **(parameters or {})}
        current = self.describe()
        if current is not None and current["StackStatus"] == "ROLLBACK_COMPLETE":
            raise InvalidInput(f"stack {self.stack} failed to create and was rolled back: "
                               "run `make destroy` and deploy again")
        cfn = self.client("cloudformation")
        kwargs = {"StackName": self.stack,
                  "TemplateURL": self._template_url(bucket, template_key),
                  "Capabilities": ["CAPABILITY_IAM"],
                  "Tags": [{"Key": "rsbatch:stack", "Value": self.stack}]}
        if current is None:
            cfn.create_stack(Parameters=_parameters(given), **kwargs)
            self._wait("stack_create_complete")
        else:
            # parameters not given keep their earlier values (not the template's defaults)
            previous = {p["ParameterKey"]: p.get("ParameterValue", "")
                        for p in current.get("Parameters", [])}
            try:
                cfn.update_stack(Parameters=_parameters({**previous, **given}), **kwargs)
            except ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
            else:
                self._wait("stack_update_complete")
        outputs = self.outputs()
        self.write_outputs(outputs)
        return outputs

    def _wait(self, waiter: str) -> None:
        from botocore.exceptions import WaiterError

        delay = 2 if self.endpoint_url else 15
        try:
            self.client("cloudformation").get_waiter(waiter).wait(
                StackName=self.stack, WaiterConfig={"Delay": delay, "MaxAttempts": 720})
        except WaiterError as exc:
            reasons = "; ".join(self.failures()) or str(exc)
            raise RsbatchError(f"stack {self.stack}: {waiter} failed: {reasons}") from exc

    def failures(self) -> list[str]:
        """The reasons CloudFormation gave for failed resources, newest first."""
        events = self.client("cloudformation").describe_stack_events(StackName=self.stack)
        return [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
                for e in events.get("StackEvents", [])
                if str(e.get("ResourceStatus", "")).endswith("FAILED")][:10]

    def outputs(self) -> dict[str, str]:
        stack = self.describe()
        if stack is None:
            raise InvalidInput(f"stack {self.stack} does not exist in {self.region}")
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def write_outputs(self, outputs: Mapping[str, str]) -> Path:
        """The outputs file: the stack's outputs plus how to reach it (profile, endpoint)."""
        path = outputs_path(self.stack)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"StackName": self.stack, "Region": self.region, "Profile": self.profile,
                "EndpointUrl": self.endpoint_url,
                "WrittenAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **outputs}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    def destroy(self, *, empty_bucket: bool = False) -> list[str]:
        """Delete the stack; with `empty_bucket`, delete the results (every version) too.

        The results bucket outlives the stack (DeletionPolicy Retain) unless emptied here.
        Returns what was left behind, for the caller to say.
        """
        current = self.describe()
        if current is None:
            outputs_path(self.stack).unlink(missing_ok=True)
            return []
        outputs = {o["OutputKey"]: o["OutputValue"] for o in current.get("Outputs", [])}
        bucket = outputs.get("ResultsBucket")
        if bucket and empty_bucket:
            self.empty(bucket)
        self.client("cloudformation").delete_stack(StackName=self.stack)
        self._wait("stack_delete_complete")
        outputs_path(self.stack).unlink(missing_ok=True)
        if bucket and empty_bucket:
            self.client("s3").delete_bucket(Bucket=bucket)
            return []
        return [f"s3://{bucket}"] if bucket else []

    def registry_password(self) -> str:
        """The ECR password for `docker login -u AWS` (what `aws ecr get-login-password` gives)."""
        import base64

        token = self.client("ecr").get_authorization_token()["authorizationData"][0]
        return base64.b64decode(token["authorizationToken"]).decode().partition(":")[2]

    def empty(self, bucket: str) -> int:
        """Delete every object version and delete marker; returns how many."""
        s3 = self.client("s3")
        count = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for start in range(0, len(doomed), 1000):
                chunk = doomed[start:start + 1000]
                s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
                count += len(chunk)
        return count


def _parameters(values: Mapping[str, str]) -> list[dict[str, Any]]:
    """CloudFormation's parameter list. Earlier values are passed as values, not with
    UsePreviousValue: the same for CloudFormation, and moto can only do the former."""
    return [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in sorted(values.items())]


def _key_values(pairs: Iterable[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"parameter '{pair}' must be Key=Value")
        result[key.strip()] = value.strip()
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy",
                                     description="Deploy, inspect or destroy the rsbatch stack.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default=os.environ.get("STACK", "rsbatch"))
    common.add_argument("--region", default=None, help="default: the profile's region")
    common.add_argument("--profile", default=None)
    common.add_argument("--endpoint-url", default=None,
                        help="an AWS-compatible endpoint (moto in tests)")
    sub = parser.add_subparsers(dest="command", required=True)
    deploy = sub.add_parser("deploy", parents=[common], help="create or update the stack")
    deploy.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a template parameter (repeatable); others keep earlier values")
    deploy.add_argument("--artifacts-bucket", default=None,
                        help="default: rsbatch-artifacts-<account>-<region>, made if missing")
    outputs = sub.add_parser("outputs", parents=[common],
                             help="print the outputs and write them to the outputs file")
    outputs.add_argument("--key", default=None, help="print only this output's value")
    sub.add_parser("ecr-password", parents=[common],
                   help="print a registry password for `docker login --password-stdin`")
    destroy = sub.add_parser("destroy", parents=[common], help="delete the stack")
    destroy.add_argument("--empty-bucket", action="store_true",
                         help="also delete every result in the results bucket, and the bucket")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        deployer = Deployer(args.stack, region=args.region, profile=args.profile,
                            endpoint_url=args.endpoint_url)
        if args.command == "deploy":
            outputs = deployer.deploy(_key_values(args.param),
                                      artifacts_bucket=args.artifacts_bucket)
            print(json.dumps(outputs, indent=1, sort_keys=True))
            print(f"outputs written to {outputs_path(args.stack)}", file=sys.stderr)
        elif args.command == "outputs":
            outputs = deployer.outputs()
            deployer.write_outputs(outputs)
            if args.key and args.key not in outputs:
                raise InvalidInput(f"stack {args.stack} has no output {args.key}")
            print(outputs[args.key] if args.key else json.dumps(outputs, indent=1,
                                                                 sort_keys=True))
        elif args.command == "ecr-password":
            print(deployer.registry_password())
        else:
            left = deployer.destroy(empty_bucket=args.empty_bucket)
            for thing in left:
                print(f"kept {thing} (its results); delete it with --empty-bucket",
                      file=sys.stderr)
    except RsbatchError as exc:
        print(f"infra.deploy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # botocore's errors: say what AWS said, in one line
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, (BotoCoreError, ClientError)):
            print(f"infra.deploy: AWS error: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
