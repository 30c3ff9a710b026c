"""The AWS Load Balancer Controller: a pinned Helm chart, with AWS permissions via Pod Identity.

No OIDC provider and no IRSA annotation: the EKS Pod Identity agent (an add-on) hands the
controller's service account the credentials of a role that trusts pods.eks.amazonaws.com.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from podtally_infra import lbc_policy
from podtally_infra.cluster import Cluster
from podtally_infra.config import Settings
from podtally_infra.network import Network

CHART = "aws-load-balancer-controller"
CHART_REPO = "https://aws.github.io/eks-charts"
# Chart 3.5.0 installs controller v3.5.0 (August 2026). Its IAM policy is lbc_policy.POLICY, equal
# to that release's docs/install/iam_policy.json (pinned in upstream/, checked by the tests).
CHART_VERSION = "3.5.0"
CONTROLLER_VERSION = "v3.5.0"
NAMESPACE = "kube-system"
# The Gateway API's standard CRDs, the release controller v3.5.0's docs name. Only with
# podtally:gateway; the controller's own gateway CRDs come with its chart, and it turns its ALB
# gateway on when it finds these at start, so they go in before it.
GATEWAY_API_VERSION = "v1.6.0"
GATEWAY_API_CRDS = (
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/"
    f"{GATEWAY_API_VERSION}/standard-install.yaml"
)
SERVICE_ACCOUNT = "aws-load-balancer-controller"

POD_IDENTITY_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
    }
)


def build(
    settings: Settings, network: Network, cluster: Cluster, provider: k8s.Provider
) -> k8s.helm.v3.Release:
    name = settings.cluster_name
    role = aws.iam.Role(f"{name}-lb-controller", assume_role_policy=POD_IDENTITY_TRUST)
    policy = aws.iam.RolePolicy(
        f"{name}-lb-controller", role=role.id, policy=json.dumps(lbc_policy.POLICY)
    )
    association = aws.eks.PodIdentityAssociation(
        f"{name}-lb-controller",
        cluster_name=cluster.cluster.name,
        namespace=NAMESPACE,
        service_account=SERVICE_ACCOUNT,
        role_arn=role.arn,
        opts=pulumi.ResourceOptions(depends_on=[policy]),
    )
    crds: list[pulumi.Resource] = []
    if settings.gateway:
        crds.append(
            k8s.yaml.v2.ConfigFile(
                "gateway-api-crds",
                file=GATEWAY_API_CRDS,
                opts=pulumi.ResourceOptions(provider=provider, depends_on=[cluster.node_group]),
            )
        )
    return k8s.helm.v3.Release(
        "aws-load-balancer-controller",
        name="aws-load-balancer-controller",
        chart=CHART,
        version=CHART_VERSION,
        repository_opts={"repo": CHART_REPO},
        namespace=NAMESPACE,
        values={
            "clusterName": cluster.cluster.name,
            "region": settings.region,
            "vpcId": network.vpc.id,
            "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
            "replicaCount": 2,
        },
        # Helm waits for the controller (and its admission webhook) to be ready, so an Ingress
        # created after this release is admitted and reconciled.
        atomic=True,
        timeout=600,
        opts=pulumi.ResourceOptions(
            provider=provider,
            depends_on=[association, cluster.node_group, *cluster.addons.values(), *crds],
        ),
    )
