"""Prompt-conditioned style zoo: the GMI variant of the style zoo (docs/design.md 8, issue 5).

Each "LoRA" is a zoo style (lookalike pairs included) that serves some subjects well and others
barely: on its `strong` categories it applies the style fully, on the others it blends the style
into the untouched content at a low strength (as a LoRA trained on portraits does little to a
street). Its spec holds images it generated for every platform prompt (one prompt per content
category); its references restyle the sample set fully (the empty-prompt transfer of the style
branch). A query is a new instance (another crop, face or scene) of a known category, rendered
by its LoRA as that LoRA renders the category; the query's pseudo-prompt comes from an ORACLE
captioner stand-in: a fixed caption of the true category, worded unlike the platform prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm import tqdm  # type: ignore[import-untyped]

from lab.zoo.content import _crop_photo, _face, _photo, draw_scene
from lab.zoo.style_ops import StyleSpec, apply_style
from lab.zoo.style_zoo import zoo_styles


@dataclass(frozen=True)
class Category:
    prompt: str  # the platform prompt the spec images are generated from
    oracle_caption: str  # what the oracle captioner says for a query of this category
    source: str  # "photo:<name>", "face" or "scene"


CATEGORIES: tuple[Category, ...] = (
    Category("a portrait photo of a person", "a close-up of someone's face", "face"),
    Category("a photo of a cat", "a tabby kitten staring at the camera", "photo:chelsea"),
    Category("an astronaut in a space suit", "a nasa astronaut posing with a flag", "photo:astronaut"),
    Category("a cup of coffee", "an espresso mug on a saucer", "photo:coffee"),
    Category("old coins on a table", "a collection of metal coins", "photo:coins"),
    Category("a horse", "the silhouette of a pony", "photo:horse"),
    Category("a rocket on the launch pad", "a space shuttle before lift-off", "photo:rocket"),
    Category("a man with a camera", "a photographer standing by a tripod", "photo:camera"),
    Category("a wall clock", "a clock face showing the time", "photo:clock"),
    Category("a landscape with sky and hills", "a simple drawing of a countryside view", "scene"),
)
WEAK_STRENGTH = (0.15, 0.4)  # how much of the style a LoRA puts on subjects it does not serve


@dataclass
class PromptZoo:
    slugs: list[str]
    categories: tuple[Category, ...]
    strong: list[set[int]]  # per LoRA: categories it serves well
    references: list[list[Image.Image]]  # per LoRA: the sample set restyled (style branch)
    spec_images: list[list[Image.Image]]  # per LoRA: n_per_prompt images per category
    spec_prompts: list[list[int]]  # per LoRA: the category (platform prompt id) of each spec image
    queries: dict[str, list[tuple[Image.Image, int, int]]]  # split -> (image, LoRA, category)


def _content(category: Category, rng: np.random.Generator, size: int, part: int, index: int) -> Image.Image:
    """Instance `index` of a category; part 0 (spec), 1 (samples) and 2 (queries) never share one."""
    if category.source == "face":
        return _face(part * 60 + index % 60, rng, size)  # lfw_subset has 200 faces: 3 disjoint ranges
    if category.source == "scene":
        return draw_scene(np.random.default_rng([4242, part, index]), size)
    return _crop_photo(_photo(category.source.split(":", 1)[1]), rng, size)


def _render(spec: StyleSpec, strength: float, image: Image.Image, rng: np.random.Generator) -> Image.Image:
    styled = apply_style(spec, image, rng)
    return styled if strength >= 1.0 else Image.blend(image, styled, strength)


def generate_prompt_zoo(
    *,
    n_styles: int = 100,
    n_samples: int = 12,
    n_per_prompt: int = 2,
    n_queries: int = 40,
    n_strong: int = 4,
    seed: int = 0,
    size: int = 128,
    progress: bool = True,
) -> PromptZoo:
    rng = np.random.default_rng([seed, 77])
    styles = zoo_styles(n_styles, "eval", seed)
    slugs = [f"pz-{i:04d}-{s.primary}" for i, s in enumerate(styles)]
    k = len(CATEGORIES)
    strong = [set(rng.choice(k, size=n_strong, replace=False).tolist()) for _ in styles]
    weak = rng.uniform(*WEAK_STRENGTH, size=(n_styles, k))

    def strength(lora: int, category: int) -> float:
        return 1.0 if category in strong[lora] else float(weak[lora, category])

    samples = [_content(CATEGORIES[i % k], rng, size, 1, i) for i in range(n_samples)]
    bar = tqdm(total=n_styles * (n_samples + k * n_per_prompt), desc="prompt zoo", disable=not progress)
    references, spec_images, spec_prompts = [], [], []
    for lora, spec in enumerate(styles):
        references.append([apply_style(spec, s, rng) for s in samples])
        images, prompts = [], []
        for category in range(k):
            for n in range(n_per_prompt):
                content = _content(CATEGORIES[category], rng, size, 0, lora * n_per_prompt + n)
                images.append(_render(spec, strength(lora, category), content, rng))
                prompts.append(category)
        spec_images.append(images)
        spec_prompts.append(prompts)
        bar.update(n_samples + k * n_per_prompt)
    bar.close()

    queries: dict[str, list[tuple[Image.Image, int, int]]] = {}
    for split_index, split in enumerate(("validation", "test")):
        split_rng = np.random.default_rng([seed, 88, split_index])
        loras = split_rng.choice(n_styles, size=min(n_queries, n_styles), replace=False)
        items = []
        for number, lora in enumerate(loras.tolist()):
            category = int(split_rng.integers(k))
            content = _content(CATEGORIES[category], split_rng, size, 2, split_index * 1000 + number)
            items.append(
                (_render(styles[lora], strength(lora, category), content, split_rng), lora, category)
            )
        queries[split] = items
    return PromptZoo(slugs, CATEGORIES, strong, references, spec_images, spec_prompts, queries)
