"""The service says where a call's time went: a `server-timing` trailer per call, the same
figures on the call's log line, read back by the client when the caller collects them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from findlora_client import FindLoraClient, QueryImage, collect_server_timing
from findlora_client.timing import TOTAL, format_server_timing, parse_server_timing

pytestmark = pytest.mark.db

# Every stage of a two-stage search, in the order they run.
SEARCH_STAGES = ("decode", "check", "encode", "walk", "rerank", "store", "references", "thumbnails")


def test_trailer_round_trips_and_skips_what_it_does_not_know() -> None:
    text = format_server_timing({"decode": 1.25, "walk": 0.5, TOTAL: 9.0}, {"scored": 12})
    assert text == "decode;dur=1.250, walk;dur=0.500, total;dur=9.000, scored;desc=12"
    timing = parse_server_timing(text + ', cache;desc="hit", Bad Name;dur=1, encode;dur=x')
    assert timing.durations_ms == {"decode": 1.25, "walk": 0.5, TOTAL: 9.0}
    assert timing.counts == {"scored": 12}
    assert timing.total_ms == 9.0
    with pytest.raises(ValueError, match="metric name"):
        format_server_timing({"two words": 1.0}, {})


async def test_search_reports_each_stage(client: FindLoraClient, catalog_dir: Path) -> None:
    references = catalog_dir / "loras" / "style-04" / "references"
    images = [QueryImage((references / f"s0{i}.png").read_bytes(), f"s0{i}.png") for i in range(2)]
    with capture_logs() as logs, collect_server_timing() as calls:
        started = time.perf_counter()
        response = await client.search(images, top_k=3)
        wall_ms = (time.perf_counter() - started) * 1000.0
    assert response.matches[0].slug == "style-04"
    [call] = calls
    assert call.method == "Search"
    durations = call.timing.durations_ms
    assert list(durations) == [*SEARCH_STAGES, TOTAL]
    assert all(ms >= 0.0 for ms in durations.values())
    # Stages are disjoint parts of the handler, and the handler is part of the client's wait.
    assert sum(durations[s] for s in SEARCH_STAGES) <= durations[TOTAL] + 0.01
    assert durations[TOTAL] <= wall_ms
    counts = call.timing.counts
    assert counts["candidates"] >= counts["scored"] >= len(response.matches)
    # The service logs the same stages on the call's one line.
    [line] = [e for e in logs if e["event"] == "rpc_ok" and e["rpc"] == "Search"]
    assert list(line["stages_ms"]) == list(SEARCH_STAGES)
    assert line["counts"] == counts


async def test_paging_reports_its_stages_and_uncollected_calls_are_not_kept(
    client: FindLoraClient, catalog_dir: Path
) -> None:
    data = (catalog_dir / "loras" / "style-02" / "references" / "s01.png").read_bytes()
    first = await client.search([QueryImage(data)], top_k=2)  # not collecting: nothing to keep
    with collect_server_timing() as calls:
        await client.get_page(first.search_id, 2, 2)
    [call] = calls
    assert call.method == "GetPage"
    assert list(call.timing.durations_ms) == ["references", "thumbnails", TOTAL]
    assert call.timing.counts == {}
