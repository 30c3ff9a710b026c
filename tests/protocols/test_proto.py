"""The generated gRPC code is what `make proto` makes from the .proto today: regenerating it, with
the Makefile's own arguments and the pinned grpcio-tools, changes nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

PROTO_DIR = REPO / "src" / "podtally" / "proto"


def test_regenerating_the_grpc_code_changes_nothing(tmp_path: Path) -> None:
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^PROTO_ARGS := (.+)$", makefile, re.MULTILINE)
    assert match, "the Makefile has no PROTO_ARGS line"
    args = [a.replace("_out=src", f"_out={tmp_path}") for a in match.group(1).split()]
    protos = sorted(str(p.relative_to(REPO)) for p in PROTO_DIR.glob("*.proto"))
    assert protos
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", *args, *protos],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=60,
    )
    made = {p.name: p.read_text() for p in (tmp_path / "podtally" / "proto").iterdir()}
    committed = {
        p.name: p.read_text()
        for p in PROTO_DIR.iterdir()
        if re.search(r"_pb2(_grpc)?\.pyi?$", p.name)
    }
    assert made.keys() == committed.keys()
    for name, text in made.items():
        assert committed[name] == text, f"{name} is stale: run make proto and commit the result"
