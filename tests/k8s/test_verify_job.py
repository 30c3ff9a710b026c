"""The in-cluster verify Job (`podtally manifests --verify-job`): restricted, read-only, bounded."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from podtally.errors import UsageError
from podtally.k8s import render, to_yaml
from podtally.k8s.verify_job import service_url, verify_job, verify_objects
from podtally.spec import AppSpec
from tests.k8s.helpers import MATRIX, checkov, checkov_failures, checkov_skips


def test_the_job_verifies_the_service_with_the_replica_count() -> None:
    spec = AppSpec(name="tally", namespace="apps", replicas=5)
    job = verify_job(spec, requests=900, deadline_seconds=120)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["podtally"]
    assert container["args"] == [
        "verify",
        "http://tally.apps.svc:80/",
        "--expect-pods",
        "5",
        "--max-requests",
        "900",
    ]
    assert container["image"] == spec.image
    # The verdict is the Job's outcome: one attempt, bounded in time.
    assert job["spec"]["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["activeDeadlineSeconds"] == pod["activeDeadlineSeconds"] == 120
    # Restricted: non-root, no privilege escalation, all capabilities dropped, read-only root.
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False


def test_the_job_pod_is_never_a_service_endpoint() -> None:
    spec = AppSpec()
    selector = next(o for o in render(spec) if o["kind"] == "Service")["spec"]["selector"]
    pod_labels = verify_job(spec)["spec"]["template"]["metadata"]["labels"]
    assert not all(pod_labels.get(k) == v for k, v in selector.items())


def test_nothing_may_connect_to_the_verifier() -> None:
    spec = AppSpec()
    policy, job = verify_objects(spec)
    assert policy["kind"] == "NetworkPolicy" and job["kind"] == "Job"
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == pod_labels
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in policy["spec"]


def test_every_variant_validates() -> None:
    for spec in MATRIX.values():
        for obj in verify_objects(spec):
            kubernetes_validate.validate(obj, "1.35", strict=True)
    assert service_url(MATRIX["generic-zone-autoscale"]) == "http://tally.apps.svc:80/"


def test_checkov_passes_the_job(tmp_path: Path) -> None:
    for case, spec in MATRIX.items():
        (tmp_path / f"{case}.yaml").write_text(to_yaml(verify_objects(spec)))
    _, report = checkov(tmp_path)
    assert checkov_failures(report) == []
    assert report["summary"]["passed"] > 10 * len(MATRIX)
    skipped = checkov_skips(report)
    assert skipped <= {"CKV_K8S_15", "CKV_K8S_43", "CKV_K8S_8", "CKV_K8S_9"}, skipped


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"requests": 0}, "requests"),
        ({"deadline_seconds": 0}, "deadline_seconds"),
        ({"deadline_seconds": 86400}, "deadline_seconds"),
    ],
)
def test_bad_input_names_the_setting(kwargs: dict[str, int], setting: str) -> None:
    with pytest.raises(UsageError) as info:
        verify_job(AppSpec(), **kwargs)
    assert info.value.setting == setting
    assert info.value.exit_code == 2
