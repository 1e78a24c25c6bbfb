"""The committed generated gRPC code is what protoc makes from protos/findlora.proto today."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("findlora_pb2.py", "findlora_pb2.pyi", "findlora_pb2_grpc.py")


def test_generated_code_is_current(tmp_path: Path) -> None:
    (tmp_path / "protos").mkdir()
    shutil.copy(ROOT / "protos" / "findlora.proto", tmp_path / "protos")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--pyi_out=.",
            "--grpc_python_out=.",
            "protos/findlora.proto",
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "protos" / name).read_text()
        committed = (ROOT / "protos" / name).read_text()
        assert fresh == committed, f"protos/{name} is stale: run `make proto` and commit"


def test_service_surface_is_complete() -> None:
    from protos import findlora_pb2

    service = findlora_pb2.DESCRIPTOR.services_by_name["FindLora"]
    assert service.full_name == "findlora.v1.FindLora"
    assert set(service.methods_by_name) == {
        "Search",
        "GetPage",
        "RecordFeedback",
        "RegisterLora",
        "WatchJob",
        "SetLoraStatus",
        "FlagLookalike",
        "ListFlags",
        "ReviewFlag",
        "FeedbackStats",
        "CreateClient",
        "ListClients",
        "RevokeClient",
        "ServiceStatus",
    }
    assert service.methods_by_name["WatchJob"].server_streaming
