"""Which client a URL and the protocol settings call for, and the contradictions between them."""

from __future__ import annotations

import pytest

from podtally.errors import UsageError
from podtally.verify.clients import protocol_for
from podtally.verify.options import VerifyOptions


@pytest.mark.parametrize(
    ("url", "http2", "expected"),
    [
        ("http://a/", False, "http1"),
        ("https://a/", True, "http2"),
        ("HTTP://a/", True, "http2"),
        ("grpc://a:9090", False, "grpc"),
        ("grpcs://a:443", False, "grpc"),
    ],
)
def test_the_client_follows_the_scheme(url: str, http2: bool, expected: str) -> None:
    assert protocol_for(url, http2=http2) == expected


@pytest.mark.parametrize(
    ("url", "kwargs", "setting"),
    [
        ("grpc://a:9090", {"http2": True}, "http2"),
        ("grpcs://a:9090", {"http2": True}, "http2"),
        ("http://a/", {"new_channel": True}, "new_channel"),
        ("ftp://a/", {}, "url"),
        ("a:9090", {}, "url"),
    ],
)
def test_contradictions_and_unknown_schemes_are_usage_errors(
    url: str, kwargs: dict[str, bool], setting: str
) -> None:
    with pytest.raises(UsageError) as caught:
        protocol_for(url, **kwargs)
    assert caught.value.setting == setting
    assert caught.value.exit_code == 2


# --- VerifyOptions: the protocol, the gRPC target, and what each protocol takes ------------------
@pytest.mark.parametrize(
    ("kwargs", "protocol", "reuses"),
    [
        ({"url": "http://a/"}, "http1", False),
        ({"url": "http://a/", "keep_alive": True}, "http1", True),
        ({"url": "https://a/", "http2": True}, "http2", True),
        ({"url": "grpc://a:9090"}, "grpc", True),
        ({"url": "grpcs://a:9443", "new_channel": True}, "grpc", False),
    ],
)
def test_options_know_their_protocol_and_whether_connections_are_reused(
    kwargs: dict[str, object], protocol: str, reuses: bool
) -> None:
    options = VerifyOptions(**kwargs)  # type: ignore[arg-type]
    assert options.protocol == protocol
    assert options.reuses_connections is reuses


def test_a_grpc_url_is_the_options_target() -> None:
    target = VerifyOptions("grpcs://API.example.test").target
    assert (target.scheme, target.host, target.port, target.path) == (
        "grpcs",
        "api.example.test",
        443,
        "",
    )
    assert target.tls and target.authority == "api.example.test:443"
    assert VerifyOptions("grpc://[::1]:9090/").target.authority == "[::1]:9090"


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"url": "grpc://a:9090/x"}, "url"),
        ({"url": "grpc://a:9090", "http2": True}, "http2"),
        ({"url": "http://a/", "new_channel": True}, "new_channel"),
        ({"url": "http://a/", "streams": 4}, "streams"),
        ({"url": "http://a/", "http2": True, "streams": 0}, "streams"),
        ({"url": "http://a/", "http2": True, "streams": 1001}, "streams"),
        ({"url": "http://a/", "http2": True, "keep_alive": True}, "keep_alive"),
        ({"url": "grpc://a:1", "keep_alive": True}, "keep_alive"),
        ({"url": "grpc://a:1", "follow": True}, "follow"),
        ({"url": "grpc://a:1", "headers": (("x-a", "b"),)}, "headers"),
    ],
)
def test_options_reject_what_the_protocol_cannot_do(
    kwargs: dict[str, object], setting: str
) -> None:
    with pytest.raises(UsageError) as caught:
        VerifyOptions(**kwargs)  # type: ignore[arg-type]
    assert caught.value.setting == setting
    assert caught.value.exit_code == 2
