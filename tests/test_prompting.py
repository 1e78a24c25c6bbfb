from __future__ import annotations

import pytest

from inference_service.prompting import lora_tag, suggest_prompt


@pytest.mark.parametrize(
    ("pseudo", "triggers", "slug", "base", "expected"),
    [
        (
            "a cat on a sofa",
            ["ghibli style"],
            "ghibli-v2",
            "sd1",
            "a cat on a sofa, ghibli style, <lora:ghibli-v2:0.8>",
        ),
        ("a cat on a sofa", [], "ghibli-v2", "sd1", "a cat on a sofa, <lora:ghibli-v2:0.8>"),
        (
            "a city street",
            ["pxl", "pixel art"],
            "pixel-xl",
            "sdxl",
            "a city street, pxl, pixel art, <lora:pixel-xl:0.9>",
        ),
        ("a city street", [], "pixel-xl", "sdxl", "a city street, <lora:pixel-xl:0.9>"),
        ("", ["inkwash"], "ink", "sd1", "inkwash, <lora:ink:0.8>"),
        (
            "a portrait, Inkwash",
            ["inkwash", " ", "inkwash"],
            "ink",
            "sd1",
            "a portrait, Inkwash, <lora:ink:0.8>",
        ),
        ("a portrait", ["fluxstyle"], "flux-style", "flux", "a portrait, fluxstyle"),
    ],
)
def test_suggested_prompt(pseudo: str, triggers: list[str], slug: str, base: str, expected: str) -> None:
    assert suggest_prompt(pseudo, triggers, slug, base) == expected


def test_lora_tag_only_for_inline_tag_ecosystems() -> None:
    assert lora_tag("x", "sd2") == "<lora:x:0.8>"
    assert lora_tag("x", "sd3") == ""


@pytest.mark.parametrize("base", ["pony", "illustrious", "noobai", "playground"])
def test_sdxl_derivatives_get_the_inline_tag_their_uis_load(base: str) -> None:
    """A1111 and Forge load Pony, Illustrious, NoobAI and Playground LoRAs (SDXL networks) by
    the same inline tag as SDXL's own."""
    assert suggest_prompt("a cat", ["inkstyle"], "ink-lora", base) == "a cat, inkstyle, <lora:ink-lora:0.9>"
    assert lora_tag("x", "other:my merge") == ""  # an unknown family's loader is unknown
