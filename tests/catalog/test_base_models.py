"""Base-model names as communities write them: the alias table, import of a catalog that uses each
listed spelling, and search filters by family, through the real service and embedded database."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.clients import Role
from findlora_client import QueryImage
from findlora_client.base_models import (
    ALIASES,
    BASE_MODELS,
    BY_ID,
    canonical,
    filter_group,
    resolve,
    spelling_key,
    suggestions,
)
from inference_service.catalog.format import LoraEntry, lora_toml, read_catalog
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import start_service
from tests.helpers.catalogs import write_catalog
from tests.helpers.service import issue_token, service_client

# The spellings the issue names, as lora.toml files write them, and the family each must become.
LISTED = {
    "SD 1.5": "sd1",
    "sd15": "sd1",
    "SD1.5": "sd1",
    "1.5": "sd1",
    "SDXL 1.0": "sdxl",
    "sdxl_base": "sdxl",
    "Pony": "pony",
    "Pony Diffusion V6 XL": "pony",
    "Illustrious": "illustrious",
    "Illustrious-XL": "illustrious",
    "NoobAI": "noobai",
    "NoobAI-XL": "noobai",
    "Flux.1 D": "flux1-dev",
    "Flux.1 Dev": "flux1-dev",
    "Flux.1 S": "flux1-schnell",
    "SD 3.5": "sd35-large",
    "SD 3.5 Large": "sd35-large",
    "SD 3.5 Medium": "sd35-medium",
    "sd2": "sd2",
    "sd3": "sd3",
    "flux": "flux",
    "other": "other",
    "PixArt-Σ": "pixart-sigma",
    "Hunyuan 1": "hunyuan-dit",
}
UNKNOWN = "Pony V7 (AuraFlow)"


@pytest.mark.parametrize(("spelling", "family"), sorted(LISTED.items()))
def test_listed_spellings_resolve_to_their_family(spelling: str, family: str) -> None:
    assert resolve(spelling).id == family
    assert resolve(spelling).known
    # Case, spaces and punctuation do not matter.
    for variant in (
        spelling.upper(),
        spelling.lower(),
        f"  {spelling.replace(' ', '_')} ",
        spelling.replace(".", " "),
    ):
        assert canonical(variant) == family


def test_every_alias_in_the_table_names_one_family_and_resolving_is_idempotent() -> None:
    for model in BASE_MODELS:
        for spelling in (model.id, model.name, *model.aliases):
            assert canonical(spelling) == model.id, spelling
        assert canonical(canonical(model.name)) == model.id
        for other in model.loads_with:  # compatibility goes both ways
            assert model.id in BY_ID[other].loads_with
    assert len(ALIASES) > 3 * len(BASE_MODELS)


def test_unknown_names_are_kept_as_other_with_a_warning() -> None:
    resolved = resolve(UNKNOWN)
    assert (resolved.id, resolved.known) == ("other:pony-v7-auraflow", False)
    assert "not a known family" in resolved.warning
    assert "other:pony-v7-auraflow" in resolved.warning
    assert resolve(resolved.id).id == resolved.id  # a stored other:<name> stays as it is
    assert resolve(resolved.id).known
    assert canonical(resolved.id) == resolved.id
    assert canonical("") == ""


def test_filter_groups_state_what_loads_where() -> None:
    assert filter_group("SDXL 1.0").ids == ("sdxl",)  # derivatives show their style only on their own
    assert filter_group("Pony").ids == ("pony",)
    assert set(filter_group("Illustrious").ids) == {"illustrious", "noobai"}
    assert set(filter_group("Flux.1 S").ids) == {"flux1-schnell", "flux1-dev", "flux"}
    assert filter_group("other").others
    assert not filter_group("sd1").others
    assert filter_group("").ids == ()


def test_suggestions_for_a_typed_prefix() -> None:
    assert [m.id for m in suggestions("flux.1 d")] == ["flux1-dev"]
    assert [m.id for m in suggestions("SD 1.")][:1] == ["sd1"]
    assert "noobai" in [m.id for m in suggestions("noob")]
    assert len(suggestions("")) == min(25, len(BASE_MODELS))
    assert suggestions("zzzz") == []
    assert spelling_key("Flux.1 [dev]") == "flux1dev"


def spelled_catalog(root: Path) -> tuple[Path, dict[str, str]]:
    """A catalog with one LoRA per listed spelling (and one unknown name); returns slug -> family."""
    spellings = [*LISTED, UNKNOWN]
    catalog = write_catalog(root, n_loras=len(spellings), n_samples=3)
    families = {}
    for style, spelling in enumerate(spellings):
        slug = f"style-{style:02d}"
        entry = LoraEntry(slug=slug, name=f"Style {style}", base_model=spelling)
        (catalog / "loras" / slug / "lora.toml").write_text(lora_toml(entry))
        families[slug] = LISTED.get(spelling, "other:pony-v7-auraflow")
    return catalog, families


def test_catalog_reading_normalises_and_warns(tmp_path: Path) -> None:
    catalog_dir, families = spelled_catalog(tmp_path / "catalog")
    catalog = read_catalog(catalog_dir)
    assert {slug: entry.base_model for slug, entry in catalog.loras.items()} == families
    assert len(catalog.warnings) == 1
    assert UNKNOWN in catalog.warnings[0]


@pytest.mark.db
async def test_import_with_every_spelling_then_filter_by_family(tmp_path: Path, settings: Settings) -> None:
    catalog, families = spelled_catalog(tmp_path / "catalog")
    runtime = await open_runtime(settings)
    try:
        report = await import_catalog(catalog, runtime.db, runtime.blobs, runtime.embedder)
    finally:
        await runtime.close()
    assert len(report.imported) == len(families)
    assert [w for w in report.warnings if "other:pony-v7-auraflow" in w] == report.warnings != []

    # One search per spelling, back to back: lift the per-requester rate limit for this test.
    service = await start_service(settings.model_copy(update={"rate_limit_burst": 100}), "127.0.0.1:0")
    seen: dict[str, set[str]] = {}
    try:
        token = await issue_token(service, Role.SEARCH)
        query = QueryImage((catalog / "loras" / "style-00" / "references" / "s00.png").read_bytes(), "q.png")
        async with service_client(service, token) as client:
            for spelling in [*LISTED, UNKNOWN, ""]:
                response = await client.search([query], top_k=50, base_model=spelling)
                found = {m.slug: m.base_model for m in response.matches}
                assert all(family == families[slug] for slug, family in found.items())
                group = filter_group(spelling)
                assert set(found) == {
                    slug
                    for slug, family in families.items()
                    if not group.ids or family in group.ids or (group.others and family.startswith("other:"))
                }, spelling
                seen[spelling] = set(found.values())
    finally:
        await service.stop(0.5)
    # The filter semantics of docs/design.md, on real rows.
    assert seen["SD 1.5"] == seen["sd15"] == {"sd1"}
    assert seen["SDXL 1.0"] == seen["sdxl_base"] == {"sdxl"}
    assert seen["Pony"] == seen["Pony Diffusion V6 XL"] == {"pony"}
    assert seen["Illustrious"] == seen["NoobAI-XL"] == {"illustrious", "noobai"}
    assert seen["Flux.1 D"] == seen["Flux.1 S"] == seen["flux"] == {"flux1-dev", "flux1-schnell", "flux"}
    assert seen["SD 3.5"] == {"sd35-large"}
    assert seen["sd3"] == {"sd3"}
    assert seen["other"] == {"other", "other:pony-v7-auraflow"}
    assert seen[UNKNOWN] == {"other:pony-v7-auraflow"}
    assert seen[""] == set(families.values())
