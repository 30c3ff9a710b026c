"""podtally on AWS: VPC, EKS, the load balancer controller, ECR, a certificate, DNS and the app.

Reads top to bottom; every knob is in Pulumi.<stack>.yaml (see podtally_infra/config.py), a
per-user copy of the tracked template stack.example.yaml (`podtally cloud` makes the copy).
"""

from __future__ import annotations

import os
import sys

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from podtally_infra import (
    app,
    certificate,
    cluster,
    config,
    controller,
    network,
    registry,
)

settings = config.load()
account_id = aws.get_caller_identity().account_id

# Network and cluster.
net = network.build(settings)
eks = cluster.build(settings, net)
provider = k8s.Provider(
    "eks",
    kubeconfig=eks.kubeconfig,
    opts=pulumi.ResourceOptions(depends_on=[*eks.admin_access, eks.node_group]),
)
lb_controller = controller.build(settings, net, eks, provider)

# Image registry and certificate.
repo = registry.build(settings)
cert = certificate.build(settings)

pulumi.export("clusterName", eks.cluster.name)
pulumi.export("kubeconfig", pulumi.Output.secret(eks.kubeconfig))
pulumi.export("ecrRepositoryUrl", repo.repository_url)
pulumi.export("certificateArn", cert.validated_arn)
pulumi.export("replicas", settings.replicas)

# The app, once its image is in ECR: podtally:deployApp is false in the template, so the first
# `up` creates the repository; push the image, set it to true, `up` again.
if settings.deploy_app:
    image = registry.image_reference(account_id, settings)
    objects, placeholder = app.manifests(settings, image, account_id)
    deployed = app.build(
        settings, objects, placeholder, cert.validated_arn, cert.zone_id, provider, lb_controller
    )
    pulumi.export("image", image)
    pulumi.export("albHostname", deployed.alb_hostname)
    pulumi.export("url", f"https://{settings.hostname}")
