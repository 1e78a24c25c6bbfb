"""Lists for `register-many` and the bots' attached file: the three formats, bad entries with where
they are and why, the good ones kept."""

from __future__ import annotations

import json

from findlora_client.bulk import FAILED, REGISTERED, BulkSummary, detect_format, parse_list


def reasons(text: str, filename: str) -> dict[str, str]:
    return {bad.where: bad.reason for bad in parse_list(text, filename).bad}


def test_text_list_skips_comments_and_reports_bad_lines() -> None:
    text = "\n".join(
        [
            "# LoRAs of the spring contest",
            "https://example.org/files/Ink_Wash.safetensors?token=abc",
            "",
            "loras/paper-cut.safetensors   # local, relative to the list",
            "ftp://example.org/x.safetensors",
            "http://example.org/y.safetensors",
            "old/model.ckpt",
            "https://example.org/files/Ink_Wash.safetensors?token=abc",
        ]
    )
    parsed = parse_list(text, "spring.txt")
    assert parsed.format == "text"
    assert [(e.where, e.source, e.name) for e in parsed.entries] == [
        ("line 2", "https://example.org/files/Ink_Wash.safetensors?token=abc", "Ink Wash"),
        ("line 4", "loras/paper-cut.safetensors", "paper-cut"),
    ]
    assert reasons(text, "spring.txt") == {
        "line 5": "only https:// download links are accepted, not ftp://",
        "line 6": "only https download links are accepted",
        "line 7": "model.ckpt is not a .safetensors file",
        "line 8": "same source as line 2",
    }


def test_toml_tables_with_unknown_fields_and_base_model_spellings() -> None:
    text = """
[[lora]]
path = "a.safetensors"
name = "Ink Wash"
base_model = "SD 1.5"
trigger_words = ["inkwash", "sumi-e"]
nsfw = false

[[lora]]
url = "https://example.org/b.safetensors"
name = "Pony Thing"
base_model = "Pony Diffusion V6 XL"
colour = "red"

[[lora]]
name = "No source"

[[lora]]
url = "https://example.org/c.safetensors"
name = "Ink Wash"
trigger_words = "one, two"
base_model = "my own mix"
"""
    parsed = parse_list(text, "catalog.toml")
    assert parsed.format == "toml"
    first = parsed.entries[0]
    assert (first.where, first.source, first.base_model, first.trigger_words) == (
        "line 2",
        "a.safetensors",
        "sd1",
        ("inkwash", "sumi-e"),
    )
    assert reasons(text, "catalog.toml") == {
        "line 9": "unknown field 'colour' (known: url, path, name, slug, base_model, trigger_words, "
        "license, author, nsfw, page_url)",
        "line 15": "give exactly one of url or path",
        "line 18": "slug 'ink-wash' is also used by line 2",
    }
    assert parsed.warnings == [
        "line 18: base model 'my own mix' is not a known family: kept as 'other:my-own-mix' "
        "(known: " + parsed.warnings[0].split("(known: ")[1]
    ]


def test_broken_toml_names_its_line() -> None:
    broken = '[[lora]]\nname = "x"\nurl = "https://x.org/a.safetensors\n'
    assert reasons(broken, "x.toml") == {
        "line 3": "not valid TOML: Illegal character '\\n' (at line 3, column 35)"
    }
    assert reasons('lora = "x"\n', "x.toml") == {"the file": "write each LoRA as its own [[lora]] table"}


def test_civitai_model_versions_map_to_registrations() -> None:
    versions = {
        "items": [
            {
                "id": 1001,
                "modelId": 77,
                "name": "v2.0",
                "baseModel": "Illustrious",
                "trainedWords": ["inkwash style"],
                "model": {"name": "Ink Wash", "nsfw": True},
                "creator": {"username": "sumi"},
                "files": [
                    {"name": "training.zip", "downloadUrl": "https://civitai.com/api/download/x"},
                    {
                        "name": "inkwash.safetensors",
                        "primary": True,
                        "downloadUrl": "https://civitai.com/api/download/models/1001",
                    },
                ],
            },
            {"id": 1002, "name": "no link", "model": {"name": "Gone"}},
            "not an object",
            {
                "name": "Flat Colours",
                "downloadUrl": "https://example.org/flat.safetensors",
                "baseModel": "SDXL 1.0",
                "nsfw": False,
            },
        ]
    }
    parsed = parse_list(json.dumps(versions), "export.json")
    assert parsed.format == "json"
    ink, flat = parsed.entries
    assert (ink.where, ink.name, ink.base_model, ink.nsfw, ink.author) == (
        "items[0]",
        "Ink Wash v2.0",
        "illustrious",
        True,
        "sumi",
    )
    assert ink.source == "https://civitai.com/api/download/models/1001"
    assert ink.page_url == "https://civitai.com/models/77?modelVersionId=1001"
    assert ink.trigger_words == ("inkwash style",)
    assert (flat.where, flat.name, flat.base_model) == ("items[3]", "Flat Colours", "sdxl")
    assert reasons(json.dumps(versions), "export.json") == {
        "items[1]": "no downloadUrl (nor files[].downloadUrl)",
        "items[2]": "not a model-version object",
    }
    # A bare list works too, and the format is found from the content when the name does not say.
    assert parse_list(json.dumps(versions["items"][3:]), "upload").entries[0].where == "[0]"
    assert reasons("{oops", "x.json") == {
        "line 1": "not valid JSON: Expecting property name enclosed in double quotes"
    }


def test_format_from_content() -> None:
    assert detect_format("list", "[[lora]]\nurl = 'x'") == "toml"
    assert detect_format("list", '[{"downloadUrl": "x"}]') == "json"
    assert detect_format("list", "https://x.org/a.safetensors") == "text"


def test_summary_counts_and_redacts_links() -> None:
    parsed = parse_list("https://x.org/a.safetensors?sig=secret\nb.ckpt\n", "l.txt")
    summary = BulkSummary.of(parsed)
    summary.add(parsed.entries[0], REGISTERED, slug="a")
    assert summary.headline() == "1 registered, 0 skipped (0 already there, 0 already queued), 1 failed"
    assert summary.failure_lines() == ["line 2: b.ckpt is not a .safetensors file (b.ckpt)"]
    data = summary.to_json()
    assert data["counts"][FAILED] == 1
    assert "secret" not in json.dumps(data)
    assert data["entries"][0]["source"] == "https://x.org/a.safetensors"
