"""charts/podtally with the real helm: lint, template, package, the schema, and the one truth.

The renderer is the source of truth (the image, the CLI and Pulumi need no helm); the chart must
render the same objects. `helm template` with chart_values(spec) is compared object by object
with render(spec) over the matrix every user and the Pulumi program can reach.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from podtally.errors import UsageError
from podtally.k8s import render
from podtally.k8s.chart import chart_values, check_chart_version
from podtally.k8s.gateway import gateway_objects, render_with_gateway
from podtally.spec import AppSpec
from tests.k8s.helpers import (
    DIGEST_IMAGE,
    MATRIX,
    REPO,
    by_kind,
    checkov,
    checkov_failures,
    checkov_skips,
)
from tests.k8s.kubetools import CHART, helm_template, run

# Helm's convention for the one label the chart spells differently.
HELM_MANAGED = {"app.kubernetes.io/managed-by": "Helm"}


def _as_podtally(obj: dict[str, Any]) -> dict[str, Any]:
    """The chart's object with Helm's managed-by label read as podtally's."""
    obj = copy.deepcopy(obj)

    def fix(labels: dict[str, str] | None) -> None:
        if labels is not None and labels.get("app.kubernetes.io/managed-by") == "Helm":
            labels["app.kubernetes.io/managed-by"] = "podtally"

    fix(obj["metadata"].get("labels"))
    if obj["kind"] == "Deployment":
        fix(obj["spec"]["template"]["metadata"]["labels"])
    return obj


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


# (spec, create_namespace, gateway)
CASES: dict[str, tuple[AppSpec, bool, bool]] = {
    **{f"{k}-ns": (s, True, False) for k, s in MATRIX.items()},
    "generic-no-namespace": (AppSpec(), False, False),
    "eks-no-namespace-zone": (
        AppSpec(profile="eks", host="podtally.example.com", zone_lookup=True),
        False,
        False,
    ),
    "labels": (AppSpec(labels={"team": "edge"}, namespace="kube-edge"), True, False),
    "default-namespace": (AppSpec(namespace="default"), True, False),
    **{f"{k}-gateway": (s, True, True) for k, s in MATRIX.items() if s.profile == "eks"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_template_equals_the_renderer(case: str, tmp_path: Path) -> None:
    spec, create_namespace, gateway = CASES[case]
    chart = helm_template(
        chart_values(spec, create_namespace=create_namespace, gateway=gateway),
        release=spec.name,
        namespace=spec.namespace,
        tmp=tmp_path,
        extra=("--set", "test.enabled=false"),
    )
    rendered = (
        render_with_gateway(spec, create_namespace=create_namespace)
        if gateway
        else render(spec, create_namespace=create_namespace)
    )
    ours = {_key(o): o for o in rendered}
    theirs = {_key(o): _as_podtally(o) for o in chart}
    assert sorted(theirs) == sorted(ours)
    for key, obj in ours.items():
        assert theirs[key] == obj, key


def test_helm_lint_strict() -> None:
    out = run("helm", "lint", "--strict", str(CHART))
    assert out.returncode == 0, out.stdout + out.stderr
    for values in (
        ["--set", "profile=eks", "--set", "ingress.host=podtally.example.com"],
        ["--set", "hpa.enabled=true", "--set", "zoneLookup=true"],
    ):
        out = run("helm", "lint", "--strict", str(CHART), *values)
        assert out.returncode == 0, out.stdout + out.stderr


def test_every_chart_variant_validates(tmp_path: Path) -> None:
    for spec, create, gateway in CASES.values():
        for obj in helm_template(
            chart_values(spec, create_namespace=create, gateway=gateway),
            release=spec.name,
            namespace=spec.namespace,
            tmp=tmp_path,
        ):
            if obj["apiVersion"].startswith("gateway."):
                continue  # CRDs: not in Kubernetes' own schemas (test_gateway_objects_shape)
            kubernetes_validate.validate(obj, "1.35", strict=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=two"], "/replicaCount': got string, want integer"),
        (["--set", "replicaCount=0"], "/replicaCount"),
        (["--set", "profile=gke"], "/profile': value must be one of"),
        (["--set", "image.tag=latest"], "moving tag"),
        (["--set", "gateway.enabled=true"], "gateway.enabled needs profile eks"),
        (["--set", "profile=eks"], "profile eks serves HTTPS"),
        (["--set", "drainSeconds=-1"], "/drainSeconds"),
        (["--set", "surprise=1"], "'surprise' not allowed"),
        (["--set", "ingress.host=Not_A_Host"], "/ingress/host"),
        # gRPC (issue 12)
        (["--set", "grpc.port=70000"], "/grpc/port"),
        (["--set", "grpc.port=8080"], "grpc.port 8080 must differ from port 8080"),
        (["--set", "grpc.probes=maybe"], "/grpc/probes"),
    ],
)
def test_bad_values_fail_clearly(args: list[str], message: str) -> None:
    out = run("helm", "template", "podtally", str(CHART), *args)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert "panic" not in out.stderr


def test_a_values_file_breaking_the_schema(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hpa:\n  enabled: yes-please\n")
    out = run("helm", "template", "podtally", str(CHART), "-f", str(bad))
    assert out.returncode != 0
    assert "/hpa/enabled" in out.stderr, out.stderr


def test_a_release_name_that_cannot_name_a_service() -> None:
    out = run("helm", "template", "9lives", str(CHART))
    assert out.returncode != 0
    assert "is not a DNS-1035 label" in out.stderr, out.stderr


def test_helm_test_hook_verifies_the_service_in_cluster(tmp_path: Path) -> None:
    objs = helm_template({"replicaCount": 4}, release="tally", namespace="apps", tmp=tmp_path)
    pod = by_kind(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["verify", "http://tally.apps.svc:80/"]
    assert args[args.index("--expect-pods") + 1] == "4"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["activeDeadlineSeconds"] > 0
    # The hook runs the same image as the Deployment.
    assert (
        container["image"]
        == by_kind(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def test_helm_package(tmp_path: Path) -> None:
    out = run("helm", "package", str(CHART), "-d", str(tmp_path))
    assert out.returncode == 0, out.stderr
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    archive = tmp_path / f"podtally-{chart_yaml['version']}.tgz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "podtally/values.schema.json" in names
    assert "podtally/templates/tests/verify.yaml" in names


def test_a_non_semver_chart_version_is_refused(tmp_path: Path) -> None:
    out = run("helm", "package", str(CHART), "--version", "banana", "-d", str(tmp_path))
    assert out.returncode != 0
    assert "invalid semantic version" in out.stderr, out.stderr
    # helm takes loose versions (v1, 1.0) that are no semver; the release checks first.
    loose = run("helm", "package", str(CHART), "--version", "v1", "-d", str(tmp_path))
    assert loose.returncode == 0
    script = REPO / "deploy" / "chart_version.py"
    for bad in ("v1", "1.0", "banana"):
        checked = subprocess.run(
            [sys.executable, str(script), bad],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 2
        assert checked.stderr.startswith("error: chart version "), checked.stderr
        assert checked.stderr.count("\n") == 1 and "Traceback" not in checked.stderr
    good = subprocess.run(
        [sys.executable, str(script), "0.2.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (good.returncode, good.stdout) == (0, "0.2.0\n")


@pytest.mark.parametrize("bad", ["v1", "1.0", "1.0.0.0", "01.2.3", ""])
def test_check_chart_version_rejects(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        check_chart_version(bad)
    assert info.value.setting == "chart_version"


def test_check_chart_version_accepts() -> None:
    for good in ("0.1.0", "1.2.3-rc.1", "2.0.0+build.5"):
        assert check_chart_version(good) == good
    chart_yaml = yaml.safe_load((REPO / "charts" / "podtally" / "Chart.yaml").read_text())
    check_chart_version(chart_yaml["version"])


def test_helm_test_hook_runs_the_verify_job_pod(tmp_path: Path) -> None:
    """The hook Pod and `manifests --verify-job` run the same pod: one verifier in the cluster."""
    from podtally.k8s.verify_job import verify_network_policy, verify_pod_labels, verify_pod_spec

    spec = AppSpec(name="tally", namespace="apps", replicas=4, image=DIGEST_IMAGE)
    objs = helm_template(
        chart_values(spec, create_namespace=False), release="tally", namespace="apps", tmp=tmp_path
    )
    pod = by_kind(objs, "Pod")
    assert pod["spec"] == verify_pod_spec(spec, 20_000, 150)
    assert pod["metadata"]["labels"] == verify_pod_labels(spec)
    policy = next(o for o in objs if o["metadata"]["name"] == "tally-verify")
    assert _as_podtally(policy) == verify_network_policy(spec)


def test_ci_packages_and_release_pushes_the_chart_next_to_the_image() -> None:
    workflows = REPO / ".github" / "workflows"
    ci = yaml.safe_load((workflows / "ci.yml").read_text())
    ci_run = "\n".join(s.get("run", "") for s in ci["jobs"]["chart"]["steps"])
    assert 'helm" package charts/podtally' in ci_run
    assert 'helm" lint --strict charts/podtally' in ci_run
    release = yaml.safe_load((workflows / "release.yml").read_text())
    steps = release["jobs"]["image"]["steps"]  # the one job that may write packages
    runs = [s.get("run", "") for s in steps]
    package = next(i for i, r in enumerate(runs) if 'helm" package charts/podtally' in r)
    push = next(i for i, r in enumerate(runs) if 'helm" push' in r)
    build = next(i for i, s in enumerate(steps) if s.get("id") == "build")
    assert build < package < push
    assert 'chart_version.py "$TAG"' in runs[package]
    assert '--version "$TAG" --app-version "$TAG"' in runs[package]
    assert "oci://ghcr.io/${OWNER,,}/charts" in runs[push]


def test_gateway_replaces_the_ingress_on_eks() -> None:
    spec = MATRIX["eks-arn"]
    objs = render_with_gateway(spec)
    kinds = [o["kind"] for o in objs]
    assert "Ingress" not in kinds
    assert kinds[-6:] == [
        "GatewayClass",
        "LoadBalancerConfiguration",
        "TargetGroupConfiguration",
        "Gateway",
        "HTTPRoute",
        "HTTPRoute",
    ]
    gw = by_kind(objs, "Gateway")
    assert [(x["name"], x["port"], x["hostname"]) for x in gw["spec"]["listeners"]] == [
        ("http", 80, "podtally.example.com"),
        ("https", 443, "podtally.example.com"),
    ]
    assert by_kind(objs, "GatewayClass")["spec"]["controllerName"] == "gateway.k8s.aws/alb"
    lbc = by_kind(objs, "LoadBalancerConfiguration")["spec"]
    assert lbc["listenerConfigurations"][0]["defaultCertificate"] == spec.certificate_arn
    tgc = by_kind(objs, "TargetGroupConfiguration")["spec"]["defaultConfiguration"]
    assert tgc["targetType"] == "ip"
    assert tgc["targetGroupAttributes"] == [
        {"key": "deregistration_delay.timeout_seconds", "value": str(spec.drain)}
    ]
    routes = {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "HTTPRoute"}
    assert routes["podtally"]["parentRefs"][0]["sectionName"] == "https"
    assert routes["podtally"]["rules"][0]["backendRefs"] == [{"name": "podtally", "port": 80}]
    redirect = routes["podtally-redirect"]["rules"][0]["filters"][0]["requestRedirect"]
    assert redirect["scheme"] == "https"
    # HTTP only: one route on the HTTP listener, no redirect.
    plain = gateway_objects(MATRIX["eks-http-only"])
    assert [o["metadata"]["name"] for o in plain if o["kind"] == "HTTPRoute"] == ["podtally"]


def test_gateway_with_the_generic_profile_is_a_usage_error() -> None:
    for call in (
        lambda: render_with_gateway(AppSpec()),
        lambda: chart_values(AppSpec(), gateway=True),
    ):
        with pytest.raises(UsageError) as info:
            call()
        assert info.value.setting == "gateway"
        assert "eks profile" in info.value.what


def test_checkov_passes_every_chart_variant(tmp_path: Path) -> None:
    """The chart's own output, the helm test Pod included, meets the same checks as the
    renderer's (tests/k8s/test_lint.py), with the same reasoned inline skips only."""
    out_dir = tmp_path / "rendered"
    out_dir.mkdir()
    for case, (spec, create, gateway) in CASES.items():
        if spec.namespace == "default":
            continue  # CKV_K8S_21 flags the default namespace by design; the case is for equality
        objs = helm_template(
            chart_values(spec, create_namespace=create, gateway=gateway),
            release=spec.name,
            namespace=spec.namespace,
            tmp=tmp_path,
        )
        (out_dir / f"{case}.yaml").write_text(yaml.safe_dump_all(objs))
    _, report = checkov(out_dir)
    assert checkov_failures(report) == []
    assert report["summary"]["parsing_errors"] == 0
    skipped = checkov_skips(report)
    assert skipped <= {"CKV_K8S_15", "CKV_K8S_43", "CKV_K8S_38", "CKV_K8S_8", "CKV_K8S_9"}, skipped


def test_traffic_distribution_matches_the_library(tmp_path: Path) -> None:
    from podtally.k8s.traffic import with_traffic_distribution

    spec = MATRIX["eks-arn"]
    values = chart_values(spec)
    values["service"] = {"trafficDistribution": "PreferSameZone"}
    chart = helm_template(values, tmp=tmp_path, extra=("--set", "test.enabled=false"))
    ours = {_key(o): o for o in with_traffic_distribution(render(spec), "PreferSameZone")}
    theirs = {_key(o): _as_podtally(o) for o in chart}
    assert theirs == ours
    assert ours[("Service", "podtally")]["spec"]["trafficDistribution"] == "PreferSameZone"
    kubernetes_validate.validate(ours[("Service", "podtally")], "1.35", strict=True)
    with pytest.raises(UsageError) as info:
        with_traffic_distribution(render(spec), "Nearby")
    assert info.value.setting == "traffic_distribution"
    out = run("helm", "template", "x", str(CHART), "--set", "service.trafficDistribution=Nearby")
    assert out.returncode != 0 and "/service/trafficDistribution" in out.stderr


def test_helm_install_set_replica_count_two_fails_clearly() -> None:
    """The issue's own example, through `helm install` (client-side dry run: no cluster)."""
    out = run(
        "helm", "install", "--dry-run=client", "podtally", str(CHART), "--set", "replicaCount=two"
    )
    assert out.returncode == 1
    assert "at '/replicaCount': got string, want integer" in out.stderr, out.stderr
    ok = run("helm", "install", "--dry-run=client", "podtally", str(CHART), "-n", "apps")
    assert ok.returncode == 0, ok.stderr
    assert "helm test podtally -n apps --logs" in ok.stdout
