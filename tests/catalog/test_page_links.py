"""A LoRA's page link is an http(s) address or none, checked where it enters: registration,
catalog import and bulk lists. A chat refuses a whole results message over one bad link."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.database import Database
from findlora_client.bulk import parse_list
from findlora_client.links import page_link_problem
from inference_service.catalog.format import CatalogError, read_catalog
from inference_service.config import Settings
from inference_service.errors import InvalidArgument
from inference_service.registration.jobs import Registration, Registrations, make_queue_app
from tests.helpers.catalogs import write_catalog

BAD = {
    "civitai.com/models/1": "must be an http(s) address",
    "javascript:alert(1)": "must be an http(s) address",
    "https://": "must be an http(s) address",
    "https://example.org/a b": "spaces, control characters",
    "https://civitai.com/models/1?v=>*<!channel>*<https://evil.example|Log in>": "percent-encode them",
    "https://example.org/" + "a" * 2100: "at most 2048",
}


@pytest.mark.parametrize(("url", "why"), BAD.items())
def test_bad_page_links_say_why(url: str, why: str) -> None:
    problem = page_link_problem(url)
    assert problem is not None
    assert why in problem


@pytest.mark.parametrize("url", ["", "https://civitai.com/models/1?modelVersionId=2", "http://example.org/x"])
def test_good_page_links_and_none_pass(url: str) -> None:
    assert page_link_problem(url) is None


def test_a_bulk_entry_with_a_bad_page_link_is_reported_and_the_rest_kept() -> None:
    text = """
[[lora]]
url = "https://example.org/a.safetensors"
name = "Good"
page_url = "https://example.org/a"

[[lora]]
url = "https://example.org/b.safetensors"
name = "Bad page"
page_url = "example.org/b"
"""
    parsed = parse_list(text, "catalog.toml")
    assert [e.name for e in parsed.entries] == ["Good"]
    assert len(parsed.bad) == 1
    assert "must be an http(s) address" in parsed.bad[0].reason


def test_catalog_import_refuses_a_lora_whose_url_is_not_a_web_address(tmp_path: Path) -> None:
    root = write_catalog(tmp_path / "catalog", n_loras=2, n_samples=3)
    toml = root / "loras" / "style-01" / "lora.toml"
    toml.write_text(toml.read_text().replace("https://example.org/style-01", "ftp://example.org/style-01"))
    with pytest.raises(CatalogError) as info:
        read_catalog(root)
    assert any(
        str(toml) in p and "url 'ftp://example.org/style-01' must be an http(s)" in p
        for p in info.value.problems
    )


@pytest.mark.db
async def test_registration_refuses_a_bad_page_link_before_queueing(settings: Settings, db: Database) -> None:
    registrations = Registrations(db, make_queue_app(str(settings.database_url)), settings)
    with pytest.raises(InvalidArgument, match=r"page_url 'civitai\.com/models/1' must be an http"):
        await registrations.submit(
            Registration(
                "https://huggingface.co/x/y/resolve/main/a.safetensors",
                name="Ink",
                page_url="civitai.com/models/1",
            )
        )


def test_a_stored_link_with_markup_cannot_end_slacks_link_early() -> None:
    """Links stored before the check (or by another client) are made safe where they are shown."""
    from bot.slack.blocks import _link

    shown = _link(
        "https://civitai.com/models/1?v=>*<!channel>*<https://evil.example/login|Log in>&x=1", "Nice"
    )
    assert shown.startswith(
        "<https://civitai.com/models/1?v=%3E*%3C!channel%3E*%3Chttps://evil.example/login%7CLog"
    )
    assert shown.endswith("&amp;x=1|Nice>")
    assert shown.count("<") == 1
    assert shown.count(">") == 1
