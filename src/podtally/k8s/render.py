"""Kubernetes objects for one AppSpec, as plain data.

`render(spec)` returns a list of dictionaries, one per object, in the order `kubectl apply` should
create them (the Namespace first, the Ingress last). The Namespace object is left out for
``default`` and ``kube-*``, which exist on every cluster and are not podtally's to label or
delete, and with ``create_namespace=False``, for a namespace managed elsewhere. Nothing here
talks to a cluster, reads a file or formats YAML: the CLI, the `deploy/` copies and the Pulumi
program all consume the same data.

Two profiles:

* ``generic``: any conformant cluster. An Ingress only when a host is given; its class and TLS
  secret come from the spec. Zone spreading is a preference, because a node may lack the zone
  label (kind, bare metal) and a hard constraint would then leave every pod Pending.
* ``eks``: behind the AWS Load Balancer Controller. One internet-facing ALB that sends traffic
  straight to pod IPs, redirects HTTP to HTTPS, health-checks ``/readyz`` and drains targets for
  as long as the pods themselves drain. EKS nodes always carry the zone label, so zone spreading
  is a hard constraint there.

gRPC (issue 12), where ``spec.grpc_port`` is not 0: a second container port and Service port
(``grpc``, h2c), start-up and readiness probes through ``grpc.health.v1.Health`` (Kubernetes
1.27+; ``grpc_probes=False`` keeps them on ``/readyz``), and on eks with TLS a second Ingress in
the same IngressGroup, so the same ALB and host route the gRPC services' paths to a gRPC target
group, per call. Liveness stays on HTTP ``/livez``: gRPC health turns NOT_SERVING during the
drain, and a liveness probe must never fail a draining pod.

Why one module of this size: it is a table of objects, one short function each, that share the
labels, names, ports and skips defined at the top; the chart's templates mirror it object by
object (tests/k8s/test_chart.py). The variants that replace or add objects live beside it:
:mod:`~podtally.k8s.gateway`, :mod:`~podtally.k8s.traffic`, :mod:`~podtally.k8s.verify_job`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from podtally import __version__
from podtally.contract import ENV, VERSION_LABEL, ZONE_LABEL
from podtally.service.config import DEFAULT_SHUTDOWN_TIMEOUT
from podtally.spec import AppSpec

Obj = dict[str, Any]

APP_NAME = "podtally"
COMPONENT = "identity-service"
MANAGED_BY = "podtally"

RUN_AS = 10001
SERVICE_PORT = 80
PORT_NAME = "http"
GRPC_PORT_NAME = "grpc"
# The Service's gRPC port: gRPC's customary 9090, whatever the container's port is.
GRPC_SERVICE_PORT = 9090
# The gRPC services' path prefixes (/package.Service/Method), as the replica registers them.
GRPC_PATHS = (
    "/podtally.v1.Identity",
    "/grpc.health.v1.Health",
    "/grpc.reflection.v1alpha.ServerReflection",
)
GRPC_HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"

# After the drain the service gives in-flight requests this long (`--shutdown-timeout`, the
# service's own default) before it exits anyway; the grace period covers drain + this + a margin.
IN_FLIGHT_SECONDS = math.ceil(DEFAULT_SHUTDOWN_TIMEOUT)
GRACE_MARGIN_SECONDS = 5

# The ALB's TLS policy: TLS 1.3 and 1.2 only, forward-secret AEAD suites
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html).
ALB_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# The ALB's idle timeout (its default, made explicit): below the replica's keep-alive timeout.
ALB_IDLE_TIMEOUT = 60

HOSTNAME_LABEL = "kubernetes.io/hostname"

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def grpc_on(spec: AppSpec) -> bool:
    return spec.grpc_port != 0


def grpc_ingress_on(spec: AppSpec) -> bool:
    """The eks profile's gRPC Ingress: the ALB carries gRPC on HTTPS listeners only."""
    return spec.profile == "eks" and spec.tls and grpc_on(spec)


def grace_period_seconds(spec: AppSpec) -> int:
    """terminationGracePeriodSeconds: the drain, then in-flight requests, then a margin."""
    return spec.drain + IN_FLIGHT_SECONDS + GRACE_MARGIN_SECONDS


def app_version(spec: AppSpec) -> str:
    """The `app.kubernetes.io/version` label: the image tag when it is a valid label value."""
    ref = spec.image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        tag = last.split(":", 1)[1]
        if _LABEL_VALUE.match(tag):
            return tag
    return __version__


def selector_labels(spec: AppSpec) -> dict[str, str]:
    """The labels that pick this app's pods: stable across versions (selectors are immutable)."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": spec.name}


def labels(spec: AppSpec) -> dict[str, str]:
    return {
        **spec.labels,
        **selector_labels(spec),
        VERSION_LABEL: app_version(spec),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/part-of": APP_NAME,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def _meta(
    spec: AppSpec,
    name: str,
    *,
    namespaced: bool = True,
    annotations: dict[str, str] | None = None,
    extra_labels: dict[str, str] | None = None,
) -> Obj:
    meta: Obj = {"name": name}
    if namespaced:
        meta["namespace"] = spec.namespace
    meta["labels"] = {**labels(spec), **(extra_labels or {})}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _skips(*checks: tuple[str, str]) -> dict[str, str]:
    """checkov's inline skips: `checkov.io/skipN: CHECK_ID=reason`, one per check."""
    return {f"checkov.io/skip{n}": f"{check}={why}" for n, (check, why) in enumerate(checks, 1)}


def is_system_namespace(name: str) -> bool:
    """``default`` and ``kube-*`` (kube-system, kube-public, kube-node-lease): every cluster has
    them, and the cluster owns them. Applying a Namespace object for one would relabel it (the
    restricted Pod Security level on kube-system blocks its privileged pods), and deleting the
    rendered objects would delete it."""
    return name == "default" or name.startswith("kube-")


def namespace(spec: AppSpec) -> Obj:
    extra: dict[str, str] = {
        # The restricted Pod Security Standard, enforced: the Deployment below meets it.
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }
    if spec.profile == "eks":
        # The AWS Load Balancer Controller adds a readiness gate to pods in this namespace: a new
        # pod counts as ready only once the ALB reports its target healthy, so a rolling update
        # never removes an old pod before its replacement takes traffic from the load balancer.
        extra["elbv2.k8s.aws/pod-readiness-gate-inject"] = "enabled"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": spec.namespace, "labels": {**labels(spec), **extra}},
    }


def service_account(spec: AppSpec) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(spec, spec.name),
        # The service needs no API access unless it looks its node's zone up itself.
        "automountServiceAccountToken": spec.zone_lookup,
    }


def _zone_reader_name(spec: AppSpec) -> str:
    # ClusterRoles are cluster-wide: the namespace in the name keeps two installs apart.
    return f"{spec.namespace}-{spec.name}-zone-lookup"


def cluster_role(spec: AppSpec) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(spec, _zone_reader_name(spec), namespaced=False),
        # Only `get` on nodes: enough to read the node's zone label, no list, no watch.
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
    }


def cluster_role_binding(spec: AppSpec) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(spec, _zone_reader_name(spec), namespaced=False),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": _zone_reader_name(spec),
        },
        "subjects": [{"kind": "ServiceAccount", "name": spec.name, "namespace": spec.namespace}],
    }


def _port_names(spec: AppSpec) -> list[str]:
    return [PORT_NAME, GRPC_PORT_NAME] if grpc_on(spec) else [PORT_NAME]


def network_policy(spec: AppSpec) -> Obj:
    policy: Obj = {
        "podSelector": {"matchLabels": selector_labels(spec)},
        "policyTypes": ["Ingress"],
        # From anywhere (the ALB's addresses, an ingress controller, other pods), but only to the
        # app's ports (HTTP, and gRPC where it is on): no other port of the pod is reachable.
        "ingress": [{"ports": [{"protocol": "TCP", "port": name} for name in _port_names(spec)]}],
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec, spec.name),
        "spec": policy,
    }


def service(spec: AppSpec) -> Obj:
    ports: list[Obj] = [
        {
            "name": PORT_NAME,
            "protocol": "TCP",
            "port": SERVICE_PORT,
            "targetPort": PORT_NAME,
            "appProtocol": "http",
        }
    ]
    if grpc_on(spec):
        # gRPC is HTTP/2 without TLS to the pod (h2c): proxies that read appProtocol (Gateway
        # implementations, service meshes) then speak HTTP/2 to it.
        ports.append(
            {
                "name": GRPC_PORT_NAME,
                "protocol": "TCP",
                "port": GRPC_SERVICE_PORT,
                "targetPort": GRPC_PORT_NAME,
                "appProtocol": "kubernetes.io/h2c",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, spec.name),
        "spec": {
            # ClusterIP only: the ALB (target-type ip) or an ingress controller reaches pod IPs
            # directly; a LoadBalancer Service would be a second, unwanted load balancer.
            "type": "ClusterIP",
            "selector": selector_labels(spec),
            "ports": ports,
        },
    }


def _probe(path: str, period: int, failures: int, timeout: int = 1) -> Obj:
    return {
        "httpGet": {"path": path, "port": PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def _grpc_probe(port: int, period: int, failures: int, timeout: int = 1) -> Obj:
    # No service name: the server's overall health, which follows readiness like /readyz.
    return {
        "grpc": {"port": port},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def probes(spec: AppSpec) -> Obj:
    """Start-up, readiness and liveness probes: gRPC health where gRPC is on and chosen."""
    if grpc_on(spec) and spec.grpc_probes:
        startup = _grpc_probe(spec.grpc_port, period=1, failures=30)
        readiness = _grpc_probe(spec.grpc_port, period=2, failures=2)
    else:
        startup = _probe("/readyz", period=1, failures=30)
        readiness = _probe("/readyz", period=2, failures=2)
    return {
        # Starting: up to 30 s to become ready; after that liveness takes over.
        "startupProbe": startup,
        # Ready: out of the endpoints within ~4 s of readiness turning off (start-up or drain).
        "readinessProbe": readiness,
        # Alive: restarted only after ~30 s of /livez failing; /livez keeps answering while
        # draining, so a drain never looks like a hang (gRPC health does not: NOT_SERVING).
        "livenessProbe": _probe("/livez", period=10, failures=3, timeout=2),
    }


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def container_args(spec: AppSpec) -> list[str]:
    """Arguments to the image's entrypoint, `podtally serve`."""
    return [
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.port),
        "--drain-seconds",
        str(spec.drain),
        "--shutdown-timeout",
        str(IN_FLIGHT_SECONDS),
        # Always said: the image's own default is 9090, so 0 must be explicit to turn gRPC off.
        "--grpc-port",
        str(spec.grpc_port),
    ]


def container_env(spec: AppSpec) -> list[Obj]:
    return [
        _field_env(ENV["pod"][0], "metadata.name"),
        _field_env(ENV["node"][0], "spec.nodeName"),
        _field_env(ENV["namespace"][0], "metadata.namespace"),
        _field_env(ENV["ip"][0], "status.podIP"),
        # Kubernetes 1.35+ (PodTopologyLabelsAdmission, beta) copies the node's zone label onto
        # the pod at binding; older clusters leave this empty and the service falls back to the
        # Kubernetes API (the zone lookup) or the EC2 instance metadata service.
        _field_env(ENV["zone"][0], f"metadata.labels['{ZONE_LABEL}']"),
        # The pod template's own version label (the image tag), so that a canary and a stable
        # Deployment tell their replicas apart.
        _field_env(ENV["version"][0], f"metadata.labels['{VERSION_LABEL}']"),
    ]


def _spread(spec: AppSpec, key: str, when: str) -> Obj:
    return {
        "maxSkew": 1,
        "topologyKey": key,
        "whenUnsatisfiable": when,
        "labelSelector": {"matchLabels": selector_labels(spec)},
        # Spread each revision on its own: during a rollout the old pods do not skew the count.
        "matchLabelKeys": ["pod-template-hash"],
        # Tainted nodes (cordoned, unreachable, NotReady) are not domains to balance against.
        "nodeTaintsPolicy": "Honor",
    }


def topology_spread(spec: AppSpec) -> list[Obj]:
    # Across nodes: a preference. A hard rule would block a rollout's surge pod on a small or
    # busy cluster for no gain in availability the zone rule does not already give.
    # Across zones: hard on EKS, where every node has the zone label and a zone is the unit of
    # failure behind the ALB; soft elsewhere, where nodes may lack the label and a hard rule would
    # leave the pods Pending.
    zone_rule = "DoNotSchedule" if spec.profile == "eks" else "ScheduleAnyway"
    return [_spread(spec, ZONE_LABEL, zone_rule), _spread(spec, HOSTNAME_LABEL, "ScheduleAnyway")]


def _security_context_pod() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def security_context_container() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_ports(spec: AppSpec) -> list[Obj]:
    ports: list[Obj] = [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}]
    if grpc_on(spec):
        ports.append({"name": GRPC_PORT_NAME, "containerPort": spec.grpc_port, "protocol": "TCP"})
    return ports


def _image_is_digest(spec: AppSpec) -> bool:
    return "@sha256:" in spec.image


def deployment(spec: AppSpec) -> Obj:
    container: Obj = {
        "name": APP_NAME,
        "image": spec.image,
        # The image is pinned (digest or immutable tag): a cached copy is the same image.
        "imagePullPolicy": "IfNotPresent",
        "args": container_args(spec),
        "ports": container_ports(spec),
        "env": container_env(spec),
        **probes(spec),
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "128Mi"},
        },
        "securityContext": security_context_container(),
        # Python and its libraries may want a scratch directory; the root filesystem is read-only.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - a pod-private emptyDir
    }
    pod_spec: Obj = {
        "serviceAccountName": spec.name,
        "automountServiceAccountToken": spec.zone_lookup,
        "enableServiceLinks": False,
        # After SIGTERM the service answers for drain_seconds with /readyz at 503 (the pause that
        # outlasts endpoint and load balancer propagation), then finishes in-flight requests.
        "terminationGracePeriodSeconds": grace_period_seconds(spec),
        "securityContext": _security_context_pod(),
        "topologySpreadConstraints": topology_spread(spec),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    }
    skips = [
        (
            "CKV_K8S_15",
            "the image is pinned by digest or immutable tag; IfNotPresent pulls the same bytes",
        ),
    ]
    if not _image_is_digest(spec):
        skips.append(("CKV_K8S_43", "pinned by an immutable version tag (ECR tag immutability)"))
    if spec.zone_lookup:
        skips.append(("CKV_K8S_38", "the zone lookup reads the node's zone label: needs the token"))
    deploy_spec: Obj = {
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector_labels(spec)},
        "strategy": {
            "type": "RollingUpdate",
            # Never below the desired count: one extra pod comes up, turns ready, then one goes.
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "minReadySeconds": 5,
        "template": {
            "metadata": {"labels": labels(spec)},
            "spec": pod_spec,
        },
    }
    if not spec.autoscaling:
        # With the autoscaler on, it owns the replica count; a value here would fight it on
        # every apply.
        deploy_spec = {"replicas": spec.replicas, **deploy_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, spec.name, annotations=_skips(*skips)),
        "spec": deploy_spec,
    }


def pod_disruption_budget(spec: AppSpec) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, spec.name),
        "spec": {
            # One pod at a time. With a single replica, minAvailable: 1 would block every node
            # drain forever; maxUnavailable: 1 lets it through (and says so: one replica means a
            # gap during a drain).
            "maxUnavailable": 1,
            # A pod that is not running healthily anyway may always be evicted.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": selector_labels(spec)},
        },
    }


def max_replicas(spec: AppSpec) -> int:
    return spec.max_replicas if spec.max_replicas is not None else spec.replicas * 3


def horizontal_pod_autoscaler(spec: AppSpec) -> Obj:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec, spec.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.replicas,
            "maxReplicas": max_replicas(spec),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
            "behavior": {
                # Scale down slowly: every removed pod drains for drain_seconds.
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                }
            },
        },
    }


def _backend(spec: AppSpec, port_name: str = PORT_NAME) -> Obj:
    return {"service": {"name": spec.name, "port": {"name": port_name}}}


def _rule(spec: AppSpec) -> Obj:
    rule: Obj = {
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": _backend(spec)}]}
    }
    if spec.host:
        rule = {"host": spec.host, **rule}
    return rule


def alb_annotations(spec: AppSpec) -> dict[str, str]:
    """The AWS Load Balancer Controller's annotations for the eks profile's one ALB."""
    prefix = "alb.ingress.kubernetes.io/"
    ann: dict[str, str] = {
        "scheme": "internet-facing",
        # Straight to pod IPs (the Service is ClusterIP): no NodePort hop, and the ALB sees each
        # pod's own /readyz.
        "target-type": "ip",
        "backend-protocol": "HTTP",
        "healthcheck-protocol": "HTTP",
        "healthcheck-port": "traffic-port",
        "healthcheck-path": "/readyz",
        "healthcheck-interval-seconds": "5",
        "healthcheck-timeout-seconds": "2",
        "healthy-threshold-count": "2",
        "unhealthy-threshold-count": "2",
        "success-codes": "200",
        # A removed pod keeps answering for drain_seconds; the ALB lets in-flight requests on it
        # finish within the same window, then forgets it.
        "target-group-attributes": f"deregistration_delay.timeout_seconds={spec.drain}",
        # The ALB closes idle connections to a pod before the pod does (the replica keeps them
        # DEFAULT_KEEP_ALIVE_TIMEOUT): otherwise a reused connection can meet a close, a 502.
        "load-balancer-attributes": "routing.http.drop_invalid_header_fields.enabled=true,"
        f"idle_timeout.timeout_seconds={ALB_IDLE_TIMEOUT}",
    }
    if spec.tls:
        ann["listen-ports"] = '[{"HTTP": 80}, {"HTTPS": 443}]'
        ann["ssl-redirect"] = "443"
        ann["ssl-policy"] = ALB_SSL_POLICY
        if spec.certificate_arn:
            ann["certificate-arn"] = spec.certificate_arn
    else:
        ann["listen-ports"] = '[{"HTTP": 80}]'
    if grpc_ingress_on(spec):
        # One ALB for both Ingresses; the gRPC paths are matched before this one's "/".
        ann["group.name"] = alb_group_name(spec)
        ann["group.order"] = "20"
    return {prefix + key: value for key, value in ann.items()}


def alb_group_name(spec: AppSpec) -> str:
    """The IngressGroup both Ingresses join: namespace.name, or a digest of it past 63."""
    name = f"{spec.namespace}.{spec.name}"
    if len(name) > 63:
        name = "podtally-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return name


def alb_grpc_annotations(spec: AppSpec) -> dict[str, str]:
    """The gRPC Ingress's annotations: a gRPC target group on the ALB's HTTPS listener.

    The ALB health-checks each pod with a real ``grpc.health.v1.Health/Check`` call and counts
    gRPC status 0 (OK) as healthy (it reads the status code, not the SERVING field: a draining
    pod leaves the target group through its readiness probe, as on the HTTP side).
    """
    prefix = "alb.ingress.kubernetes.io/"
    ann: dict[str, str] = {
        "group.name": alb_group_name(spec),
        "group.order": "10",
        "scheme": "internet-facing",
        "target-type": "ip",
        "backend-protocol": "HTTP",
        "backend-protocol-version": "GRPC",
        "healthcheck-protocol": "HTTP",
        "healthcheck-port": "traffic-port",
        "healthcheck-path": GRPC_HEALTH_CHECK_PATH,
        "healthcheck-interval-seconds": "5",
        "healthcheck-timeout-seconds": "2",
        "healthy-threshold-count": "2",
        "unhealthy-threshold-count": "2",
        "success-codes": "0",
        "target-group-attributes": f"deregistration_delay.timeout_seconds={spec.drain}",
        # gRPC needs HTTP/2 from the client, which the ALB offers on HTTPS listeners only.
        "listen-ports": '[{"HTTPS": 443}]',
        "ssl-policy": ALB_SSL_POLICY,
    }
    if spec.certificate_arn:
        ann["certificate-arn"] = spec.certificate_arn
    return {prefix + key: value for key, value in ann.items()}


def grpc_ingress(spec: AppSpec) -> Obj:
    """The eks profile's gRPC Ingress: each gRPC service's paths to the Service's gRPC port."""
    paths = [
        {"path": path, "pathType": "Prefix", "backend": _backend(spec, GRPC_PORT_NAME)}
        for path in GRPC_PATHS
    ]
    rule: Obj = {"http": {"paths": paths}}
    if spec.host:
        rule = {"host": spec.host, **rule}
    ing_spec: Obj = {"ingressClassName": "alb", "rules": [rule]}
    if spec.host and not spec.certificate_arn:
        ing_spec["tls"] = [{"hosts": [spec.host]}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(spec, f"{spec.name}-grpc", annotations=alb_grpc_annotations(spec)),
        "spec": ing_spec,
    }


def ingress(spec: AppSpec) -> Obj:
    ing_spec: Obj
    if spec.profile == "eks":
        annotations = alb_annotations(spec)
        ing_spec = {"ingressClassName": "alb", "rules": [_rule(spec)]}
        if spec.tls and spec.host and not spec.certificate_arn:
            # No ARN: the controller finds an ACM certificate for the host itself.
            ing_spec["tls"] = [{"hosts": [spec.host]}]
    else:
        annotations = {}
        ing_spec = {"rules": [_rule(spec)]}
        if spec.ingress_class:
            ing_spec = {"ingressClassName": spec.ingress_class, **ing_spec}
        if spec.tls and spec.tls_secret and spec.host:
            ing_spec["tls"] = [{"hosts": [spec.host], "secretName": spec.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(spec, spec.name, annotations=annotations or None),
        "spec": ing_spec,
    }


def render(spec: AppSpec, *, create_namespace: bool = True) -> list[Obj]:
    """Every object for `spec`, in apply order: Namespace first, the Ingress last (after the
    gRPC Ingress, where there is one).

    The Namespace object comes only with ``create_namespace`` and never for a namespace every
    cluster has (:func:`is_system_namespace`); without it, the namespace must exist.
    """
    objs: list[Obj] = []
    if create_namespace and not is_system_namespace(spec.namespace):
        objs.append(namespace(spec))
    objs.append(service_account(spec))
    if spec.zone_lookup:
        objs += [cluster_role(spec), cluster_role_binding(spec)]
    objs += [network_policy(spec), service(spec), deployment(spec), pod_disruption_budget(spec)]
    if spec.autoscaling:
        objs.append(horizontal_pod_autoscaler(spec))
    if grpc_ingress_on(spec):
        objs.append(grpc_ingress(spec))
    if spec.profile == "eks" or spec.host:
        objs.append(ingress(spec))
    return objs


def to_yaml(objs: list[Obj]) -> str:
    """A multi-document YAML stream, keys in the order rendered (PyYAML, from `podtally[local]`)."""
    import yaml

    return yaml.safe_dump_all(
        objs, sort_keys=False, default_flow_style=False, explicit_start=True, width=1000
    )


def to_json(objs: list[Obj]) -> str:
    """A `kind: List` document: `kubectl apply -f` takes it as it is."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}, indent=2) + "\n"
