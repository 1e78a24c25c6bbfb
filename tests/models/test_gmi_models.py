"""The real CLIP / text / caption loading code paths, on tiny random models saved to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inference_service.models.captioner import BlipCaptioner
from inference_service.models.clip import ClipEncoder, MiniLmTextEncoder
from tests.helpers.tiny_models import TINY_CLIP, save_tiny_blip, save_tiny_clip

IMAGES = [Image.new("RGB", (64, 48), (200, 10, 10)), Image.new("L", (40, 40), 90)]


def test_clip_checkpoint_is_what_gets_loaded(tmp_path: Path) -> None:
    config_dir, first = save_tiny_clip(tmp_path / "a", seed=0)
    _, other = save_tiny_clip(tmp_path / "b", seed=1)
    a = ClipEncoder(TINY_CLIP, str(first), config_dir=config_dir, batch_size=1)
    again = ClipEncoder(TINY_CLIP, str(first), config_dir=config_dir)
    b = ClipEncoder(TINY_CLIP, str(other), config_dir=config_dir)
    features = a.encode_images(IMAGES)  # batch size 1: two batches
    assert features.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(features, again.encode_images(IMAGES), atol=1e-6)
    assert not np.allclose(features, b.encode_images(IMAGES), atol=1e-3)
    texts = a.encode_texts(["a cat", "a city street"])
    assert texts.shape == (2, 16)
    assert a.label == "open_clip:findlora-tiny-clip@tiny-clip.safetensors"


def test_blip_captions_from_a_local_directory(tmp_path: Path) -> None:
    captioner = BlipCaptioner(str(save_tiny_blip(tmp_path / "blip")), max_new_tokens=5, batch_size=1)
    captions = captioner.caption(IMAGES)
    assert len(captions) == 2
    assert all(isinstance(c, str) and len(c.split()) <= 5 for c in captions)
    assert captioner.caption(IMAGES[:1]) == captions[:1]  # greedy: deterministic


def test_minilm_fallback_is_a_real_sentence_encoder() -> None:
    encoder = MiniLmTextEncoder()
    e = encoder.encode_texts(["a photo of a cat", "a kitten asleep on a sofa", "a busy city street at night"])
    assert e.shape == (3, 384)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
