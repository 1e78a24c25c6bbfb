"""A brief run of each atheris fuzz target; long runs are done by hand (see fuzz/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGETS = sorted((ROOT / "fuzz").glob("fuzz_*.py"))
# About 10 s each on 2 cores: the LoRA target writes and validates a file per input.
RUNS = {"fuzz_lora_header": 5000}


@pytest.mark.parametrize("target", TARGETS, ids=[t.stem for t in TARGETS])
def test_fuzz_target_finds_no_crash(target: Path, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"  # libFuzzer adds inputs to its corpus: keep the seeds untouched
    shutil.copytree(ROOT / "fuzz" / "corpus" / target.stem.removeprefix("fuzz_"), corpus)
    runs = RUNS.get(target.stem, 20000)
    result = subprocess.run(
        [
            sys.executable,
            str(target),
            f"-runs={runs}",
            "-rss_limit_mb=4096",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "FUZZ_SCRATCH_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {runs} runs" in result.stderr
