"""The verifier's settings as the library takes them, before anything is sent: bad options are
usage errors naming the setting, --resolve entries, expected splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from podtally.errors import UsageError
from podtally.verify import VerifyOptions, parse_expect_split, parse_resolve


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://x/"}, "must start with http://, https://, grpc:// or grpcs://"),
        ({"url": "http:///nohost"}, "has no host"),
        ({"url": "http://x:99999/"}, "is not valid"),
        # The library names its settings (requests=0), the CLI its flags (tests/cli).
        ({"url": "http://x/", "requests": 0}, "requests=0: must be at least 1"),
        ({"url": "http://x/", "requests": -5}, "requests=-5: must be at least 1"),
        ({"url": "http://x/", "concurrency": 0}, "concurrency=0: must be between"),
        ({"url": "http://x/", "tolerance": 1.0}, "tolerance=1.0: must be between 0 and 1"),
        ({"url": "http://x/", "tolerance": 0}, "tolerance=0: must be between 0 and 1"),
        ({"url": "http://x/", "max_requests": 0}, "max_requests=0: must be at least 1"),
        (
            {"url": "http://x/", "expect_pods": 2, "expect_split": parse_expect_split("pod=a:1")},
            "not both",
        ),
        ({"url": "http://x/", "alpha": 1.5}, "alpha=1.5: "),
        ({"url": "http://x/", "cacert": Path("/nonexistent.pem")}, "no such file"),
        ({"url": "http://x/", "cacert": Path("/")}, "not a file"),
        ({"url": "http://x/", "cacert": Path(__file__)}, "cannot load it as PEM"),
        ({"url": "http://" + "ü" * 70 + ".test/"}, "host .* is not valid"),
        ({"url": "http://x/", "headers": (("X-A", "☃"),)}, "not Latin-1"),
        ({"url": "http://x/", "headers": (("X-☃", "a"),)}, "header name 'X-☃' is not valid"),
        ({"url": "http://x/", "headers": (("X-A", "a\x00b"),)}, "control character"),
    ],
)
def test_bad_options_are_usage_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("?", r"\?")) as info:
        VerifyOptions(**kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "value",
    ["nohost", "h:80", "h:port:127.0.0.1", "h:80:not-an-ip", "h:0:127.0.0.1", ":80:1.2.3.4"],
)
def test_bad_resolve(value: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_resolve(value)
    assert (info.value.setting, info.value.value) == ("resolve", value)


def test_resolve_accepts_ipv6_in_brackets() -> None:
    entry = parse_resolve("Example.COM:443:[::1]")
    assert (entry.host, entry.port, entry.address) == ("example.com", 443, "::1")
    assert str(entry) == "example.com:443:[::1]"


def test_expect_split_parses_to_relative_weights() -> None:
    split = parse_expect_split(" version=stable:90, canary:10 ")
    assert (split.field, split.weights) == ("version", (("stable", 90.0), ("canary", 10.0)))
    assert split.shares() == pytest.approx({"stable": 0.9, "canary": 0.1})
    assert str(split) == "version=stable:90,canary:10"
    # Written (the observations file's settings line) and read back: the same weights exactly.
    thirds = parse_expect_split("version=v1:33.333333333,v2:66.6666666667")
    assert parse_expect_split(str(thirds)) == thirds
    with pytest.raises(UsageError) as info:
        parse_expect_split("ip=10.0.0.1:1")
    assert info.value.setting == "expect_split" and info.value.exit_code == 2
