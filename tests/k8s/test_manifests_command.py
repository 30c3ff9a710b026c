"""`podtally manifests` as a user runs it: the output is what `podtally.k8s.render` returns (in
YAML or JSON), the flags reach the spec, the namespace notes, and bad input, a full disk and a
closed pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from podtally.k8s import render
from podtally.spec import AppSpec
from tests.k8s.helpers import ARN, DIGEST_IMAGE, REPO, by_kind, podtally
from tests.support import clean_env, run_cli


def test_cli_yaml_and_json_are_the_rendered_objects() -> None:
    args = [
        "--profile",
        "eks",
        "--host",
        "podtally.example.com",
        "--certificate-arn",
        ARN,
        "--zone-lookup",
    ]
    expected = render(
        AppSpec(profile="eks", host="podtally.example.com", certificate_arn=ARN, zone_lookup=True)
    )
    as_yaml = podtally("manifests", *args)
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert list(yaml.safe_load_all(as_yaml.stdout)) == expected
    as_json = podtally("manifests", *args, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert (doc["apiVersion"], doc["kind"], doc["items"]) == ("v1", "List", expected)


def test_cli_flags_reach_the_spec() -> None:
    out = podtally(
        "manifests",
        "--name",
        "tally",
        "--namespace",
        "apps",
        "--replicas",
        "2",
        "--image",
        DIGEST_IMAGE,
        "--host",
        "t.example.com",
        "--ingress-class",
        "nginx",
        "--tls-secret",
        "t-tls",
        "--drain-seconds",
        "9",
        "--autoscale",
        "--max-replicas",
        "6",
        "-o",
        "json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["items"] == render(
        AppSpec(
            name="tally",
            namespace="apps",
            replicas=2,
            image=DIGEST_IMAGE,
            host="t.example.com",
            ingress_class="nginx",
            tls_secret="t-tls",  # noqa: S106
            drain_seconds=9,
            autoscaling=True,
            max_replicas=6,
        )
    )


# --- the namespace ------------------------------------------------------------------------------
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@pytest.mark.parametrize("profile", ["generic", "eks"])
@pytest.mark.parametrize("name", SYSTEM_NAMESPACES)
def test_no_namespace_object_for_namespaces_every_cluster_has(name: str, profile: str) -> None:
    """Applying one would relabel kube-system as restricted (blocking its privileged pods), and
    `kubectl delete -f` of the same output would delete it."""
    spec = AppSpec(namespace=name, profile=profile, host="podtally.example.com")  # type: ignore[arg-type]
    objs = render(spec)
    assert "Namespace" not in [o["kind"] for o in objs]
    assert all(o["metadata"].get("namespace", name) == name for o in objs)
    out = podtally(
        "manifests", "--namespace", name, "--profile", profile, "--host", "a.example.com"
    )
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    assert docs[0]["kind"] == "ServiceAccount"
    assert "kind: Namespace" not in out.stdout
    assert out.stderr.startswith(f"note: no Namespace object for '{name}'"), out.stderr
    if profile == "eks":  # the readiness gate label now has to be set by hand
        assert "elbv2.k8s.aws/pod-readiness-gate-inject=enabled" in out.stderr


def test_no_namespace_leaves_it_to_whoever_manages_it() -> None:
    out = podtally("manifests", "--namespace", "apps", "--no-namespace", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    spec = AppSpec(namespace="apps")
    items = json.loads(out.stdout)["items"]
    assert items == render(spec, create_namespace=False) == render(spec)[1:]
    for obj in items:
        kubernetes_validate.validate(obj, "1.35", strict=True)
    # The default is unchanged: a namespace of its own, created with the restricted labels.
    assert render(spec)[0]["kind"] == "Namespace"
    eks = podtally("manifests", "--profile", "eks", "--certificate-arn", ARN, "--no-namespace")
    assert eks.returncode == 0, eks.stderr
    assert "kind: Namespace" not in eks.stdout
    assert eks.stderr == (
        "note: no Namespace object: namespace 'podtally' must exist (label it "
        "elbv2.k8s.aws/pod-readiness-gate-inject=enabled for the ALB's pod readiness gate)\n"
    )


# --- input and output ---------------------------------------------------------------------------
def test_host_names_are_case_insensitive() -> None:
    out = podtally("manifests", "--host", "PodTally.Example.COM", "-o", "json")
    assert out.returncode == 0, out.stderr
    ingress = by_kind(json.loads(out.stdout)["items"], "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "podtally.example.com"


def test_drain_seconds_must_be_whole() -> None:
    out = podtally("manifests", "--drain-seconds", "2.5")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (
        "error: invalid value for '--drain-seconds': '2.5' is not a whole number of seconds "
        "(the pods' grace period and the ALB's deregistration delay are integers) "
        "(see 'podtally manifests --help')\n"
    )
    whole = podtally("manifests", "--drain-seconds", "7", "-o", "json")
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["items"] == render(AppSpec(drain_seconds=7))


def test_a_full_disk_is_one_line_and_exit_3() -> None:
    with open("/dev/full", "w") as full:
        out = run_cli("manifests", cwd=REPO, timeout=60, stdout=full.fileno())
    assert out.returncode == 3
    assert out.stderr == "error: cannot write output: No space left on device\n"


def test_a_closed_stdout_is_one_line_and_exit_3() -> None:
    """Started with stdout closed (`podtally manifests >&-`): Python has no sys.stdout at all."""
    closing = (
        "import os, sys; os.close(1); "
        "os.execv(sys.executable, [sys.executable, '-m', 'podtally', 'manifests'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", closing],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert out.returncode == 3
    assert out.stderr == "error: cannot write output: stdout is closed\n"


def test_a_closed_pipe_is_not_an_error() -> None:
    """`podtally manifests | head -0`: the reader left early; exit 0, nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = run_cli("manifests", cwd=REPO, timeout=60, stdout=write_end)
    finally:
        os.close(write_end)
    assert out.returncode == 0
    assert out.stderr == ""


BAD_INPUT = {
    "name-not-dns1123": ["--name", "Pod_Tally"],
    "name-too-long": ["--name", "a" * 64],
    "namespace-not-dns1123": ["--namespace", "-apps"],
    "zero-replicas": ["--replicas", "0"],
    "negative-replicas": ["--replicas", "-3"],
    "replicas-not-a-number": ["--replicas", "three"],
    "bad-host": ["--host", "bad_host..example"],
    "host-with-scheme": ["--host", "https://podtally.example.com"],
    "malformed-arn": ["--profile", "eks", "--certificate-arn", "arn:aws:iam::123:role/x"],
    "eks-without-certificate-or-host": ["--profile", "eks"],
    "arn-on-generic": ["--certificate-arn", ARN],
    "latest-image": ["--image", "ghcr.io/podtally/podtally:latest"],
    "untagged-image": ["--image", "ghcr.io/podtally/podtally"],
    "max-below-replicas": ["--autoscale", "--replicas", "5", "--max-replicas", "2"],
    "max-without-autoscale": ["--max-replicas", "5"],
    "tls-secret-without-host": ["--tls-secret", "x-tls"],
    "class-on-eks": ["--profile", "eks", "--certificate-arn", ARN, "--ingress-class", "nginx"],
    "drain-out-of-range": ["--drain-seconds", "9999"],
    # -1 was once the "profile default" sentinel: it must be an error like any negative value.
    "drain-minus-one": ["--drain-seconds", "-1"],
    "drain-negative": ["--drain-seconds", "-7"],
    "drain-not-whole": ["--drain-seconds", "2.5"],
    # A Service name is a DNS-1035 label: it must start with a letter.
    "name-starts-with-digit": ["--name", "1pod"],
    # Ingress rule hosts are DNS names; the API server rejects IP addresses.
    "host-is-ipv4": ["--host", "10.0.0.1"],
    "host-is-ipv4-eks": ["--profile", "eks", "--host", "192.168.1.10"],
    "unknown-profile": ["--profile", "gke"],
    "unknown-output": ["-o", "xml"],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case: str) -> None:
    out = podtally("manifests", *BAD_INPUT[case])
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--drain-seconds", "-1"], ["drain seconds", "-1"]),
        (["--name", "1pod"], ["DNS-1035", "'1pod'", "start with a letter"]),
        (["--host", "10.0.0.1"], ["'10.0.0.1'", "IP address"]),
    ],
    ids=["negative-drain", "name-dns1035", "ip-host"],
)
def test_bad_input_says_what_is_wrong(args: list[str], words: list[str]) -> None:
    out = podtally("manifests", *args)
    assert out.returncode == 2, out.stderr
    for word in words:
        assert word in out.stderr, (word, out.stderr)
