"""The IAM permissions of the AWS Load Balancer Controller, written out as data.

POLICY equals the controller's published ``docs/install/iam_policy.json`` at tag v3.5.0 of
kubernetes-sigs/aws-load-balancer-controller (commit 11eb202c97e4ae2ee45e0658c4cde9a4b59f33d4),
statement for statement; the file is unchanged since v2.14.0 (v2.13.0 added
``ec2:DescribeRouteTables``). A byte-exact copy is pinned in ``upstream/`` with its sha256 below,
and tests/infra/test_program.py checks POLICY against it. Mutating calls are limited to load
balancers, target groups and security groups that carry the controller's ``elbv2.k8s.aws/cluster``
tag.

When you move CHART_VERSION in controller.py, replace the pinned copy with the new release's
file, record its source and sha256 here, and make POLICY equal it again.
"""

from __future__ import annotations

from typing import Any

UPSTREAM_SOURCE = (
    "github.com/kubernetes-sigs/aws-load-balancer-controller "
    "v3.5.0 (11eb202c97e4ae2ee45e0658c4cde9a4b59f33d4) docs/install/iam_policy.json"
)
UPSTREAM_COPY = "upstream/aws-load-balancer-controller-v3.5.0-iam_policy.json"
UPSTREAM_SHA256 = "16f232c9d9f79366fe949c4550ad517a202380058a9e48d45a4e215044a20a6a"

CLUSTER_TAG = "elbv2.k8s.aws/cluster"

_TAGGED_REQUEST = {"Null": {f"aws:RequestTag/{CLUSTER_TAG}": "false"}}
_TAGGED_RESOURCE = {"Null": {f"aws:ResourceTag/{CLUSTER_TAG}": "false"}}
_UNTAGGED_REQUEST_ON_TAGGED_RESOURCE = {
    "Null": {
        f"aws:RequestTag/{CLUSTER_TAG}": "true",
        f"aws:ResourceTag/{CLUSTER_TAG}": "false",
    }
}
_ELB_RESOURCES = [
    "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
    "arn:aws:elasticloadbalancing:*:*:loadbalancer/net/*/*",
    "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/*/*",
]


def _allow(actions: list[str], resource: Any = "*", condition: Any = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


# Read-only discovery: the controller looks up subnets, security groups, certificates, etc.
READ = [
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeAddresses",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeVpcs",
    "ec2:DescribeVpcPeeringConnections",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeTags",
    "ec2:GetCoipPoolUsage",
    "ec2:DescribeCoipPools",
    "ec2:GetSecurityGroupsForVpc",
    "ec2:DescribeIpamPools",
    "ec2:DescribeRouteTables",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeListenerCertificates",
    "elasticloadbalancing:DescribeSSLPolicies",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTrustStores",
    "elasticloadbalancing:DescribeListenerAttributes",
    "elasticloadbalancing:DescribeCapacityReservation",
]

# Integrations an Ingress may ask for by annotation: Cognito, ACM/IAM certificates, WAF, Shield.
INTEGRATIONS = [
    "cognito-idp:DescribeUserPoolClient",
    "acm:ListCertificates",
    "acm:DescribeCertificate",
    "iam:ListServerCertificates",
    "iam:GetServerCertificate",
    "waf-regional:GetWebACL",
    "waf-regional:GetWebACLForResource",
    "waf-regional:AssociateWebACL",
    "waf-regional:DisassociateWebACL",
    "wafv2:GetWebACL",
    "wafv2:GetWebACLForResource",
    "wafv2:AssociateWebACL",
    "wafv2:DisassociateWebACL",
    "shield:GetSubscriptionState",
    "shield:DescribeProtection",
    "shield:CreateProtection",
    "shield:DeleteProtection",
]

# Changes to load balancers and target groups the controller created (tagged with the cluster).
MANAGE_TAGGED = [
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:SetIpAddressType",
    "elasticloadbalancing:SetSecurityGroups",
    "elasticloadbalancing:SetSubnets",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:ModifyTargetGroupAttributes",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:ModifyListenerAttributes",
    "elasticloadbalancing:ModifyCapacityReservation",
    "elasticloadbalancing:ModifyIpPools",
]

LISTENERS_AND_RULES = [
    "elasticloadbalancing:SetWebAcl",
    "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:AddListenerCertificates",
    "elasticloadbalancing:RemoveListenerCertificates",
    "elasticloadbalancing:ModifyRule",
    "elasticloadbalancing:SetRulePriorities",
]

POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        _allow(
            ["iam:CreateServiceLinkedRole"],
            condition={
                "StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}
            },
        ),
        _allow(READ),
        _allow(INTEGRATIONS),
        _allow(["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]),
        _allow(["ec2:CreateSecurityGroup"]),
        _allow(
            ["ec2:CreateTags"],
            "arn:aws:ec2:*:*:security-group/*",
            {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}, **_TAGGED_REQUEST},
        ),
        _allow(
            ["ec2:CreateTags", "ec2:DeleteTags"],
            "arn:aws:ec2:*:*:security-group/*",
            _UNTAGGED_REQUEST_ON_TAGGED_RESOURCE,
        ),
        _allow(
            [
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:DeleteSecurityGroup",
            ],
            condition=_TAGGED_RESOURCE,
        ),
        _allow(
            ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"],
            condition=_TAGGED_REQUEST,
        ),
        _allow(
            [
                "elasticloadbalancing:CreateListener",
                "elasticloadbalancing:DeleteListener",
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:DeleteRule",
            ]
        ),
        _allow(
            ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
            _ELB_RESOURCES,
            _UNTAGGED_REQUEST_ON_TAGGED_RESOURCE,
        ),
        _allow(
            ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
            [
                "arn:aws:elasticloadbalancing:*:*:listener/net/*/*/*",
                "arn:aws:elasticloadbalancing:*:*:listener/app/*/*/*",
                "arn:aws:elasticloadbalancing:*:*:listener-rule/net/*/*/*",
                "arn:aws:elasticloadbalancing:*:*:listener-rule/app/*/*/*",
            ],
        ),
        _allow(MANAGE_TAGGED, condition=_TAGGED_RESOURCE),
        _allow(
            ["elasticloadbalancing:AddTags"],
            _ELB_RESOURCES,
            {
                "StringEquals": {
                    "elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"]
                },
                **_TAGGED_REQUEST,
            },
        ),
        _allow(
            ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
            "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
        ),
        _allow(LISTENERS_AND_RULES),
    ],
}


def actions() -> set[str]:
    """Every action the policy allows, for tests and reviews."""
    return {a for statement in POLICY["Statement"] for a in statement["Action"]}
