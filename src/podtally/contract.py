"""The wire contract: what the service, the verifier, the local stack and the manifests agree on.

Each name lives here once; everyone imports it from here. Nothing in this module does I/O or
imports another podtally module, so any part may depend on it.

- the identity fields, in wire order: :data:`FIELDS`
- the environment variables each field is read from (downward API): :data:`ENV`
- the response headers (and, lower-case, gRPC metadata keys) that carry them: :data:`HEADERS`
- the plain-text format (what ``curl`` gets): one producer, :func:`format_text`, and one parser,
  :func:`parse_text`; the first four lines are the original exercise's, in its order
- the ``podtally verify --json`` schema id: :data:`RESULT_SCHEMA_ID`, and the ``--observations``
  file's: :data:`OBSERVATIONS_SCHEMA_ID`
- the local stack CA's organisation name, by which the verifier recognises it:
  :data:`LOCAL_CA_ORGANIZATION`
- the port a replica listens on unless told otherwise: :data:`DEFAULT_PORT`, and its gRPC port:
  :data:`DEFAULT_GRPC_PORT`
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

FieldName = Literal["pod", "node", "namespace", "ip", "zone", "version"]
FIELDS: Final[tuple[FieldName, ...]] = ("pod", "node", "namespace", "ip", "zone", "version")
"""Every identity field, in the order of the text lines, the headers and the JSON document."""

SEED_FIELDS: Final[tuple[FieldName, ...]] = ("pod", "node", "namespace", "ip")
"""The four lines every plain-text identity starts with, in this order."""

ENV: Final[Mapping[FieldName, tuple[str, ...]]] = {
    "pod": ("POD_NAME", "K8_POD_NAME"),
    "node": ("NODE_NAME", "K8_NODE_NAME"),
    "namespace": ("POD_NAMESPACE", "K8_POD_NAMESPACE"),
    "ip": ("POD_IP", "K8_POD_IP"),
    "zone": ("ZONE",),
    "version": ("POD_VERSION",),
}
"""Environment variables per field, tried in order: the first is the name podtally sets (in the
manifests and the local stack), the ``K8_*`` ones are the original exercise's aliases."""

ENV_NAMES: Final[tuple[str, ...]] = tuple(name for names in ENV.values() for name in names)
"""Every identity environment variable, aliases included."""

HEADERS: Final[Mapping[FieldName, str]] = {
    "pod": "X-Pod-Name",
    "node": "X-Node-Name",
    "namespace": "X-Pod-Namespace",
    "ip": "X-Pod-IP",
    "zone": "X-Zone",
    "version": "X-Pod-Version",
}
"""Identity response headers, on every response (errors and HEAD included)."""

TEXT_LABELS: Final[Mapping[FieldName, str]] = {
    "pod": "Pod",
    "node": "Node",
    "namespace": "Namespace",
    "ip": "IP",
    "zone": "Zone",
    "version": "Version",
}
"""The label of each plain-text line (``Pod: web-0``); also the row titles of the HTML page."""

ZONE_LABEL: Final = "topology.kubernetes.io/zone"
"""The node (and, from Kubernetes 1.35, pod) label that names the zone."""
VERSION_LABEL: Final = "app.kubernetes.io/version"
"""The pod label the manifests give ``POD_VERSION`` from, through the downward API."""

RESULT_SCHEMA_ID: Final = "podtally.verify.result/2"
"""The ``schema`` of the ``podtally verify --json`` document (and its JSON Schema ``$id``)."""

OBSERVATIONS_SCHEMA_ID: Final = "podtally.verify.observations/3"
"""The ``schema`` of an ``--observations`` file's first line, the run's settings (and its JSON
Schema ``$id``). ``/3`` ends with a line saying how the run ended (``{"end": ...}``), so a file
without one was cut short; ``/2`` has the same settings line and no end line; ``/1`` has neither,
observation lines only. Both are still read."""

LOCAL_CA_ORGANIZATION: Final = "podtally local stack"
"""The organisation (O=) of the local stack's CA; the verifier tailors its TLS advice to it."""

DEFAULT_PORT: Final = 8080
"""The port a replica listens on, and the container port the manifests name."""

DEFAULT_GRPC_PORT: Final = 9090
"""The port of a replica's gRPC server (``podtally.v1.Identity``, health, reflection), and the
container and Service port the manifests name ``grpc``."""

_BY_LABEL: Final[Mapping[str, FieldName]] = {
    label.lower(): name for name, label in TEXT_LABELS.items()
}


def header_keys() -> dict[bytes, FieldName]:
    """Lower-case header names as bytes (what an HTTP parser hands over), to their field."""
    return {header.lower().encode("ascii"): name for name, header in HEADERS.items()}


def format_text(values: Mapping[FieldName, str]) -> str:
    """The plain-text identity: ``Label: value`` lines in :data:`FIELDS` order.

    The four seed fields are required; any other field is written when ``values`` has it.
    """
    missing = [name for name in SEED_FIELDS if name not in values]
    if missing:
        raise ValueError(f"the plain-text identity needs {', '.join(missing)}")
    return "".join(f"{TEXT_LABELS[name]}: {values[name]}\n" for name in FIELDS if name in values)


def parse_text(body: bytes | str) -> dict[FieldName, str] | None:
    """The identity in a plain-text body, or ``None`` when it has no ``Pod:`` line.

    Labels are matched without regard to case or surrounding spaces; the first non-empty value of
    each label counts; lines that are not identity lines are ignored (a page may say more).
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    values: dict[FieldName, str] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        name = _BY_LABEL.get(label.strip().lower()) if sep else None
        value = value.strip()
        if name is not None and value and name not in values:
            values[name] = value
    return values if "pod" in values else None
