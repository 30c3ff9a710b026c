"""The Pulumi program in infra/, run under pulumi.runtime.set_mocks: no CLI, no cloud.

Each scenario runs the real infra/__main__.py with the real stack template
infra/stack.example.yaml (plus overrides) in its own interpreter (tests/infra/harness.py); all
scenarios start at once and are read back as JSON. The assertions are about what would be
created and how it is wired.

One file on purpose (over 450 lines): the scenarios run once per process, and `make test` gives
each file to one worker (``--dist loadfile``); split by topic, each worker would run all of them
again. The sections below (network, cluster, controller, ECR/certificate/DNS, the app) are the
file's map.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from tests.k8s.helpers import checkov, checkov_failures

from podtally.k8s import render
from podtally.spec import AppSpec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
INFRA = HERE.parents[1] / "infra"
sys.path.insert(0, str(INFRA))

import harness  # noqa: E402

from podtally_infra import lbc_policy  # noqa: E402
from podtally_infra.network import plan_subnets  # noqa: E402

ACCOUNT = harness.ACCOUNT
DEFAULT_ZONES = ["us-east-1a", "us-east-1c", "us-east-1d"]  # us-east-1b is use1-az3 (harness)
APP = {"podtally:deployApp": "true"}  # the second `up`, once the image is in ECR
SCENARIOS: dict[str, tuple[dict[str, Any], str | None]] = {
    "default": (APP, None),
    "default-again": (APP, None),
    "gateway": ({**APP, "podtally:gateway": "true"}, None),
    "as-shipped": ({}, None),
    "per-zone-nat": ({"podtally:natGateways": "per-zone"}, None),
    "sized": (
        {
            "podtally:zones": ["us-east-1c", "us-east-1d"],
            "podtally:nodeInstanceType": "t3.medium",
            "podtally:nodeCount": "4",
            "podtally:nodeMax": "6",
            "podtally:capacityType": "SPOT",
        },
        None,
    ),
    "assumed-role": ({}, f"arn:aws:sts::{ACCOUNT}:assumed-role/Deployer/alice"),
    "admin-other": ({"podtally:adminPrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/Platform"}, None),
    "admin-same": ({"podtally:adminPrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/deployer"}, None),
    "narrow-api": ({"podtally:apiPublicCidrs": '["203.0.113.7/32", "198.51.100.0/24"]'}, None),
}
BAD_CONFIG = {
    "nat": ({"podtally:natGateways": "two"}, "podtally:natGateways must be one of"),
    "zones": ({"podtally:zones": "7"}, "podtally:zones must be between 2 and 4"),
    "host": ({"podtally:hostname": "x.example.org"}, "is not inside the zone"),
    "tag": ({"podtally:imageTag": "latest"}, "moving tag"),
    "cidr": ({"podtally:vpcCidr": "10.0.0.0/24"}, "must be a /16, /17 or /18"),
    "nodes": ({"podtally:nodeCount": "5", "podtally:nodeMax": "4"}, "does not hold"),
    "region": ({"aws:region": None}, "aws:region is not set"),
    "name": ({"podtally:clusterName": "Pod_Tally"}, "not a DNS-1123 label"),
}


@cache
def _runs() -> dict[str, dict[str, Any]]:
    """Start every scenario at once (one interpreter each), then collect their JSON."""
    jobs = {}
    everything = {**SCENARIOS, **{f"bad-{k}": (v[0], None) for k, v in BAD_CONFIG.items()}}
    for key, (overrides, caller) in everything.items():
        argv = [sys.executable, str(HERE / "harness.py"), json.dumps(overrides)]
        if caller:
            argv.append(caller)
        jobs[key] = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    results: dict[str, dict[str, Any]] = {}
    for key, proc in jobs.items():
        try:
            out, errs = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            results[key] = {"crash": "the mock run did not finish within 240 s"}
            continue
        if proc.returncode != 0:
            # Recorded, not raised: one broken scenario fails its own tests, quickly.
            results[key] = {"crash": errs[-3000:]}
            continue
        results[key] = json.loads(out)
    return results


def run(scenario: str) -> dict[str, Any]:
    result = _runs()[scenario]
    assert "crash" not in result, f"scenario {scenario} crashed:\n{result.get('crash')}"
    if not scenario.startswith("bad-"):
        assert result["error"] is None, result["error"]
    return result


def of_type(result: dict[str, Any], typ: str) -> list[dict[str, Any]]:
    return sorted((r for r in result["resources"] if r["type"] == typ), key=lambda r: r["name"])


def one(result: dict[str, Any], typ: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in of_type(result, typ) if name is None or r["name"] == name]
    assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r['name'] for r in found]}"
    return found[0]


def urn(resource: dict[str, Any]) -> str:
    return f"urn:pulumi:dev::podtally::pulumi:pulumi:Stack${resource['type']}::{resource['name']}"


SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ASSOC = "aws:ec2/routeTableAssociation:RouteTableAssociation"
RELEASE = "kubernetes:helm.sh/v3:Release"
RECORD = "aws:route53/record:Record"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


def subnets(result: dict[str, Any], tier: str) -> list[dict[str, Any]]:
    return [s for s in of_type(result, SUBNET) if f"-{tier}-" in s["name"]]


# The actions the AWS Load Balancer Controller v3.5.0 needs, written out here independently of
# infra/podtally_infra/lbc_policy.py, from the controller's published docs/install/iam_policy.json
# (unchanged since v2.14.0; the pinned copy below is checked against it too).
CONTROLLER_ACTIONS = {
    "iam:CreateServiceLinkedRole",
    # discovery
    *(
        f"ec2:{a}"
        for a in (
            "DescribeAccountAttributes",
            "DescribeAddresses",
            "DescribeAvailabilityZones",
            "DescribeInternetGateways",
            "DescribeVpcs",
            "DescribeVpcPeeringConnections",
            "DescribeSubnets",
            "DescribeSecurityGroups",
            "DescribeInstances",
            "DescribeNetworkInterfaces",
            "DescribeTags",
            "GetCoipPoolUsage",
            "DescribeCoipPools",
            "GetSecurityGroupsForVpc",
            "DescribeIpamPools",
            "DescribeRouteTables",
        )
    ),
    *(
        f"elasticloadbalancing:{a}"
        for a in (
            "DescribeLoadBalancers",
            "DescribeLoadBalancerAttributes",
            "DescribeListeners",
            "DescribeListenerCertificates",
            "DescribeSSLPolicies",
            "DescribeRules",
            "DescribeTargetGroups",
            "DescribeTargetGroupAttributes",
            "DescribeTargetHealth",
            "DescribeTags",
            "DescribeTrustStores",
            "DescribeListenerAttributes",
            "DescribeCapacityReservation",
        )
    ),
    # integrations an Ingress can ask for
    "cognito-idp:DescribeUserPoolClient",
    "acm:ListCertificates",
    "acm:DescribeCertificate",
    "iam:ListServerCertificates",
    "iam:GetServerCertificate",
    *(
        f"{svc}:{a}"
        for svc in ("waf-regional", "wafv2")
        for a in ("GetWebACL", "GetWebACLForResource", "AssociateWebACL", "DisassociateWebACL")
    ),
    "shield:GetSubscriptionState",
    "shield:DescribeProtection",
    "shield:CreateProtection",
    "shield:DeleteProtection",
    # security groups
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:CreateSecurityGroup",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ec2:DeleteSecurityGroup",
    # load balancers, target groups, listeners, rules
    *(
        f"elasticloadbalancing:{a}"
        for a in (
            "CreateLoadBalancer",
            "CreateTargetGroup",
            "CreateListener",
            "DeleteListener",
            "CreateRule",
            "DeleteRule",
            "AddTags",
            "RemoveTags",
            "ModifyLoadBalancerAttributes",
            "SetIpAddressType",
            "SetSecurityGroups",
            "SetSubnets",
            "DeleteLoadBalancer",
            "ModifyTargetGroup",
            "ModifyTargetGroupAttributes",
            "DeleteTargetGroup",
            "ModifyListenerAttributes",
            "ModifyCapacityReservation",
            "ModifyIpPools",
            "RegisterTargets",
            "DeregisterTargets",
            "SetWebAcl",
            "ModifyListener",
            "AddListenerCertificates",
            "RemoveListenerCertificates",
            "ModifyRule",
            "SetRulePriorities",
        )
    ),
}
REQUEST_TAG = "aws:RequestTag/elbv2.k8s.aws/cluster"
RESOURCE_TAG = "aws:ResourceTag/elbv2.k8s.aws/cluster"
POLICY_SHA256 = "bb9e48240ace4258c78d152ce98175ee6a118f0715faad4ff5a3e394c9d66171"


# --- network -----------------------------------------------------------------------------------


def test_subnets_span_three_zones_with_the_elb_tags() -> None:
    result = run("default")
    public, private, intra = (subnets(result, t) for t in ("public", "private", "intra"))
    for tier in (public, private, intra):
        assert sorted(s["inputs"]["availabilityZone"] for s in tier) == DEFAULT_ZONES
    for s in public:
        assert s["inputs"]["tags"]["kubernetes.io/role/elb"] == "1"
        assert "kubernetes.io/role/internal-elb" not in s["inputs"]["tags"]
        assert s["inputs"]["tags"]["kubernetes.io/cluster/podtally"] == "shared"
    for s in private:
        assert s["inputs"]["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert "kubernetes.io/role/elb" not in s["inputs"]["tags"]
        assert s["inputs"]["tags"]["kubernetes.io/cluster/podtally"] == "shared"
    vpc = one(result, "aws:ec2/vpc:Vpc")
    assert vpc["inputs"]["cidrBlock"] == "10.42.0.0/16"
    nets = [ipaddress.ip_network(s["inputs"]["cidrBlock"]) for s in public + private + intra]
    assert all(n.subnet_of(ipaddress.ip_network("10.42.0.0/16")) for n in nets)  # type: ignore[arg-type]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_public_subnets_route_to_the_internet_gateway_and_intra_nowhere() -> None:
    result = run("default")
    tables = {t["name"]: t for t in of_type(result, ROUTE_TABLE)}
    assert tables["podtally-public"]["inputs"]["routes"][0]["gatewayId"] == "podtally-igw-id"
    assert not tables["podtally-intra"]["inputs"].get("routes")
    assocs = {a["name"]: a["inputs"] for a in of_type(result, ASSOC)}
    for zone in DEFAULT_ZONES:
        assert assocs[f"podtally-public-{zone}"]["routeTableId"] == "podtally-public-id"
        assert assocs[f"podtally-intra-{zone}"]["routeTableId"] == "podtally-intra-id"
        assert assocs[f"podtally-private-{zone}"]["routeTableId"] == f"podtally-private-{zone}-id"


@pytest.mark.parametrize(("scenario", "expected"), [("default", 1), ("per-zone-nat", 3)])
def test_nat_gateway_count_follows_config(scenario: str, expected: int) -> None:
    result = run(scenario)
    nats = of_type(result, NAT)
    assert len(nats) == expected
    assert len(of_type(result, "aws:ec2/eip:Eip")) == expected
    public_ids = {f"{s['name']}-id" for s in subnets(result, "public")}
    assert all(n["inputs"]["subnetId"] in public_ids for n in nats)
    private_tables = [t for t in of_type(result, ROUTE_TABLE) if "-private-" in t["name"]]
    targets = {t["name"]: t["inputs"]["routes"][0]["natGatewayId"] for t in private_tables}
    assert len(targets) == 3
    if expected == 1:
        assert set(targets.values()) == {"podtally-nat-us-east-1a-id"}
    else:
        for name, target in targets.items():
            zone = name.removeprefix("podtally-private-")
            assert target == f"podtally-nat-{zone}-id", "each zone leaves through its own NAT"


def test_explicit_zone_list_is_used_without_a_lookup() -> None:
    result = run("sized")
    assert sorted(s["inputs"]["availabilityZone"] for s in subnets(result, "private")) == [
        "us-east-1c",
        "us-east-1d",
    ]
    tokens = [c["function"] for c in result["calls"]]
    assert "aws:index/getAvailabilityZones:getAvailabilityZones" not in tokens
    assert "aws:index/getAvailabilityZones:getAvailabilityZones" in [
        c["function"] for c in run("default")["calls"]
    ]


def test_zone_lookup_excludes_the_zone_ids_eks_does_not_support() -> None:
    """Zone names map to different zone IDs per account; the exclusion must be by ID. In the
    harness's account us-east-1b is use1-az3, so taking the first three names would use it."""
    result = run("default")
    lookups = [
        c["args"]
        for c in result["calls"]
        if c["function"] == "aws:index/getAvailabilityZones:getAvailabilityZones"
    ]
    assert len(lookups) == 1
    assert lookups[0]["state"] == "available"
    assert {"use1-az3", "usw1-az2", "cac1-az3"} <= set(lookups[0]["excludeZoneIds"])
    used = {s["inputs"]["availabilityZone"] for s in of_type(result, SUBNET)}
    assert used == set(DEFAULT_ZONES)
    assert "us-east-1b" not in used


def test_subnet_plan_is_disjoint_for_every_supported_prefix() -> None:
    for cidr in ("10.0.0.0/16", "10.0.0.0/17", "172.16.0.0/18"):
        plan = plan_subnets(cidr, ["a", "b", "c", "d"])
        nets = [ipaddress.ip_network(c) for p in plan for c in (p.private, p.public, p.intra)]
        assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
        assert all(ipaddress.ip_network(p.intra).prefixlen <= 28 for p in plan), "EKS needs /28+"


# --- cluster -----------------------------------------------------------------------------------


def test_cluster_uses_api_authentication_kms_and_logging() -> None:
    result = run("default")
    cluster = one(result, "aws:eks/cluster:Cluster")["inputs"]
    assert cluster["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    assert cluster["version"] == "1.35"
    key = one(result, "aws:kms/key:Key")
    assert key["inputs"]["enableKeyRotation"] is True
    assert cluster["encryptionConfig"] == {
        "provider": {"keyArn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key['name']}"},
        "resources": ["secrets"],
    }
    assert {"api", "audit", "authenticator"} <= set(cluster["enabledClusterLogTypes"])
    intra = sorted(f"{s['name']}-id" for s in subnets(result, "intra"))
    assert sorted(cluster["vpcConfig"]["subnetIds"]) == intra
    assert not of_type(result, "kubernetes:core/v1:ConfigMap"), "no aws-auth ConfigMap"


@pytest.mark.parametrize(
    ("scenario", "cidrs"),
    [("default", ["0.0.0.0/0"]), ("narrow-api", ["203.0.113.7/32", "198.51.100.0/24"])],
)
def test_api_endpoint_is_private_and_public_only_from_the_configured_cidrs(
    scenario: str, cidrs: list[str]
) -> None:
    vpc_config = one(run(scenario), "aws:eks/cluster:Cluster")["inputs"]["vpcConfig"]
    assert vpc_config["endpointPrivateAccess"] is True  # nodes reach the API inside the VPC
    assert vpc_config["endpointPublicAccess"] is True
    assert vpc_config["publicAccessCidrs"] == cidrs


ENTRY = "aws:eks/accessEntry:AccessEntry"
ADMIN_ASSOC = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
DEPLOYER = f"arn:aws:iam::{ACCOUNT}:user/deployer"


def _cluster_admins(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """principal ARN -> its access policy association, checking each has an entry too."""
    entries = {e["inputs"]["principalArn"]: e for e in of_type(result, ENTRY)}
    assocs = {a["inputs"]["principalArn"]: a for a in of_type(result, ADMIN_ASSOC)}
    assert set(entries) == set(assocs)
    # One entry per principal: EKS refuses a second entry for the same ARN.
    assert len(of_type(result, ENTRY)) == len(entries) == len(of_type(result, ADMIN_ASSOC))
    for principal, entry in entries.items():
        assert entry["inputs"]["clusterName"] == "podtally"
        assert entry["inputs"]["type"] == "STANDARD"
        assoc = assocs[principal]["inputs"]
        assert assoc["policyArn"].endswith(":cluster-access-policy/AmazonEKSClusterAdminPolicy")
        assert assoc["accessScope"] == {"type": "cluster"}
    return assocs


@pytest.mark.parametrize(
    ("scenario", "principals"),
    [
        ("default", [DEPLOYER]),
        ("assumed-role", [f"arn:aws:iam::{ACCOUNT}:role/Deployer"]),
        # Someone else named as admin: the deployer keeps its entry (the provider acts as it).
        ("admin-other", [DEPLOYER, f"arn:aws:iam::{ACCOUNT}:role/Platform"]),
        # The deployer named as admin: one entry, not two for the same principal.
        ("admin-same", [DEPLOYER]),
    ],
)
def test_deployer_and_admin_get_access_entries_with_cluster_admin(
    scenario: str, principals: list[str]
) -> None:
    assert sorted(_cluster_admins(run(scenario))) == sorted(principals)


def test_kubernetes_provider_waits_for_every_access_entry_and_the_nodes() -> None:
    """Helm and the app act with the deployer's token: before its access policy is associated
    they get Unauthorized, and before nodes exist the controller cannot become ready."""
    for scenario in ("default", "admin-other"):
        result = run(scenario)
        provider = one(result, "pulumi:providers:kubernetes")
        assocs = of_type(result, ADMIN_ASSOC)
        assert assocs
        for assoc in assocs:
            assert urn(assoc) in provider["dependencies"], (scenario, assoc["name"])
        assert urn(one(result, NODE_GROUP)) in provider["dependencies"]


@pytest.mark.parametrize(
    ("scenario", "instance", "sizes", "capacity", "zones"),
    [
        ("default", "t3.small", (3, 3, 3), "ON_DEMAND", 3),
        ("sized", "t3.medium", (4, 4, 6), "SPOT", 2),
    ],
)
def test_node_group_type_sizes_and_subnets(
    scenario: str, instance: str, sizes: tuple[int, int, int], capacity: str, zones: int
) -> None:
    result = run(scenario)
    group = one(result, NODE_GROUP)["inputs"]
    assert group["instanceTypes"] == [instance]
    scaling = group["scalingConfig"]
    assert (scaling["desiredSize"], scaling["minSize"], scaling["maxSize"]) == sizes
    assert group["capacityType"] == capacity
    private = sorted(f"{s['name']}-id" for s in subnets(result, "private"))
    assert sorted(group["subnetIds"]) == private
    assert len(private) == zones
    role = one(result, "aws:iam/role:Role", "podtally-nodes")
    attached = {
        a["inputs"]["policyArn"].rsplit("/", 1)[1]
        for a in of_type(result, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a["inputs"]["role"] == role["name"]
    }
    assert attached == {
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
        "AmazonEC2ContainerRegistryReadOnly",
    }
    # Nodes that start before their role may pull images and join the cluster never join.
    group_deps = one(result, NODE_GROUP)["dependencies"]
    for attachment in of_type(result, ATTACHMENT):
        if attachment["inputs"]["role"] == role["name"]:
            assert urn(attachment) in group_deps, attachment["name"]


def test_the_four_addons_and_their_order() -> None:
    result = run("default")
    addons = {a["inputs"]["addonName"]: a for a in of_type(result, "aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent"}
    group = one(result, NODE_GROUP)
    assert urn(group) in addons["coredns"]["dependencies"], "CoreDNS waits for nodes"
    assert urn(addons["vpc-cni"]) in group["dependencies"], "nodes come up with the CNI"
    assert urn(addons["eks-pod-identity-agent"]) in group["dependencies"]
    # The NetworkPolicy from podtally.k8s is only enforced when the CNI is told to.
    cni_config = json.loads(addons["vpc-cni"]["inputs"]["configurationValues"])
    assert cni_config == {"enableNetworkPolicy": "true"}


# --- load balancer controller ------------------------------------------------------------------


def test_controller_release_is_pinned_and_wired() -> None:
    result = run("default")
    release = one(result, RELEASE)
    inputs = release["inputs"]
    assert inputs["chart"] == "aws-load-balancer-controller"
    assert inputs["version"] == "3.5.0"  # controller v3.5.0
    assert inputs["repositoryOpts"] == {"repo": "https://aws.github.io/eks-charts"}
    assert inputs["namespace"] == "kube-system"
    assert inputs["values"]["clusterName"] == "podtally"
    assert inputs["values"]["region"] == "us-east-1"
    assert inputs["values"]["vpcId"] == "podtally-vpc-id"
    assert inputs["values"]["serviceAccount"]["name"] == "aws-load-balancer-controller"
    provider = one(result, "pulumi:providers:kubernetes")
    assert release["provider"] == f"{urn(provider)}::eks-id"
    association = one(result, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert urn(association) in release["dependencies"]
    # The controller needs nodes to run on, the CNI for pod networking and the Pod Identity
    # agent for its AWS credentials; `atomic` would roll it back after 10 minutes without them.
    assert urn(one(result, NODE_GROUP)) in release["dependencies"]
    for addon in of_type(result, "aws:eks/addon:Addon"):
        assert urn(addon) in release["dependencies"], addon["name"]


def test_controller_permissions_come_through_pod_identity() -> None:
    result = run("default")
    association = one(result, "aws:eks/podIdentityAssociation:PodIdentityAssociation")["inputs"]
    assert association["namespace"] == "kube-system"
    assert association["serviceAccount"] == "aws-load-balancer-controller"
    role = one(result, "aws:iam/role:Role", "podtally-lb-controller")
    assert association["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{role['name']}"
    trust = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(trust["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    policy = one(result, "aws:iam/rolePolicy:RolePolicy", "podtally-lb-controller")
    assert policy["inputs"]["role"] == f"{role['name']}-id"
    document = json.loads(policy["inputs"]["policy"])
    granted = {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    missing, extra = CONTROLLER_ACTIONS - granted, granted - CONTROLLER_ACTIONS
    assert not missing and not extra, f"missing: {sorted(missing)}, extra: {sorted(extra)}"
    assert all(s["Effect"] == "Allow" for s in document["Statement"])

    def statements(action: str) -> list[dict[str, Any]]:
        return [s for s in document["Statement"] if action in s["Action"]]

    # Creating load balancers and target groups: only with the controller's cluster tag on them.
    for action in ("CreateLoadBalancer", "CreateTargetGroup"):
        found = statements(f"elasticloadbalancing:{action}")
        assert found and all(s["Condition"] == {"Null": {REQUEST_TAG: "false"}} for s in found)
    # Changing or deleting them, and deleting security groups: only those carrying the tag.
    for action in (
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:SetSecurityGroups",
        "ec2:DeleteSecurityGroup",
    ):
        found = statements(action)
        assert found, action
        assert all(s["Condition"]["Null"][RESOURCE_TAG] == "false" for s in found), action
    # Tagging a security group: while creating it with the tag, or re-tagging one that has it.
    tag_sg = statements("ec2:CreateTags")
    assert {json.dumps(s.get("Condition"), sort_keys=True) for s in tag_sg} == {
        json.dumps(
            {
                "StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"},
                "Null": {REQUEST_TAG: "false"},
            },
            sort_keys=True,
        ),
        json.dumps({"Null": {REQUEST_TAG: "true", RESOURCE_TAG: "false"}}, sort_keys=True),
    }
    assert all(s["Resource"] == "arn:aws:ec2:*:*:security-group/*" for s in tag_sg)
    # The service-linked role only for Elastic Load Balancing.
    (slr,) = statements("iam:CreateServiceLinkedRole")
    assert slr["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}
    }


def _actions(policy: dict[str, Any]) -> set[str]:
    return {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }


def test_controller_policy_equals_upstream_v3_5_0() -> None:
    """The pinned copy is upstream's file, byte for byte (its sha256 as recorded with its
    source), and the policy the program grants is that document: same actions, and the same
    statements (resources and conditions included)."""
    copy = INFRA / "podtally_infra" / lbc_policy.UPSTREAM_COPY
    raw = copy.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == lbc_policy.UPSTREAM_SHA256
    assert "v3.5.0" in lbc_policy.UPSTREAM_SOURCE and "v3.5.0" in copy.name
    upstream = json.loads(raw)
    assert _actions(lbc_policy.POLICY) == _actions(upstream) == CONTROLLER_ACTIONS
    assert "ec2:DescribeRouteTables" in _actions(upstream)  # added in v2.13.0

    def statements(policy: dict[str, Any]) -> list[str]:
        return sorted(json.dumps(s, sort_keys=True) for s in policy["Statement"])

    assert statements(lbc_policy.POLICY) == statements(upstream)


def test_controller_policy_is_pinned() -> None:
    """Any change to the policy, however small, must be deliberate: update the digest with it
    (after diffing against the release's docs/install/iam_policy.json)."""
    canonical = json.dumps(lbc_policy.POLICY, sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(canonical.encode()).hexdigest() == POLICY_SHA256


# --- ECR, certificate, DNS ---------------------------------------------------------------------


def test_ecr_repository_is_immutable_scanned_and_pruned() -> None:
    result = run("default")
    repo = one(result, "aws:ecr/repository:Repository")["inputs"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["forceDelete"] is True
    lifecycle = json.loads(
        one(result, "aws:ecr/lifecyclePolicy:LifecyclePolicy")["inputs"]["policy"]
    )
    assert {r["selection"]["tagStatus"] for r in lifecycle["rules"]} == {"untagged", "any"}


def test_certificate_is_validated_by_dns_in_the_zone() -> None:
    result = run("default")
    cert = one(result, "aws:acm/certificate:Certificate")["inputs"]
    assert cert["domainName"] == "podtally.example.com"
    assert cert["validationMethod"] == "DNS"
    zone_calls = [c for c in result["calls"] if c["function"] == "aws:route53/getZone:getZone"]
    assert zone_calls
    assert zone_calls[0]["args"]["name"] == "example.com"
    assert zone_calls[0]["args"]["privateZone"] is False
    record = one(result, RECORD, "podtally-cert-validation")
    assert record["inputs"]["zoneId"] == harness.ZONE_ID
    assert record["inputs"]["name"] == "_a79865eb4cd1a6ab990a45779b4e0b96.podtally.example.com."
    assert record["inputs"]["type"] == "CNAME"
    assert record["inputs"]["records"] == ["_0123456789abcdef.mhbtsbpdnt.acm-validations.aws."]
    validation = one(result, "aws:acm/certificateValidation:CertificateValidation")
    assert validation["inputs"]["certificateArn"] == harness.CERT_ARN
    assert validation["inputs"]["validationRecordFqdns"] == [
        "_a79865eb4cd1a6ab990a45779b4e0b96.podtally.example.com"
    ]
    assert urn(record) in validation["dependencies"]


def test_alias_record_points_at_the_ingress_alb() -> None:
    result = run("default")
    records = [r for r in of_type(result, RECORD) if r["inputs"]["name"] == "podtally.example.com"]
    assert [r["inputs"]["type"] for r in records] == ["A"], "an alias A record, no CNAME"
    alias = records[0]["inputs"]
    assert alias["zoneId"] == harness.ZONE_ID
    assert "records" not in alias and "ttl" not in alias
    assert alias["aliases"] == [
        {"name": harness.ALB_HOSTNAME, "zoneId": harness.ALB_ZONE_ID, "evaluateTargetHealth": True}
    ]
    hosted = [
        c for c in result["calls"] if c["function"] == "aws:lb/getHostedZoneId:getHostedZoneId"
    ]
    assert hosted[0]["args"] == {"loadBalancerType": "application", "region": "us-east-1"}
    ingress = one(result, "kubernetes:networking.k8s.io/v1:Ingress", "ingress-podtally-podtally")
    assert urn(ingress) in records[0]["dependencies"]


# --- the app -----------------------------------------------------------------------------------


def _expected_objects() -> list[dict[str, Any]]:
    image = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/podtally:0.1.0"
    return render(
        AppSpec(
            profile="eks",
            name="podtally",
            namespace="podtally",
            replicas=3,
            image=image,
            host="podtally.example.com",
            certificate_arn=harness.CERT_ARN,
            zone_lookup=True,
        )
    )


def k8s_objects(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for r in result["resources"]
        if r["type"].startswith("kubernetes:") and r["type"] != RELEASE
    ]


def test_app_objects_are_exactly_what_podtally_k8s_renders() -> None:
    result = run("default")
    created = {
        (r["inputs"]["kind"], r["inputs"]["metadata"]["name"]): r for r in k8s_objects(result)
    }
    expected = _expected_objects()
    assert sorted(created) == sorted((o["kind"], o["metadata"]["name"]) for o in expected)
    for obj in expected:
        inputs = created[(obj["kind"], obj["metadata"]["name"])]["inputs"]
        for field, value in obj.items():
            assert inputs[field] == value, f"{obj['kind']}.{field} differs from podtally.k8s"


def test_every_pod_can_learn_its_real_zone() -> None:
    """Three ways, in order: the downward API (ZONE from the pod's copy of the node's zone
    label, KEP-4742), the node's label through the API (zone lookup: token + get nodes), and
    IMDS, which a pod reaches only with the node group's hop limit at 2."""
    result = run("default")
    pod = one(result, "kubernetes:apps/v1:Deployment")["inputs"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["ZONE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['topology.kubernetes.io/zone']"
    )
    assert pod["automountServiceAccountToken"] is True
    role = one(result, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")["inputs"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    binding = one(result, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")["inputs"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    template = one(result, "aws:ec2/launchTemplate:LaunchTemplate")
    metadata = template["inputs"]["metadataOptions"]
    assert metadata["httpPutResponseHopLimit"] == 2
    assert metadata["httpTokens"] == "required"
    group = one(result, NODE_GROUP)
    assert group["inputs"]["launchTemplate"] == {"id": f"{template['name']}-id", "version": "1"}
    assert urn(template) in group["dependencies"]


def test_gateway_option_replaces_the_ingress_and_installs_the_crds_first() -> None:
    from podtally.k8s.gateway import render_with_gateway

    result = run("gateway")
    created = {
        (r["inputs"]["kind"], r["inputs"]["metadata"]["name"]): r
        for r in k8s_objects(result)
        if "kind" in r["inputs"]
    }
    spec = AppSpec(
        profile="eks",
        image=f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/podtally:0.1.0",
        host="podtally.example.com",
        certificate_arn=harness.CERT_ARN,
        zone_lookup=True,
    )
    expected = render_with_gateway(spec)
    assert sorted(created) == sorted((o["kind"], o["metadata"]["name"]) for o in expected)
    assert ("Ingress", "podtally") not in created
    gateway = created[("Gateway", "podtally")]
    assert gateway["type"] == "kubernetes:gateway.networking.k8s.io/v1:Gateway"
    annotations = gateway["inputs"]["metadata"]["annotations"]
    assert annotations["pulumi.com/waitFor"] == "jsonpath={.status.addresses[0].value}"
    lbc = created[("LoadBalancerConfiguration", "podtally")]["inputs"]["spec"]
    assert lbc["listenerConfigurations"][0]["defaultCertificate"] == harness.CERT_ARN
    # The DNS name comes from the Gateway's status.
    alias = one(result, RECORD, "podtally-a")["inputs"]["aliases"][0]
    assert alias["name"] == harness.ALB_HOSTNAME
    # The Gateway API CRDs: only with the option, and before the controller starts.
    crds = one(result, "kubernetes:yaml/v2:ConfigFile")
    assert crds["inputs"]["file"].endswith("/v1.6.0/standard-install.yaml")
    assert urn(crds) in one(result, RELEASE)["dependencies"]
    assert not of_type(run("default"), "kubernetes:yaml/v2:ConfigFile")


def test_deployment_runs_the_ecr_image_and_ingress_has_the_certificate() -> None:
    result = run("default")
    deployment = one(result, "kubernetes:apps/v1:Deployment")["inputs"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == result["outputs"]["ecrRepositoryUrl"] + ":0.1.0"
    assert deployment["spec"]["replicas"] == 3
    ingress = one(result, "kubernetes:networking.k8s.io/v1:Ingress", "ingress-podtally-podtally")
    annotations = ingress["inputs"]["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == harness.CERT_ARN
    assert ingress["inputs"]["spec"]["ingressClassName"] == "alb"
    validation = one(result, "aws:acm/certificateValidation:CertificateValidation")
    assert urn(validation) in ingress["dependencies"], "the ALB gets an issued certificate"


def test_every_app_object_goes_to_the_cluster_after_the_controller() -> None:
    result = run("default")
    provider = one(result, "pulumi:providers:kubernetes")
    release = one(result, RELEASE)
    objects = k8s_objects(result)
    assert objects
    for obj in objects:
        assert obj["provider"] == f"{urn(provider)}::eks-id"
        assert urn(release) in obj["dependencies"], obj["name"]
    kubeconfig = json.loads(result["outputs"]["kubeconfig"])
    user = kubeconfig["users"][0]["user"]["exec"]
    assert user["command"] == "aws"
    assert user["args"] == [
        "eks",
        "get-token",
        "--cluster-name",
        "podtally",
        "--region",
        "us-east-1",
    ]
    assert provider["inputs"]["kubeconfig"] == result["outputs"]["kubeconfig"]


def test_outputs_and_the_secret_kubeconfig() -> None:
    outputs = run("default")["outputs"]
    assert outputs["clusterName"] == "podtally"
    assert outputs["url"] == "https://podtally.example.com"
    assert outputs["ecrRepositoryUrl"] == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/podtally"
    assert outputs["replicas"] == 3
    assert run("default")["secret_outputs"] == ["kubeconfig"]


def test_the_template_as_shipped_is_the_first_stage_without_the_app() -> None:
    """The first `up` must not wait ~10 minutes for an image that is not in ECR yet."""
    result = run("as-shipped")
    assert not k8s_objects(result)
    assert not [r for r in of_type(result, RECORD) if r["name"] == "podtally-a"]
    assert one(result, RELEASE)
    assert one(result, "aws:ecr/repository:Repository")
    assert "url" not in result["outputs"]
    assert result["outputs"]["ecrRepositoryUrl"].endswith(".amazonaws.com/podtally")
    # deployApp "true" (the second `up`) adds the app and its record.
    assert k8s_objects(run("default"))
    assert [r for r in of_type(run("default"), RECORD) if r["name"] == "podtally-a"]


def test_the_stack_template_holds_no_per_user_state() -> None:
    """The tracked file is a template: a salt or a secret in it would be someone's stack."""
    import yaml

    doc = yaml.safe_load(harness.TEMPLATE.read_text())
    assert set(doc) == {"config"}, "no encryptionsalt, secretsprovider or encryptedkey"
    assert doc["config"]["podtally:deployApp"] == "false"
    assert not any(isinstance(v, dict) for v in doc["config"].values()), "no secure: values"
    assert not list(harness.INFRA.glob("Pulumi.*.yaml")) or all(
        p.name == "Pulumi.yaml" for p in harness.INFRA.glob("Pulumi.*.yaml")
    ), "per-user stack files are not shipped"


def test_mock_runs_are_deterministic() -> None:
    def canonical(result: dict[str, Any]) -> str:
        resources = sorted(result["resources"], key=lambda r: (r["type"], r["name"]))
        calls = sorted(result["calls"], key=lambda c: json.dumps(c, sort_keys=True))
        return json.dumps([resources, calls, result["outputs"]], sort_keys=True)

    assert canonical(run("default")) == canonical(run("default-again"))


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_bad_config_stops_with_one_clear_line(case: str) -> None:
    result = run(f"bad-{case}")
    error = result["error"]
    assert error is not None
    assert BAD_CONFIG[case][1] in error
    assert "\n" not in error
    assert result["resources"] == []


def _ints(value: Any) -> Any:
    """Pulumi's wire format (protobuf Struct) carries every number as a double: 10001 arrives
    as 10001.0. Kubernetes fields are integers, so turn whole doubles back before checkov reads
    them (its checks compare with int thresholds and types)."""
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_checkov_passes_on_the_kubernetes_objects_the_program_creates(tmp_path: Path) -> None:
    import yaml

    for index, resource in enumerate(k8s_objects(run("default"))):
        (tmp_path / f"{index:02d}.yaml").write_text(yaml.safe_dump(_ints(resource["inputs"])))
    assert len(list(tmp_path.glob("*.yaml"))) >= 6
    code, report = checkov(tmp_path)
    summary = report["summary"]
    failed = checkov_failures(report)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50, summary
    assert failed == [], failed
    assert code == 0
