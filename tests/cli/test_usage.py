"""Bad usage, in-process: one ``error: ...`` line on stderr, nothing on stdout, exit 2.

Library errors name the setting at fault; the command line says it with its own flag
(``--max-error-rate '2': ...``), and click's own usage errors point at the command's help.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from podtally import __version__
from tests.cli.conftest import Run, one_error_line

HERE = str(Path(__file__))


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--bogus"], "error: no such option '--bogus' (see 'podtally --help')"),
        ([], "error: missing command (see 'podtally --help')"),
        (["launch"], "error: no such command 'launch' (see 'podtally --help')"),
        (["cloud", "--bogus"], "error: no such option '--bogus' (see 'podtally cloud --help')"),
        (["cloud", "launch"], "error: no such command 'launch' (see 'podtally cloud --help')"),
        (
            ["cloud", "up", "--bogus"],
            "error: no such option '--bogus' (see 'podtally cloud up --help')",
        ),
        (
            ["verify", "http://h/", "--bogus"],
            "error: no such option '--bogus' (see 'podtally verify --help')",
        ),
        # A negative number is an option's value, not an unknown option.
        (["verify", "-n", "-1"], "error: missing argument 'URL' (see 'podtally verify --help')"),
        # --version is no way around a bad argument (issue 15, point 7).
        (["--version", "--junk"], "error: no such option '--junk' (see 'podtally --help')"),
    ],
)
def test_usage_errors_name_the_mistake_and_the_right_help(
    podtally: Run, args: list[str], line: str
) -> None:
    assert one_error_line(podtally(*args)) == line


def test_long_options_are_never_abbreviated(podtally: Run) -> None:
    """`--replica` is not `--replicas` (argparse took it silently)."""
    line = one_error_line(podtally("up", "--replica", "3"))
    assert line.startswith("error: no such option '--replica'"), line
    assert line.endswith("(see 'podtally up --help')")
    line = one_error_line(podtally("verify", "http://h/", "--req", "3"))
    assert line.startswith("error: no such option '--req'"), line


def test_an_empty_stack_name_is_bad_usage(podtally: Run) -> None:
    line = one_error_line(podtally("status", "--name", ""))
    assert "stack name ''" in line


def test_version(podtally: Run) -> None:
    ran = podtally("--version")
    assert (ran.code, ran.out, ran.err) == (0, f"podtally {__version__}\n", "")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["verify", "not-a-url"],
            "error: URL 'not-a-url': must start with http://, https://, grpc:// or grpcs://",
        ),
        (["verify", "http://h/", "-n", "-1"], "error: --requests -1: must be at least 1"),
        (["verify", "http://h/", "-n", "0"], "error: --requests 0: must be at least 1"),
        (
            ["verify", "http://h/", "-n", "x"],
            "error: invalid value for '-n' / '--requests': 'x' "
            "is not a valid integer (see 'podtally verify --help')",
        ),
        (
            ["verify", "http://h/", "--resolve", "h:80"],
            "error: --resolve 'h:80': must be HOST:PORT:ADDR (as in curl)",
        ),
        (
            ["verify", "http://h/", "--duration", "soon"],
            "error: --duration 'soon': must be a duration more than zero "
            "(examples: 30, 30s, 500ms, 2m)",
        ),
        # Text, zero and negative durations are one and the same mistake, with one message.
        (["verify", "http://h/", "--timeout", "-1"], "error: --timeout '-1': must be a duration"),
        (["verify", "http://h/", "--timeout", "0"], "error: --timeout '0': must be a duration"),
        (
            ["verify", "http://h/", "--max-error-rate", "2"],
            "error: --max-error-rate '2': must be between 0 and 1 (or 0% and 100%)",
        ),
        (["verify", "http://h/", "--alpha", "2"], "error: --alpha 2: must be between 0 and 1"),
        # inf would pass "more than zero" and then has no JSON (the settings line, --json).
        (["verify", "http://h/", "--rate", "inf"], "error: --rate inf: must be a finite number"),
        (["verify", "http://h/", "--rate", "0"], "error: --rate 0: must be a finite number"),
        (["verify", "http://h/", "-c", "0"], "error: --concurrency 0: must be between 1 and"),
        (["verify", "http://h/", "-H", "nocolon"], "error: --header 'nocolon': must be 'Name:"),
        (
            ["verify", "http://h/", "-H", "Connection: close"],
            "error: --header 'Connection: close': header 'Connection' is set by podtally "
            "(use --keep-alive for Connection)",
        ),
        (["verify", "http://h/", "-H", "X-A: ☃"], "error: --header 'X-A: ☃': header 'X-A' "),
        (["verify", "http://h/", "-H", "X-☃: a"], "error: --header 'X-☃: a': header name 'X-☃'"),
        (["verify", "https://h/", "--cacert", "/nonexistent"], "error: --cacert /nonexistent: no"),
        (["verify", "https://h/", "--cacert", "/"], "error: --cacert /: not a file"),
        (["verify", "https://h/", "--cacert", HERE], f"error: --cacert {HERE}: cannot load it"),
        (
            ["verify", "https://h/", "--cacert", HERE, "-k"],
            f"error: --cacert {HERE}: and --insecure contradict each other; pick one",
        ),
        (
            ["verify", "http://h/", "--observations", "-", "--json"],
            "error: --observations - and --json would both write to stdout: give --observations "
            "a file, or leave --json out",
        ),
        (
            ["demo", "--ports", "1,2,3,4,5,6"],
            "error: --ports '1,2,3,4,5,6': must be three ports, HTTP,HTTPS,STATS (got 6): six "
            "are the gRPC demo's",
        ),
        (
            ["demo", "--ports", "1,2"],
            "error: --ports '1,2': must be three ports, HTTP,HTTPS,STATS (got 2)",
        ),
        (
            ["demo", "--ports", "20110,20111,99999"],
            "error: --ports '20110,20111,99999': the STATS port 99999 must be between 1 and 65535",
        ),
        (["demo", "--ports", "1,1,2"], "error: --ports '1,1,2': the three ports must differ"),
        (["demo", "--timeout", "0"], "error: --timeout '0': must be a duration"),
        (
            ["manifests", "--drain-seconds", "1.5"],
            "error: invalid value for '--drain-seconds': '1.5' is not a whole number",
        ),
        (["cloud", "up", "--stack", "a b"], "error: --stack 'a b': is not a valid stack name"),
    ],
)
def test_bad_input_is_worded_with_the_commands_own_flags(
    podtally: Run, args: list[str], line: str
) -> None:
    said = one_error_line(podtally(*args))
    assert said.startswith(line), said


@pytest.mark.parametrize("count", ["0", "65"])
@pytest.mark.parametrize("option", ["--replicas", "--nodes"])
def test_demo_counts_are_checked_before_anything_starts(
    podtally: Run, option: str, count: str, tmp_path: Path
) -> None:
    line = one_error_line(podtally("demo", option, count, "--run-dir", str(tmp_path / "demo")))
    assert "between 1 and 64" in line and option.strip("-") in line
    assert not (tmp_path / "demo").exists()


def test_the_environment_sets_options(podtally: Run) -> None:
    """PODTALLY_<OPTION> (no command name): PODTALLY_CACERT is `--cacert`; the flag wins."""
    env = {"PODTALLY_CACERT": "/nonexistent/ca.pem"}
    line = one_error_line(podtally("verify", "https://h/", env=env))
    assert line == "error: --cacert /nonexistent/ca.pem: no such file"
    line = one_error_line(podtally("verify", "https://h/", "--cacert", "/nope", env=env))
    assert line == "error: --cacert /nope: no such file"
    line = one_error_line(podtally("verify", "http://h/", env={"PODTALLY_REQUESTS": "0"}))
    assert line == "error: --requests 0: must be at least 1"
    line = one_error_line(podtally("demo", env={"PODTALLY_PORTS": "1,2"}))
    assert line.startswith("error: --ports '1,2': must be three ports")
