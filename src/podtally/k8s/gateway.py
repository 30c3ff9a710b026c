"""The Gateway API instead of the Ingress, on the eks profile: `podtally manifests --gateway`.

The AWS Load Balancer Controller (v2.14+, production-ready in v3) turns a Gateway whose class
names the controller ``gateway.k8s.aws/alb`` into an ALB, and its HTTPRoutes into listener
rules. The objects here ask for the same ALB the Ingress of :mod:`podtally.k8s.render` asks for:
internet-facing, straight to pod IPs, health checks on ``/readyz``, a deregistration delay as long
as the pods' drain, invalid header fields dropped, HTTP redirected to HTTPS under the same TLS
policy. The controller's own CRDs carry what the Gateway API has no field for:
LoadBalancerConfiguration (the ALB and its HTTPS listener) and TargetGroupConfiguration (the
target group of the Service).

The cluster needs the standard Gateway API CRDs; the controller enables its ALB gateway when it
finds them at start (docs/kubernetes.md). The chart renders the same objects with
``gateway.enabled`` (tests/k8s/test_chart.py).
"""

from __future__ import annotations

from podtally.errors import UsageError
from podtally.k8s.render import (
    ALB_IDLE_TIMEOUT,
    ALB_SSL_POLICY,
    SERVICE_PORT,
    Obj,
    _meta,
    labels,
    render,
)
from podtally.spec import AppSpec

GATEWAY_API = "gateway.networking.k8s.io/v1"
AWS_GATEWAY_API = "gateway.k8s.aws/v1"
ALB_GATEWAY_CONTROLLER = "gateway.k8s.aws/alb"


def check_gateway(spec: AppSpec) -> None:
    if spec.profile != "eks":
        raise UsageError(
            "the Gateway API option needs the eks profile (the AWS Load Balancer Controller's "
            "ALB gateway); the generic profile uses an Ingress",
            setting="gateway",
            value=True,
        )


def gateway_class_name(spec: AppSpec) -> str:
    # GatewayClasses are cluster-wide: the namespace in the name keeps two installs apart.
    return f"{spec.namespace}-{spec.name}-alb"


def gateway_class(spec: AppSpec) -> Obj:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "GatewayClass",
        "metadata": {"name": gateway_class_name(spec), "labels": labels(spec)},
        "spec": {"controllerName": ALB_GATEWAY_CONTROLLER},
    }


def load_balancer_configuration(spec: AppSpec) -> Obj:
    config: Obj = {
        "scheme": "internet-facing",
        "loadBalancerAttributes": [
            {"key": "routing.http.drop_invalid_header_fields.enabled", "value": "true"},
            {"key": "idle_timeout.timeout_seconds", "value": str(ALB_IDLE_TIMEOUT)},
        ],
    }
    if spec.tls and spec.certificate_arn:
        # Without an ARN the controller finds an ACM certificate for the listener's hostname.
        config["listenerConfigurations"] = [
            {
                "protocolPort": "HTTPS:443",
                "defaultCertificate": spec.certificate_arn,
                "sslPolicy": ALB_SSL_POLICY,
            }
        ]
    return {
        "apiVersion": AWS_GATEWAY_API,
        "kind": "LoadBalancerConfiguration",
        "metadata": _meta(spec, spec.name),
        "spec": config,
    }


def target_group_configuration(spec: AppSpec) -> Obj:
    return {
        "apiVersion": AWS_GATEWAY_API,
        "kind": "TargetGroupConfiguration",
        "metadata": _meta(spec, spec.name),
        "spec": {
            "targetReference": {"name": spec.name},
            "defaultConfiguration": {
                # Straight to pod IPs: the ALB sees each pod's own /readyz.
                "targetType": "ip",
                "healthCheckConfig": {
                    "healthCheckPath": "/readyz",
                    "healthCheckProtocol": "HTTP",
                    "healthCheckInterval": 5,
                    "healthCheckTimeout": 2,
                    "healthyThresholdCount": 2,
                    "unhealthyThresholdCount": 2,
                    "matcher": {"httpCode": "200"},
                },
                "targetGroupAttributes": [
                    {"key": "deregistration_delay.timeout_seconds", "value": str(spec.drain)}
                ],
            },
        },
    }


def _listener(spec: AppSpec, name: str, protocol: str, port: int) -> Obj:
    listener: Obj = {"name": name, "protocol": protocol, "port": port}
    if spec.host:
        listener["hostname"] = spec.host
    listener["allowedRoutes"] = {"namespaces": {"from": "Same"}}
    return listener


def gateway(spec: AppSpec) -> Obj:
    listeners = [_listener(spec, "http", "HTTP", 80)]
    if spec.tls:
        listeners.append(_listener(spec, "https", "HTTPS", 443))
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": _meta(spec, spec.name),
        "spec": {
            "gatewayClassName": gateway_class_name(spec),
            "infrastructure": {
                "parametersRef": {
                    "group": "gateway.k8s.aws",
                    "kind": "LoadBalancerConfiguration",
                    "name": spec.name,
                }
            },
            "listeners": listeners,
        },
    }


def _parent(spec: AppSpec, section: str) -> Obj:
    return {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": spec.name,
        "sectionName": section,
    }


def _route(spec: AppSpec, name: str, section: str, rule: Obj) -> Obj:
    route: Obj = {"parentRefs": [_parent(spec, section)]}
    if spec.host:
        route["hostnames"] = [spec.host]
    route["rules"] = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], **rule}]
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": _meta(spec, name),
        "spec": route,
    }


def http_routes(spec: AppSpec) -> list[Obj]:
    """The app's route on the HTTPS listener (HTTP without TLS), and with TLS a redirect."""
    backend = {"backendRefs": [{"name": spec.name, "port": SERVICE_PORT}]}
    if not spec.tls:
        return [_route(spec, spec.name, "http", backend)]
    redirect = {
        "filters": [
            {
                "type": "RequestRedirect",
                "requestRedirect": {"scheme": "https", "port": 443, "statusCode": 301},
            }
        ]
    }
    return [
        _route(spec, spec.name, "https", backend),
        _route(spec, f"{spec.name}-redirect", "http", redirect),
    ]


def gateway_objects(spec: AppSpec) -> list[Obj]:
    """The Gateway API objects for ``spec``, in apply order (class, configuration, gateway,
    routes)."""
    check_gateway(spec)
    return [
        gateway_class(spec),
        load_balancer_configuration(spec),
        target_group_configuration(spec),
        gateway(spec),
        *http_routes(spec),
    ]


def render_with_gateway(spec: AppSpec, *, create_namespace: bool = True) -> list[Obj]:
    """Every object of :func:`~podtally.k8s.render.render`, the Gateway API's instead of the
    Ingress."""
    check_gateway(spec)
    objs = [o for o in render(spec, create_namespace=create_namespace) if o["kind"] != "Ingress"]
    return objs + gateway_objects(spec)
