"""Run the Pulumi program in infra/ under pulumi.runtime.set_mocks and print what it created.

Run as a script in a fresh interpreter (one per scenario, so no Pulumi global state leaks between
scenarios): ``python harness.py '<json overrides>' [caller-arn]``. It prints one JSON document:
every resource registered (type, name, inputs, provider, dependencies), every data-source call
with its arguments, the stack outputs, or the error the program stopped with.

The mocks answer like AWS would in shape (ARNs, ids, the ACM validation option, the Ingress
status the load balancer controller writes), with fixed values so every run is identical.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.sync_await import _sync_await

INFRA = Path(__file__).resolve().parents[2] / "infra"
ACCOUNT = "123456789012"
TEMPLATE = INFRA / "stack.example.yaml"
# Zone name -> zone ID as one account might see them. us-east-1b is use1-az3 here, a zone where
# EKS cannot place a cluster: a program that does not exclude it by ID ends up using it.
REGION_ZONES = {
    "us-east-1a": "use1-az1",
    "us-east-1b": "use1-az3",
    "us-east-1c": "use1-az4",
    "us-east-1d": "use1-az6",
    "us-east-1f": "use1-az5",
}
ZONE_ID = "Z0123456789EXAMPLEZONE"
ALB_ZONE_ID = "Z35SXDOTRQ7X7K"
ALB_HOSTNAME = "k8s-podtally-podtally-0123456789-1234567890.us-east-1.elb.amazonaws.com"
CERT_ARN = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/1a2b3c4d-0000-4000-8000-00000000abcd"
CA_DATA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="


class Mocks(pulumi_mocks.Mocks):
    def __init__(self, caller_arn: str) -> None:
        self.caller_arn = caller_arn
        self.resources: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.resources.append(
            {"type": args.typ, "name": args.name, "inputs": inputs, "provider": args.provider}
        )
        state = dict(inputs)
        typ, name = args.typ, args.name
        rid = f"{name}-id"
        if typ == "aws:iam/role:Role":
            state.update(arn=f"arn:aws:iam::{ACCOUNT}:role/{name}", name=name)
        elif typ == "aws:eks/cluster:Cluster":
            state.update(
                arn=f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{inputs['name']}",
                endpoint="https://0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com",
                certificateAuthority={"data": CA_DATA},
            )
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.update(latestVersion=1)
        elif typ == "aws:kms/key:Key":
            state.update(arn=f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{name}")
        elif typ == "aws:ecr/repository:Repository":
            state.update(
                repositoryUrl=f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{inputs['name']}",
                arn=f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{inputs['name']}",
            )
        elif typ == "aws:acm/certificate:Certificate":
            domain = inputs["domainName"]
            state.update(
                arn=CERT_ARN,
                domainValidationOptions=[
                    {
                        "domainName": domain,
                        "resourceRecordName": f"_a79865eb4cd1a6ab990a45779b4e0b96.{domain}.",
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": "_0123456789abcdef.mhbtsbpdnt.acm-validations.aws.",
                    }
                ],
            )
        elif typ == "aws:acm/certificateValidation:CertificateValidation":
            state.update(certificateArn=inputs["certificateArn"])
        elif typ == "aws:route53/record:Record":
            state.update(fqdn=str(inputs["name"]).rstrip("."))
        elif typ == "kubernetes:networking.k8s.io/v1:Ingress":
            state["status"] = {"loadBalancer": {"ingress": [{"hostname": ALB_HOSTNAME}]}}
        elif typ == "kubernetes:gateway.networking.k8s.io/v1:Gateway":
            state["status"] = {"addresses": [{"type": "Hostname", "value": ALB_HOSTNAME}]}
        return rid, state

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
        self.calls.append({"function": args.token, "args": dict(args.args)})
        function = args.token
        if function == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": self.caller_arn,
                "userId": "AIDAEXAMPLE",
                "id": ACCOUNT,
            }
        if function == "aws:iam/getSessionContext:getSessionContext":
            role = self.caller_arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
            return {
                "arn": args.args["arn"],
                "issuerArn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
                "issuerName": role,
                "id": args.args["arn"],
            }
        if function == "aws:index/getAvailabilityZones:getAvailabilityZones":
            excluded = set(args.args.get("excludeZoneIds") or [])
            zones = {n: i for n, i in REGION_ZONES.items() if i not in excluded}
            return {"names": list(zones), "zoneIds": list(zones.values()), "id": "us-east-1"}
        if function == "aws:route53/getZone:getZone":
            return {"zoneId": ZONE_ID, "name": args.args["name"], "id": ZONE_ID}
        if function == "aws:lb/getHostedZoneId:getHostedZoneId":
            return {"id": ALB_ZONE_ID}
        raise AssertionError(f"the program made a call the mocks do not know: {function}")


class Monitor(pulumi_mocks.MockMonitor):
    """Also records each resource's dependencies (URNs), which MockResourceArgs leaves out."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.dependencies: dict[str, list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.dependencies[f"{request.type}::{request.name}"] = sorted(request.dependencies)
        return super().RegisterResource(request)


def stack_config(overrides: dict[str, Any]) -> dict[str, str]:
    """The shipped stack template's config (the real file), with the scenario's overrides."""
    doc = yaml.safe_load(TEMPLATE.read_text())
    config = {k: str(v) for k, v in doc["config"].items()}
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value if isinstance(value, str) else json.dumps(value)
    return config


def main() -> None:
    overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    caller = sys.argv[2] if len(sys.argv) > 2 else f"arn:aws:iam::{ACCOUNT}:user/deployer"
    mocks = Mocks(caller)
    monitor = Monitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="podtally", stack="dev", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(stack_config(overrides))

    error = None

    def program() -> None:
        runpy.run_path(str(INFRA / "__main__.py"), run_name="__main__")

    try:
        pulumi.runtime.test(program)()
    except pulumi.RunError as exc:
        error = str(exc)

    outputs: dict[str, Any] = {}
    secret_outputs: list[str] = []
    root = pulumi.runtime.get_root_resource()
    if error is None and root is not None:
        for key, value in getattr(root, "outputs", {}).items():
            out = pulumi.Output.from_input(value)
            outputs[key] = _sync_await(out.future())
            if _sync_await(out.is_secret()):
                secret_outputs.append(key)
    for resource in mocks.resources:
        key = f"{resource['type']}::{resource['name']}"
        resource["dependencies"] = monitor.dependencies.get(key, [])
    json.dump(
        {
            "resources": mocks.resources,
            "calls": mocks.calls,
            "outputs": outputs,
            "secret_outputs": sorted(secret_outputs),
            "error": error,
        },
        sys.stdout,
        default=str,
        sort_keys=True,
    )


if __name__ == "__main__":
    main()
