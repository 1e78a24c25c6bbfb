"""Suggested prompts: what to type to reproduce a look with a LoRA.

The pseudo-prompt (or the user's prompt) describes the content, the trigger words switch the
LoRA's concept on, and kohya-style UIs (A1111, Forge, SD.Next) load the LoRA itself from an
inline tag `<lora:NAME:WEIGHT>`. Tags are only added for the base models those UIs load that
way, by architecture (Pony, Illustrious, NoobAI and Playground LoRAs are SDXL networks and load
alike); other ecosystems (e.g. ComfyUI graphs for Flux/SD3) load LoRAs outside the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from findlora_client.base_models import BY_ID

# Usual strengths people start from; SDXL LoRAs are commonly trained to be used near full weight.
INLINE_TAG_WEIGHTS = {"sd1": 0.8, "sd2": 0.8, "sdxl": 0.9}
_SEPARATORS = re.compile(r"\s*,\s*")


def lora_tag(slug: str, base_model: str) -> str:
    known = BY_ID.get(base_model)
    weight = None if known is None else INLINE_TAG_WEIGHTS.get(known.architecture)
    return "" if weight is None else f"<lora:{slug}:{weight:g}>"


def suggest_prompt(pseudo_prompt: str, trigger_words: Sequence[str], slug: str, base_model: str) -> str:
    """`content, trigger, words, <lora:slug:0.8>`: trigger words already in the text are not repeated."""
    content = pseudo_prompt.strip().strip(",").strip()
    present = {part.lower() for part in _SEPARATORS.split(content) if part}
    triggers = []
    for word in (w.strip() for w in trigger_words):
        if word and word.lower() not in present:
            present.add(word.lower())
            triggers.append(word)
    return ", ".join(part for part in (content, *triggers, lora_tag(slug, base_model)) if part)
