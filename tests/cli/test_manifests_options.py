"""`podtally manifests --verify-job | --gateway | --traffic-distribution`: the CLI calls the
library (the same objects come out), shows its defaults, and says bad input in one line.

In-process with click's CliRunner (tests/cli/conftest.py), plus one real subprocess; every
rendered variant is checked against Kubernetes' own schemas as tests/k8s/test_render.py does.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from podtally.k8s import render
from podtally.k8s.gateway import render_with_gateway
from podtally.k8s.traffic import with_traffic_distribution
from podtally.k8s.verify_job import verify_objects
from podtally.spec import AppSpec
from tests.cli.conftest import Ran, Run, one_error_line
from tests.k8s.helpers import ARN, DIGEST_IMAGE
from tests.k8s.helpers import podtally as podtally_process

EKS = ["--profile", "eks", "--host", "podtally.example.com", "--certificate-arn", ARN]
EKS_SPEC = AppSpec(profile="eks", host="podtally.example.com", certificate_arn=ARN)


def _items(ran: Ran) -> list[dict[str, Any]]:
    assert ran.code == 0, ran.err
    doc = json.loads(ran.out)
    assert doc["kind"] == "List"
    items: list[dict[str, Any]] = doc["items"]
    return items


def _validate(objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        if obj["apiVersion"].startswith("gateway."):
            continue  # Gateway API and AWS CRDs: not in Kubernetes' own schemas
        kubernetes_validate.validate(obj, "1.35", strict=True)


def test_verify_job_is_the_library_s_objects(podtally: Run) -> None:
    default = _items(podtally("manifests", "--verify-job", "-o", "json"))
    assert default == verify_objects(AppSpec())
    assert [o["kind"] for o in default] == ["NetworkPolicy", "Job"]
    args = ["--name", "tally", "--namespace", "apps", "--replicas", "4", "--image", DIGEST_IMAGE]
    tuned = _items(
        podtally(
            "manifests",
            *args,
            "--verify-job",
            "-n",
            "900",
            "--deadline-seconds",
            "300",
            "-o",
            "json",
        )
    )
    spec = AppSpec(name="tally", namespace="apps", replicas=4, image=DIGEST_IMAGE)
    assert tuned == verify_objects(spec, requests=900, deadline_seconds=300)
    job = tuned[1]
    assert job["spec"]["activeDeadlineSeconds"] == 300
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-4:] == ["--expect-pods", "4", "--max-requests", "900"]
    _validate(default + tuned)


def test_gateway_is_the_library_s_objects(podtally: Run) -> None:
    objs = _items(podtally("manifests", *EKS, "--gateway", "-o", "json"))
    assert objs == render_with_gateway(EKS_SPEC)
    kinds = [o["kind"] for o in objs]
    assert "Ingress" not in kinds and "Gateway" in kinds and "HTTPRoute" in kinds
    _validate(objs)
    no_ns = _items(podtally("manifests", *EKS, "--gateway", "--no-namespace", "-o", "json"))
    assert no_ns == render_with_gateway(EKS_SPEC, create_namespace=False)


@pytest.mark.parametrize("value", ["PreferSameZone", "PreferSameNode", "PreferClose"])
def test_traffic_distribution_is_the_library_s_objects(podtally: Run, value: str) -> None:
    objs = _items(podtally("manifests", "--traffic-distribution", value, "-o", "json"))
    assert objs == with_traffic_distribution(render(AppSpec()), value)
    service = next(o for o in objs if o["kind"] == "Service")
    assert service["spec"]["trafficDistribution"] == value
    _validate(objs)


def test_gateway_and_traffic_distribution_together(podtally: Run) -> None:
    args = [*EKS, "--gateway", "--traffic-distribution", "PreferSameZone", "-o", "json"]
    objs = _items(podtally("manifests", *args))
    assert objs == with_traffic_distribution(render_with_gateway(EKS_SPEC), "PreferSameZone")
    _validate(objs)


def test_without_the_new_options_nothing_changes(podtally: Run) -> None:
    objs = _items(podtally("manifests", "-o", "json"))
    assert objs == render(AppSpec())
    assert all("trafficDistribution" not in o.get("spec", {}) for o in objs)


def test_help_shows_the_defaults(podtally: Run) -> None:
    ran = podtally("manifests", "--help")
    assert ran.code == 0
    text = " ".join(ran.out.split())
    for expected in (
        "--verify-job",
        "--gateway",
        "--traffic-distribution [PreferSameZone|PreferSameNode|PreferClose]",
        "PODTALLY_TRAFFIC_DISTRIBUTION; default: (none: every pod alike)",
        "PODTALLY_REQUESTS; default: 20000]",
        "PODTALLY_DEADLINE_SECONDS; default: 150]",
    ):
        assert expected in text, expected


# What `podtally manifests ARGS` must say, after "error: ", by case.
BAD_INPUT: dict[str, tuple[list[str], str]] = {
    "gateway-generic": (["--gateway"], "--gateway: the Gateway API option needs the eks profile"),
    "unknown-profile": (
        ["--profile", "gke", "--gateway"],
        "invalid value for '--profile': 'gke' is not one of 'generic', 'eks'",
    ),
    "unknown-distribution": (
        ["--traffic-distribution", "PreferFarAway"],
        "invalid value for '--traffic-distribution': 'PreferFarAway' is not one of",
    ),
    "requests-without-job": (["--requests", "5"], "--requests only applies with --verify-job"),
    "deadline-without-job": (
        ["--deadline-seconds", "60"],
        "--deadline-seconds only applies with --verify-job",
    ),
    "job-with-gateway": (["--verify-job", "--gateway"], "--gateway shapes the app's objects"),
    "job-with-distribution": (
        ["--verify-job", "--traffic-distribution", "PreferSameZone"],
        "--traffic-distribution shapes the app's objects",
    ),
    "deadline-too-short": (
        ["--verify-job", "--deadline-seconds", "5"],
        "--deadline-seconds 5: must be between 10 and 3600 seconds",
    ),
    "zero-requests": (["--verify-job", "-n", "0"], "--requests 0: must be at least 1"),
    "requests-not-a-number": (
        ["--verify-job", "-n", "many"],
        "invalid value for '-n' / '--requests'",
    ),
}


@pytest.mark.parametrize(("args", "expected"), list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2(podtally: Run, args: list[str], expected: str) -> None:
    line = one_error_line(podtally("manifests", *args))
    assert line.startswith(f"error: {expected}"), line


def test_environment_does_not_count_as_a_misplaced_option(podtally: Run) -> None:
    """PODTALLY_REQUESTS is also `podtally verify`'s: exported for that, it must not make a plain
    `podtally manifests` fail."""
    ran = podtally("manifests", "-o", "json", env={"PODTALLY_REQUESTS": "50"})
    assert ran.code == 0, ran.err
    job = _items(
        podtally("manifests", "--verify-job", "-o", "json", env={"PODTALLY_REQUESTS": "50"})
    )
    assert job[1]["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "50"


def test_the_console_script_renders_the_job_and_refuses_a_generic_gateway() -> None:
    """The real `podtally` process: YAML on stdout for the Job; one line, exit 2, for the bad
    combination."""
    import yaml

    out = podtally_process("manifests", "--verify-job", "--deadline-seconds", "200")
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    assert [d["kind"] for d in docs] == ["NetworkPolicy", "Job"]
    assert docs == verify_objects(AppSpec(), deadline_seconds=200)
    bad = podtally_process("manifests", "--gateway")
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.startswith("error: --gateway: the Gateway API option needs the eks profile")
    assert len(bad.stderr.splitlines()) == 1
