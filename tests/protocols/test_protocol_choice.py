"""Which client a URL and the protocol settings call for, and the contradictions between them."""

from __future__ import annotations

import pytest

from podtally.errors import UsageError
from podtally.verify.clients import protocol_for


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
