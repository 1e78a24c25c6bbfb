"""Every bench JSON says where it ran: load average, cores, memory bandwidth, time and commit."""

from __future__ import annotations

import json
import os
from pathlib import Path

from findlora.commands.bench_search import emit_json


def test_bench_json_records_the_load_and_the_commit(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    emit_json({"benchmark": "x"}, out)
    run = json.loads(out.read_text(encoding="utf-8"))["run"]
    assert len(run["load_average"]) == 3
    assert all(value >= 0 for value in run["load_average"])
    assert run["cpu_count"] == os.cpu_count()
    assert run["memory_read_gb_s"] > 0.1  # a 512 MB read that finished measures some bandwidth
    assert len(run["commit"]) == 40  # the tests run in a git checkout
    assert run["finished_at"].endswith("+00:00")
