"""EKS: the control plane, who may administer it, the managed node group and the add-ons.

Access is by EKS access entries only (authentication mode API, no aws-auth ConfigMap): whoever
runs `up` always gets an entry with the cluster-admin access policy (Pulumi's Kubernetes provider
acts with that identity's token), and ``podtally:adminPrincipalArn``, when it names someone else,
gets a second one. Kubernetes secrets are encrypted
with a customer-managed KMS key that rotates yearly; the control plane logs to CloudWatch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from podtally_infra.config import Settings
from podtally_infra.network import Network

LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Installed before the nodes so that they come up with networking and Pod Identity; CoreDNS
# needs nodes to schedule on, so it comes after them.
ADDONS_BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
ADDONS_AFTER_NODES = ("coredns",)
# The VPC CNI enforces NetworkPolicy objects only when asked to (its network policy agent); the
# app from podtally.k8s ships one, so turn enforcement on.
ADDON_CONFIGURATION = {"vpc-cni": json.dumps({"enableNetworkPolicy": "true"})}
# Instance metadata reachable from pods (one hop for the node, one for the pod's veth).
IMDS_HOP_LIMIT = 2
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)


def assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


@dataclass(frozen=True)
class Cluster:
    cluster: aws.eks.Cluster
    node_group: aws.eks.NodeGroup
    addons: dict[str, aws.eks.Addon]
    admin_access: list[aws.eks.AccessPolicyAssociation]
    kubeconfig: pulumi.Output[str]


def deployer_arn() -> str:
    """The IAM principal running `pulumi up`, as an access entry can name it.

    An assumed-role session ARN (arn:aws:sts::...:assumed-role/R/session) is mapped to its role,
    because access entries name IAM roles and users, not sessions.
    """
    caller = aws.get_caller_identity()
    if ":assumed-role/" in caller.arn:
        return aws.iam.get_session_context(arn=caller.arn).issuer_arn
    return caller.arn


def admin_principals(settings: Settings) -> dict[str, str]:
    """Logical suffix -> principal ARN of everyone who gets cluster-admin.

    The deployer always: its credentials are what the Kubernetes provider uses to install the
    controller and the app. ``adminPrincipalArn`` in addition, unless it is the deployer.
    """
    principals = {"deployer": deployer_arn()}
    extra = settings.admin_principal_arn
    if extra and extra != principals["deployer"]:
        principals["admin"] = extra
    return principals


def kubeconfig(cluster: aws.eks.Cluster, region: str) -> pulumi.Output[str]:
    """A kubeconfig that authenticates with `aws eks get-token` (the AWS CLI must be installed)."""

    def build(args: list[str]) -> str:
        name, endpoint, ca_data = args
        user = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "aws",
                "args": ["eks", "get-token", "--cluster-name", name, "--region", region],
                "interactiveMode": "Never",
            }
        }
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": name,
                        "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                    }
                ],
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
                "current-context": name,
                "users": [{"name": name, "user": user}],
            }
        )

    return pulumi.Output.all(
        cluster.name, cluster.endpoint, cluster.certificate_authority.data
    ).apply(build)


def build(settings: Settings, network: Network) -> Cluster:
    name = settings.cluster_name

    cluster_role = aws.iam.Role(
        f"{name}-cluster", assume_role_policy=assume_role_policy("eks.amazonaws.com")
    )
    cluster_policy = aws.iam.RolePolicyAttachment(
        f"{name}-cluster-policy",
        role=cluster_role.name,
        policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
    )

    key = aws.kms.Key(
        f"{name}-secrets",
        description=f"EKS secrets encryption for {name}",
        enable_key_rotation=True,
        deletion_window_in_days=7,
    )
    key_use = aws.iam.RolePolicy(
        f"{name}-cluster-kms",
        role=cluster_role.id,
        policy=key.arn.apply(
            lambda arn: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "kms:Encrypt",
                                "kms:Decrypt",
                                "kms:ListGrants",
                                "kms:DescribeKey",
                            ],
                            "Resource": arn,
                        }
                    ],
                }
            )
        ),
    )
    # Created here so that logs expire; EKS would otherwise create it with no retention.
    logs = aws.cloudwatch.LogGroup(
        f"{name}-control-plane", name=f"/aws/eks/{name}/cluster", retention_in_days=7
    )

    cluster = aws.eks.Cluster(
        name,
        name=name,
        version=settings.kubernetes_version,
        role_arn=cluster_role.arn,
        access_config={
            "authentication_mode": "API",
            "bootstrap_cluster_creator_admin_permissions": False,
        },
        bootstrap_self_managed_addons=False,
        encryption_config={"provider": {"key_arn": key.arn}, "resources": ["secrets"]},
        enabled_cluster_log_types=LOG_TYPES,
        vpc_config={
            "subnet_ids": [s.id for s in network.intra_subnets],
            "endpoint_private_access": True,
            "endpoint_public_access": True,
            "public_access_cidrs": list(settings.api_public_cidrs),
        },
        opts=pulumi.ResourceOptions(depends_on=[cluster_policy, key_use, logs]),
    )

    admin_access: list[aws.eks.AccessPolicyAssociation] = []
    for suffix, principal in admin_principals(settings).items():
        entry = aws.eks.AccessEntry(
            f"{name}-{suffix}",
            cluster_name=cluster.name,
            principal_arn=principal,
            type="STANDARD",
        )
        admin_access.append(
            aws.eks.AccessPolicyAssociation(
                f"{name}-{suffix}-admin",
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=ADMIN_POLICY,
                access_scope={"type": "cluster"},
            )
        )

    addons: dict[str, aws.eks.Addon] = {}
    for addon in ADDONS_BEFORE_NODES:
        addons[addon] = aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            configuration_values=ADDON_CONFIGURATION.get(addon),
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
        )

    node_role = aws.iam.Role(
        f"{name}-nodes", assume_role_policy=assume_role_policy("ec2.amazonaws.com")
    )
    node_policies = [
        aws.iam.RolePolicyAttachment(
            f"{name}-nodes-{arn.rsplit('/', 1)[1]}", role=node_role.name, policy_arn=arn
        )
        for arn in NODE_POLICIES
    ]
    # Pods read their zone from the instance metadata service when nothing else tells them: with
    # IMDSv2's default hop limit of 1 on AL2023 nodes, the reply dies one hop short of a pod's
    # network namespace, and the zone reads "unknown". Two hops reach the pods; tokens stay
    # required (IMDSv2 only).
    launch_template = aws.ec2.LaunchTemplate(
        f"{name}-nodes",
        metadata_options={
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": IMDS_HOP_LIMIT,
        },
        update_default_version=True,
    )
    node_group = aws.eks.NodeGroup(
        f"{name}-nodes",
        cluster_name=cluster.name,
        node_role_arn=node_role.arn,
        subnet_ids=[s.id for s in network.private_subnets],
        instance_types=[settings.node_instance_type],
        capacity_type=settings.capacity_type,
        ami_type="AL2023_x86_64_STANDARD",
        scaling_config={
            "desired_size": settings.node_count,
            "min_size": settings.node_min,
            "max_size": settings.node_max,
        },
        update_config={"max_unavailable": 1},
        launch_template={
            "id": launch_template.id,
            "version": launch_template.latest_version.apply(str),
        },
        opts=pulumi.ResourceOptions(depends_on=[*node_policies, *addons.values()]),
    )
    for addon in ADDONS_AFTER_NODES:
        addons[addon] = aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(depends_on=[node_group]),
        )

    return Cluster(cluster, node_group, addons, admin_access, kubeconfig(cluster, settings.region))
