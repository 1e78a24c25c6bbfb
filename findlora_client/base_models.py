"""Base models as an open vocabulary: canonical family ids, the spellings people use for them, and
which families a search filter on one of them includes (docs/design.md, "Base models").

Shared by the service, the CLI and both bots, so it imports nothing beyond the standard library.
A filter on one family returns its compatibility group (the families whose LoRAs load on its
checkpoints and show their style there); the groups and why each is so are in that section.
Unknown names are kept, not refused: they become "other:<normalised name>" and the caller warns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OTHER = "other"
OTHER_PREFIX = "other:"
_MAX_OTHER_NAME = 60  # other:<name> stays short enough to show in a Discord field


@dataclass(frozen=True)
class BaseModel:
    id: str  # canonical, stored in loras.base_model
    name: str  # display name
    architecture: str  # the network a LoRA's tensors must fit: derivatives share their parent's
    aliases: tuple[str, ...] = ()  # spellings beside the id and the display name
    loads_with: tuple[str, ...] = ()  # other families in this one's compatibility group


BASE_MODELS: tuple[BaseModel, ...] = (
    BaseModel(
        "sd1", "Stable Diffusion 1.x", "sd1",
        ("SD 1.5", "sd15", "SD1.5", "1.5", "SD 1.4", "sd14", "1.4", "SD 1", "sd1.x", "sd_v1", "v1-5",
         "sd-v1-5", "v1-5-pruned", "v1-5-pruned-emaonly", "stable-diffusion-v1", "stable-diffusion-v1-5",
         "runwayml/stable-diffusion-v1-5", "Stable Diffusion 1.5", "SD 1.5 LCM", "SD 1.5 Hyper"),
    ),
    BaseModel(
        "sd2", "Stable Diffusion 2.x", "sd2",
        ("SD 2", "SD 2.0", "SD 2.1", "sd20", "sd21", "2.1", "SD 2.0 768", "SD 2.1 768", "SD 2.1 512",
         "sd_v2", "sd_v2_v", "sd_v2_768_v", "stable-diffusion-v2", "stable-diffusion-v2-512",
         "stable-diffusion-v2-768-v", "stable-diffusion-2-1", "Stable Diffusion 2.1"),
    ),
    BaseModel(
        "sdxl", "SDXL 1.0", "sdxl",
        ("SDXL", "SDXL 1.0", "SDXL 0.9", "sdxl_base", "sdxl base", "sdxl base 1.0", "sdxl_base_v1-0",
         "sd_xl_base_1.0", "stable-diffusion-xl-v1-base", "stable-diffusion-xl-base-1.0",
         "stabilityai/stable-diffusion-xl-base-1.0", "Stable Diffusion XL", "SDXL Turbo", "sdxl-turbo",
         "SDXL Lightning", "sdxl-lightning", "SDXL Hyper", "SDXL 1.0 LCM", "SDXL LCM", "SDXL Distilled"),
    ),
    BaseModel(
        "pony", "Pony Diffusion V6 XL", "sdxl",
        ("Pony", "Pony Diffusion", "Pony Diffusion V6", "Pony V6", "PonyXL", "Pony XL", "PDXL",
         "ponyDiffusionV6XL"),
    ),
    BaseModel(
        "illustrious", "Illustrious-XL", "sdxl",
        ("Illustrious", "Illustrious XL", "IllustriousXL", "Illustrious-XL v0.1", "Illustrious XL 1.0",
         "Illustrious XL 2.0", "ILXL"),
        loads_with=("noobai",),
    ),
    BaseModel(
        "noobai", "NoobAI-XL", "sdxl",
        ("NoobAI", "NoobAI XL", "NoobAIXL", "Noob AI", "NoobAI-XL eps", "NoobAI-XL v-pred",
         "NoobAI XL V-Pred"),
        loads_with=("illustrious",),
    ),
    BaseModel(
        "playground", "Playground v2.5", "sdxl",
        ("Playground v2", "Playground v2.5", "Playground", "playground-v2.5-1024px-aesthetic"),
    ),
    BaseModel("sd3", "Stable Diffusion 3 Medium", "sd3", ("SD 3", "SD 3 Medium", "SD3 Medium",
              "sd3-medium", "sd3m", "stable-diffusion-3", "stable-diffusion-3-medium")),
    BaseModel("sd35-large", "Stable Diffusion 3.5 Large", "sd35-large",
              ("SD 3.5", "sd35", "SD 3.5 Large", "SD 3.5 Large Turbo", "sd3.5-large",
               "stable-diffusion-3.5-large", "stable-diffusion-3-5-large")),
    BaseModel("sd35-medium", "Stable Diffusion 3.5 Medium", "sd35-medium",
              ("SD 3.5 Medium", "sd3.5-medium", "stable-diffusion-3.5-medium",
               "stable-diffusion-3-5-medium")),
    BaseModel(
        "flux1-dev", "Flux.1 Dev", "flux1",
        ("Flux.1 D", "Flux.1 Dev", "Flux.1-dev", "Flux Dev", "flux-dev", "flux-1-dev", "FLUX.1 [dev]",
         "black-forest-labs/FLUX.1-dev"),
        loads_with=("flux1-schnell", "flux"),
    ),
    BaseModel(
        "flux1-schnell", "Flux.1 Schnell", "flux1",
        ("Flux.1 S", "Flux.1 Schnell", "Flux.1-schnell", "Flux Schnell", "flux-schnell", "flux-1-schnell",
         "FLUX.1 [schnell]", "black-forest-labs/FLUX.1-schnell"),
        loads_with=("flux1-dev", "flux"),
    ),
    # Before the vocabulary, "flux" was the only Flux id: kept for LoRAs whose variant is unknown.
    BaseModel("flux", "Flux.1 (variant not stated)", "flux1", ("Flux", "Flux.1", "flux1", "flux-1"),
              loads_with=("flux1-dev", "flux1-schnell")),
    BaseModel("pixart-alpha", "PixArt-α", "pixart-alpha", ("PixArt a", "PixArt Alpha", "PixArt-alpha")),
    BaseModel("pixart-sigma", "PixArt-Σ", "pixart-sigma", ("PixArt E", "PixArt Sigma", "PixArt-sigma")),
    BaseModel("hunyuan-dit", "Hunyuan-DiT", "hunyuan-dit", ("Hunyuan 1", "HunyuanDiT", "Hunyuan DiT",
              "hunyuan-dit-g2-v1_1", "hunyuan-dit-g2-v1_2")),
    BaseModel("kolors", "Kolors", "kolors", ("Kwai Kolors",)),
    BaseModel("auraflow", "AuraFlow", "auraflow", ("Aura Flow",)),
    BaseModel("stable-cascade", "Stable Cascade", "stable-cascade", ("StableCascade", "Würstchen v3")),
    BaseModel(OTHER, "Other", OTHER, ("unknown",)),
)  # fmt: skip

BY_ID: dict[str, BaseModel] = {model.id: model for model in BASE_MODELS}


def spelling_key(text: str) -> str:
    """Case, space and punctuation do not matter: "SD 1.5", "sd-1.5" and "SD1.5" meet at "sd15"."""
    return re.sub(r"[^0-9a-z]", "", text.casefold().replace("σ", "e").replace("α", "a"))


def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for model in BASE_MODELS:
        for spelling in (model.id, model.name, *model.aliases):
            key = spelling_key(spelling)
            if table.setdefault(key, model.id) != model.id:  # a spelling must name one family
                raise ValueError(f"{spelling!r} is an alias of both {table[key]} and {model.id}")
    return table


ALIASES: dict[str, str] = _alias_table()


@dataclass(frozen=True)
class Resolved:
    id: str  # a canonical id, or other:<normalised name>
    known: bool  # False: the name is not in the vocabulary (warn, do not refuse)
    given: str

    @property
    def warning(self) -> str:
        if self.known:
            return ""
        return (
            f"base model {self.given!r} is not a known family: kept as {self.id!r} "
            f"(known: {', '.join(m.id for m in BASE_MODELS)})"
        )


def other_name(text: str) -> str:
    """The stored form of an unknown name: lower case, dashes between words, bounded."""
    slug = re.sub(r"[^0-9a-z.]+", "-", text.casefold()).strip("-.")
    return slug[:_MAX_OTHER_NAME].rstrip("-.") or "unnamed"


def resolve(text: str) -> Resolved:
    """Any spelling to its canonical id; "" stays "" (no base model given). Stored "other:<name>"
    values resolve to themselves, so resolving is idempotent."""
    given = text.strip()
    if not given:
        return Resolved("", True, given)
    if given.casefold().startswith(OTHER_PREFIX):
        return Resolved(OTHER_PREFIX + other_name(given[len(OTHER_PREFIX) :]), True, given)
    found = ALIASES.get(spelling_key(given))
    if found is not None:
        return Resolved(found, True, given)
    return Resolved(OTHER_PREFIX + other_name(given), False, given)


def canonical(text: str) -> str:
    return resolve(text).id


def display_name(base_id: str) -> str:
    model = BY_ID.get(base_id)
    if model is not None:
        return model.name
    return base_id.removeprefix(OTHER_PREFIX) if base_id.startswith(OTHER_PREFIX) else base_id


def architecture(base_id: str) -> str | None:
    """The network a family's LoRAs fit (derivatives give their parent's); None when unknown."""
    model = BY_ID.get(base_id)
    return model.architecture if model is not None and model.id != OTHER else None


@dataclass(frozen=True)
class FilterGroup:
    """What a search filter on one family matches: these ids, plus every other:<name> if `others`."""

    ids: tuple[str, ...]
    others: bool = False


def filter_group(text: str) -> FilterGroup:
    """The compatibility group of a filter value (any spelling); empty ids: no filter at all."""
    base_id = canonical(text)
    if not base_id:
        return FilterGroup(())
    model = BY_ID.get(base_id)
    if model is None:  # other:<name>: that name only
        return FilterGroup((base_id,))
    return FilterGroup((model.id, *model.loads_with), others=model.id == OTHER)


def suggestions(typed: str, limit: int = 25) -> list[BaseModel]:
    """Families for an autocomplete box: those whose id, name or an alias starts with what was
    typed (by spelling key), then those that contain it; all of them, in order, for nothing typed."""
    key = spelling_key(typed)
    if not key:
        return list(BASE_MODELS[:limit])
    starts: list[BaseModel] = []
    contains: list[BaseModel] = []
    for model in BASE_MODELS:
        keys = [spelling_key(s) for s in (model.id, model.name, *model.aliases)]
        if any(k.startswith(key) for k in keys):
            starts.append(model)
        elif any(key in k for k in keys):
            contains.append(model)
    return (starts + contains)[:limit]
