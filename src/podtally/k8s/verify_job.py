"""A Job that verifies the Service from inside the cluster: `podtally manifests --verify-job`.

It runs the app's own image as ``podtally verify http://<service>.<namespace>.svc:<port>/
--expect-pods <replicas>``, so the Service path (kube-proxy, per connection) is checked where it
lives, and the Job's outcome is the verdict: Complete when the spread is even, Failed otherwise
(one attempt, no retries: a retry would hide an uneven verdict). The pod meets the restricted Pod
Security Standard, its root filesystem is read-only, and a deadline bounds it. The chart's
`helm test` hook runs the same container (tests/k8s/test_chart.py checks they agree).
"""

from __future__ import annotations

from podtally.errors import UsageError
from podtally.k8s.render import (
    RUN_AS,
    SERVICE_PORT,
    Obj,
    _image_is_digest,
    _skips,
    labels,
    security_context_container,
)
from podtally.spec import AppSpec

# The verifier runs in its auto mode (it stops when the verdict is known: about 1,100 requests for
# three pods behind kube-proxy); this is only its bound, the verifier's own default.
DEFAULT_REQUESTS = 20_000
DEFAULT_DEADLINE_SECONDS = 150
VERIFY_COMPONENT = "verify"
# Finished Jobs (and their pod's log, the report) are kept this long, then garbage-collected.
TTL_AFTER_FINISHED_SECONDS = 3600


def verify_skips(spec: AppSpec) -> list[tuple[str, str]]:
    """checkov's inline skips for the verifier's pod, each with its reason."""
    skips = [
        ("CKV_K8S_15", "the image is pinned by digest or immutable tag"),
        ("CKV_K8S_8", "a run-to-completion check with a deadline: no server to probe"),
        ("CKV_K8S_9", "a run-to-completion check with a deadline: no server to probe"),
    ]
    if not _image_is_digest(spec):
        skips.append(("CKV_K8S_43", "pinned by an immutable version tag (ECR tag immutability)"))
    return skips


def verify_objects(
    spec: AppSpec,
    *,
    requests: int = DEFAULT_REQUESTS,
    deadline_seconds: int = DEFAULT_DEADLINE_SECONDS,
) -> list[Obj]:
    """What `manifests --verify-job` prints: the verifier's NetworkPolicy, then the Job."""
    return [
        verify_network_policy(spec),
        verify_job(spec, requests=requests, deadline_seconds=deadline_seconds),
    ]


def service_url(spec: AppSpec) -> str:
    """The Service's in-cluster URL (cluster DNS: <service>.<namespace>.svc)."""
    return f"http://{spec.name}.{spec.namespace}.svc:{SERVICE_PORT}/"


def verify_args(spec: AppSpec, requests: int = DEFAULT_REQUESTS) -> list[str]:
    url = service_url(spec)
    return ["verify", url, "--expect-pods", str(spec.replicas), "--max-requests", str(requests)]


def verify_container(spec: AppSpec, requests: int = DEFAULT_REQUESTS) -> Obj:
    return {
        "name": VERIFY_COMPONENT,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["podtally"],
        "args": verify_args(spec, requests),
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": security_context_container(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - pod-private emptyDir
    }


def verify_pod_spec(spec: AppSpec, requests: int, deadline_seconds: int) -> Obj:
    return {
        "restartPolicy": "Never",
        # The verifier talks to a Service, not to the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": deadline_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [verify_container(spec, requests)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    }


def verify_pod_labels(spec: AppSpec) -> dict[str, str]:
    # Not the app's selector labels: the verifier must never become a Service endpoint.
    return {
        "app.kubernetes.io/name": "podtally-verify",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": VERIFY_COMPONENT,
    }


def verify_network_policy(spec: AppSpec) -> Obj:
    """Nothing may connect to the verifier; it only makes outgoing connections."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"{spec.name}-verify",
            "namespace": spec.namespace,
            "labels": labels(spec),
        },
        "spec": {
            "podSelector": {"matchLabels": verify_pod_labels(spec)},
            "policyTypes": ["Ingress"],
        },
    }


def verify_job(
    spec: AppSpec,
    *,
    requests: int = DEFAULT_REQUESTS,
    deadline_seconds: int = DEFAULT_DEADLINE_SECONDS,
) -> Obj:
    """The Job, named ``<name>-verify`` in the app's namespace."""
    if requests < 1:
        raise UsageError("must be at least 1", setting="requests", value=requests)
    if not 10 <= deadline_seconds <= 3600:
        raise UsageError(
            "must be between 10 and 3600 seconds",
            setting="deadline_seconds",
            value=deadline_seconds,
        )
    meta_labels = {**labels(spec), "app.kubernetes.io/component": VERIFY_COMPONENT}
    pod_spec = verify_pod_spec(spec, requests, deadline_seconds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{spec.name}-verify",
            "namespace": spec.namespace,
            "labels": meta_labels,
            "annotations": _skips(*verify_skips(spec)),
        },
        "spec": {
            # One attempt: a retry after an uneven verdict would only hide it.
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_SECONDS,
            "template": {
                # Not the app's selector labels: the verifier must never become a Service endpoint.
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/name": "podtally-verify",
                        "app.kubernetes.io/instance": spec.name,
                        "app.kubernetes.io/component": VERIFY_COMPONENT,
                    }
                },
                "spec": pod_spec,
            },
        },
    }
