"""A fused result without a style distance (a LoRA found by its spec alone, every reference
dropped by cleansing) comes over the wire as NaN: the CLI's JSON printed `NaN`, which no JSON
parser takes, and its table and picture printed "nan"."""

from __future__ import annotations

import json

from rich.console import Console

from findlora.commands.search import response_json, results_table
from findlora.render import results_view
from protos import findlora_pb2 as pb


def spec_only_response() -> pb.SearchResponse:
    response = pb.SearchResponse(search_id="s1", pseudo_prompt="a cat")
    response.matches.add(rank=1, slug="ink", name="Ink", url="https://example.org/ink", score=0.2,
                         style_distance=float("nan"), rkme_score=0.4)  # fmt: skip
    response.matches.add(rank=2, slug="wash", name="Wash", url="https://example.org/wash", score=0.3,
                         style_distance=0.61, rkme_score=0.5)  # fmt: skip
    return response


def test_json_says_null_for_a_missing_style_distance() -> None:
    printed = json.dumps(response_json(spec_only_response()), allow_nan=False)
    assert [r["style_distance"] for r in json.loads(printed)["results"]] == [None, 0.61]


def test_table_and_picture_say_there_is_no_style_distance() -> None:
    console = Console(width=200, record=True)
    console.print(results_table(spec_only_response()))
    table = console.export_text()
    assert "nan" not in table
    assert "—" in table
    assert "0.6100" in table
    rows = results_view(spec_only_response(), []).rows
    assert rows[0].score_lines[0] == "no style distance (no refs)"
    assert rows[1].score_lines[0] == "style distance 0.6100"
