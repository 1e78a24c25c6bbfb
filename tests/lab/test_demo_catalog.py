"""The demo catalog is built whole or not at all: a `make demo` killed while building it (a closed
terminal) left a catalog.toml over missing or empty images, and every later run refused it."""

from __future__ import annotations

from pathlib import Path

from lab.demo import DEMO_STYLES, demo_catalog
from lab.zoo.style_zoo import ZOO_FILE, read_queries


def test_a_catalog_left_half_built_is_built_again_whole(tmp_path: Path) -> None:
    root = tmp_path / "demo-catalog"
    half = root / "loras" / "demo-0000-killed" / "references"
    half.mkdir(parents=True)
    (root / "catalog.toml").write_text('name = "demo"\n')
    (half / "s000.png").write_bytes(b"")  # the file the kill interrupted
    (tmp_path / "demo-catalog.partial" / "loras").mkdir(parents=True)  # a later kill's leftovers

    assert demo_catalog(tmp_path) == root
    assert (root / ZOO_FILE).exists()
    assert len(read_queries(root)) == DEMO_STYLES
    assert not (root / "loras" / "demo-0000-killed").exists()
    assert not (tmp_path / "demo-catalog.partial").exists()
    assert all(image.stat().st_size > 0 for image in root.rglob("*.png"))

    built_at = (root / ZOO_FILE).stat().st_mtime_ns
    assert demo_catalog(tmp_path) == root  # complete: kept as it is
    assert (root / ZOO_FILE).stat().st_mtime_ns == built_at
