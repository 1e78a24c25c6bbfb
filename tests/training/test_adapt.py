"""Adapting the style encoder to a catalog: the reference set from the database, the held-out split,
the keep/refuse decision both ways, and resuming after an interruption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from db.database import Database
from inference_service.blobs import BlobStore
from inference_service.catalog.importer import import_catalog
from inference_service.models.style_encoder import (
    EncoderConfig,
    StyleEmbedder,
    StyleEncoder,
    encoder_fingerprint,
    untrained_encoder,
)
from inference_service.training.adapt import (
    AdaptConfig,
    AdaptError,
    adapt_encoder,
    catalog_reference_set,
    split_samples,
)
from inference_service.training.references import ReferenceSet, build_reference_set, load_reference_set
from lab.zoo.style_zoo import generate_zoo
from tests.helpers.catalogs import write_catalog

# dim 128: the database's vector column; everything else as small as the trainer tests' encoder.
TINY = EncoderConfig(
    widths=(8, 16), dim=128, input_size=32, stem_width=4, hist_bins=4, joint_bins=3, hidden=32
)


def _start() -> StyleEncoder:
    return untrained_encoder(TINY)


@pytest.fixture(scope="module")
def zoo_refs(tmp_path_factory: pytest.TempPathFactory) -> ReferenceSet:
    """Procedural styles an untrained encoder ranks only part-way right (validation MRR ~0.75)."""
    root = tmp_path_factory.mktemp("adapt") / "zoo"
    generate_zoo(root, n_styles=12, n_samples=8, split="train", seed=2, progress=False, size=48)
    return load_reference_set(root, TINY.input_size, progress=False)


async def test_catalog_reference_set_reads_the_database_and_blob_store(db: Database, tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path / "catalog", n_loras=6, n_samples=5, unchanged_sample=("style-01", "s02")
    )
    blobs = BlobStore(tmp_path / "blobs")
    await import_catalog(catalog, db, blobs, StyleEmbedder(_start(), "tiny"))
    async with db.connection() as conn:
        await conn.execute("UPDATE loras SET status = 'taken_down' WHERE slug = 'style-05'")
        await conn.execute("UPDATE loras SET status = 'hidden' WHERE slug = 'style-04'")
    refs = await catalog_reference_set(db, blobs, TINY.input_size, progress=False)
    assert refs.slugs == [f"style-{i:02d}" for i in range(5)]  # hidden stays, taken down goes
    assert refs.sample_ids == [f"s{i:02d}" for i in range(5)]
    assert [block.shape for block in refs.blocks] == [(24, 3, 32, 32)]  # the valid references only
    assert refs.blocks[0].dtype == torch.uint8
    assert refs.report.dropped == 1  # the unchanged transfer, as the importer's cleansing decided
    assert refs.report.transfers == 25
    assert not bool(refs.valid[1, 2])
    assert int(refs.valid.sum()) == 24
    # The same tensors as the catalog directory gives (one builder for both loaders).
    from_dir = load_reference_set(catalog, TINY.input_size, progress=False)
    assert torch.equal(from_dir.valid[:5], refs.valid)
    loras, samples = torch.nonzero(refs.valid, as_tuple=True)
    assert torch.equal(from_dir.pick(loras, samples), refs.pick(loras, samples))

    # A catalog too large for memory is adapted on whole LoRAs drawn up to the cap, and says so.
    from inference_service.catalog.adaptation import prepare
    from inference_service.models.active import ActiveEncoder

    encoders = ActiveEncoder(db, blobs, StyleEmbedder(_start(), "tiny"))
    whole = await prepare(db, blobs, encoders, max_references=25)
    assert whole.drawn is None
    assert (whole.references, whole.trainable) == (30, 25)  # the taken-down LoRA is re-embedded only
    drawn = await prepare(db, blobs, encoders, max_references=12)
    assert drawn.refs.n_loras == 2
    assert drawn.refs.report.transfers == 10  # two whole LoRAs: a third would not fit
    assert drawn.drawn == (
        "adapting on 2 LoRAs drawn from the catalog (10 of its 25 references): "
        "FINDLORA_ADAPT_MAX_REFERENCES sets how many fit in memory"
    )
    again = await prepare(db, blobs, encoders, max_references=12)
    assert again.refs.slugs == drawn.refs.slugs  # the same draw every time


def test_split_holds_out_whole_samples() -> None:
    ids = [f"s{i:02d}" for i in range(10)]
    train, held = split_samples(ids, 0.25)
    assert 1 <= len(held) <= 8
    assert not set(train) & set(held)
    assert sorted(train + held) == ids
    assert split_samples(ids, 0.25) == (train, held)
    assert split_samples(ids[:3], 0.9)[1].__len__() == 1  # leaves two to train on
    assert len(split_samples(ids, 0.0)[1]) == 1  # at least one held out
    with pytest.raises(AdaptError, match="at least 3"):
        split_samples(ids[:2], 0.25)


def test_a_growing_catalog_keeps_its_held_out_samples_held_out() -> None:
    """Re-adapting after new imports never validates on a sample an earlier run trained on."""
    ids = [f"sample-{i:03d}" for i in range(120)]
    _, held = split_samples(ids[:80], 0.25)
    train_later, held_later = split_samples(ids, 0.25)
    assert set(held) <= set(held_later)
    assert not set(held) & set(train_later)
    assert 0.15 < len(held_later) / len(ids) < 0.35  # about the asked share


def test_another_seed_validates_on_the_same_held_out_samples(zoo_refs: ReferenceSet, tmp_path: Path) -> None:
    """A run with --seed 1 after one with the default seed: its validation samples must be ones
    the active encoder (adapted with seed 0) never trained on, so the split ignores the seed."""
    runs = [
        adapt_encoder(
            zoo_refs,
            _start(),
            "untrained",
            AdaptConfig(max_steps=1, seed=seed),
            tmp_path / str(seed),
            progress=False,
        )
        for seed in (0, 1)
    ]
    assert runs[0].val_samples == runs[1].val_samples
    assert not set(runs[1].val_samples) & set(runs[0].train_samples)


def test_adapting_an_untrained_encoder_improves_held_out_ranking_and_is_kept(
    zoo_refs: ReferenceSet, tmp_path: Path
) -> None:
    start = _start()
    fingerprint = encoder_fingerprint(start)
    outcome = adapt_encoder(zoo_refs, start, "untrained", AdaptConfig(max_steps=30), tmp_path, progress=False)
    assert outcome.after > outcome.before + 0.01
    assert outcome.kept
    assert outcome.reason.startswith("kept: validation MRR")
    assert f"{outcome.before:.3f} -> {outcome.after:.3f}" in outcome.reason
    assert outcome.steps == 30
    assert not outcome.resumed
    assert outcome.queries == 12 * len(outcome.val_samples)
    assert not set(outcome.train_samples) & set(outcome.val_samples)
    assert encoder_fingerprint(start) == fingerprint  # the starting encoder is left as it was
    assert encoder_fingerprint(outcome.model) != fingerprint
    assert not outcome.model.training
    assert "model" not in outcome.as_dict()
    # The finished run's files wait for the caller (an activation), then go.
    assert sorted(p.name for p in tmp_path.glob("adapt-*")) == sorted(p.name for p in outcome.work_files)
    assert len(outcome.work_files) == 4
    outcome.discard_work_files()
    assert not list(tmp_path.glob("adapt-*"))


def test_a_catalog_whose_loras_look_alike_is_refused(tmp_path: Path) -> None:
    # Every LoRA restyles each sample identically: no encoder can rank one above another, so
    # validation stays at chance (ties count half) before and after.
    catalog = write_catalog(tmp_path / "catalog", n_loras=6, n_samples=6, shared_style=3)
    refs = load_reference_set(catalog, TINY.input_size, progress=False)
    outcome = adapt_encoder(
        refs, _start(), "untrained", AdaptConfig(max_steps=10), tmp_path / "w", progress=False
    )
    chance = 1 / (1 + 5 / 2)
    assert outcome.before == pytest.approx(chance)
    assert outcome.after == pytest.approx(chance)
    assert not outcome.kept
    assert outcome.reason.startswith("refused: validation MRR 0.286 -> 0.286")
    assert "untrained stays" in outcome.reason


def test_an_interrupted_run_resumes_to_the_same_end(zoo_refs: ReferenceSet, tmp_path: Path) -> None:
    config = AdaptConfig(max_steps=12, threads=2)
    torch.set_num_threads(1)
    straight = adapt_encoder(zoo_refs, _start(), "untrained", config, tmp_path / "a", progress=False)
    assert torch.get_num_threads() == 1  # restored
    stopped = adapt_encoder(
        zoo_refs, _start(), "untrained", config, tmp_path / "b", progress=False, stop_after_step=5
    )
    assert (stopped.steps, stopped.kept, stopped.resumed) == (5, False, False)
    assert stopped.reason.startswith("not kept: interrupted at step 5 of 12")
    assert list((tmp_path / "b").glob("*.ckpt.safetensors"))
    resumed = adapt_encoder(zoo_refs, _start(), "untrained", config, tmp_path / "b", progress=False)
    assert resumed.resumed
    assert resumed.steps == straight.steps == 12
    assert resumed.after == pytest.approx(straight.after)
    assert encoder_fingerprint(resumed.model) == encoder_fingerprint(straight.model)  # bit-exact


def test_too_small_catalogs_are_refused_with_a_reason(tmp_path: Path) -> None:
    empty = build_reference_set([], [], iter(()), 32, cleansing_threshold=None, progress=False)
    with pytest.raises(AdaptError, match="the catalog is empty: import one first"):
        adapt_encoder(empty, _start(), "untrained", AdaptConfig(max_steps=2), tmp_path / "w", progress=False)
    one_lora = load_reference_set(write_catalog(tmp_path / "one", n_loras=1, n_samples=5), 32, progress=False)
    with pytest.raises(AdaptError, match="1 LoRA"):
        adapt_encoder(
            one_lora, _start(), "untrained", AdaptConfig(max_steps=2), tmp_path / "w", progress=False
        )
    two_samples = load_reference_set(
        write_catalog(tmp_path / "two", n_loras=4, n_samples=2), 32, progress=False
    )
    with pytest.raises(AdaptError, match="2 sample"):
        adapt_encoder(
            two_samples, _start(), "untrained", AdaptConfig(max_steps=2), tmp_path / "w", progress=False
        )


def test_the_budget_keeps_back_the_time_to_reembed_the_catalog(
    zoo_refs: ReferenceSet, tmp_path: Path
) -> None:
    # The activation after a kept run re-embeds every reference: inside --max-minutes, like the
    # rest. A catalog far too large to re-embed in the budget leaves no time to train.
    config = AdaptConfig(max_minutes=1.0, reembed=10**7)
    with pytest.raises(AdaptError, match="re-embed 10000000 references"):
        adapt_encoder(zoo_refs, _start(), "untrained", config, tmp_path / "w", progress=False)


def test_a_finished_run_whose_activation_was_interrupted_is_not_trained_again(
    zoo_refs: ReferenceSet, tmp_path: Path
) -> None:
    config = AdaptConfig(max_steps=12)
    first = adapt_encoder(zoo_refs, _start(), "untrained", config, tmp_path, progress=False)
    # The activation was stopped half-way: nothing discarded the work files.
    again = adapt_encoder(zoo_refs, _start(), "untrained", config, tmp_path, progress=False)
    assert again.resumed
    assert (again.steps, again.kept) == (12, first.kept)
    assert encoder_fingerprint(again.model) == encoder_fingerprint(first.model)


def test_a_new_budget_resumes_and_files_no_run_can_resume_are_removed(
    zoo_refs: ReferenceSet, tmp_path: Path
) -> None:
    stopped = adapt_encoder(
        zoo_refs,
        _start(),
        "untrained",
        AdaptConfig(max_steps=12, max_minutes=30),
        tmp_path,
        progress=False,
        stop_after_step=5,
    )
    assert not stopped.kept
    # The budget changes only the step count, which the plan keeps: the run goes on.
    resumed = adapt_encoder(
        zoo_refs, _start(), "untrained", AdaptConfig(max_steps=12, max_minutes=5), tmp_path, progress=False
    )
    assert resumed.resumed
    assert resumed.steps == 12
    left = {p.name for p in tmp_path.glob("adapt-*")}
    assert left == {p.name for p in resumed.work_files}
    # Another seed is another run: the old run's files can never resume, so they go.
    other = adapt_encoder(
        zoo_refs, _start(), "untrained", AdaptConfig(max_steps=3, seed=1), tmp_path, progress=False
    )
    assert not other.resumed
    assert {p.name for p in tmp_path.glob("adapt-*")} == {p.name for p in other.work_files}
    assert not left & {p.name for p in other.work_files}


def test_one_adaptation_at_a_time_per_work_directory(zoo_refs: ReferenceSet, tmp_path: Path) -> None:
    from filelock import FileLock

    tmp_path.mkdir(exist_ok=True)
    with FileLock(tmp_path / "adapt.lock"), pytest.raises(AdaptError, match="another adaptation is running"):
        adapt_encoder(zoo_refs, _start(), "untrained", AdaptConfig(max_steps=2), tmp_path, progress=False)
    assert adapt_encoder(zoo_refs, _start(), "untrained", AdaptConfig(max_steps=2), tmp_path, progress=False)
