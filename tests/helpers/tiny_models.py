"""Tiny random CLIP and BLIP built from configs, saved to disk, for the real loading code paths.

No pretrained weights can be fetched here: these exercise `ClipEncoder` (open_clip config dir +
.safetensors checkpoint) and `BlipCaptioner` (transformers `from_pretrained` on a directory).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_CLIP = "findlora-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    # The bundled SimpleTokenizer needs the full 49408 vocabulary.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def save_tiny_clip(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write <dir>/configs/findlora-tiny-clip.json and a random checkpoint; returns both paths."""
    import open_clip  # type: ignore[import-untyped]
    from safetensors.torch import save_file

    config_dir = directory / "configs"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(str(config_dir))
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    checkpoint = directory / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    return config_dir, checkpoint


def save_tiny_blip(directory: Path, seed: int = 0) -> Path:
    """A 48k-parameter BLIP captioner with a character vocabulary, saved with save_pretrained."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    directory.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    words = [*specials, *"abcdefghijklmnopqrstuvwxyz", "a", "photo", "of", "cat", "street", "painting"]
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(words)) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]")
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    vocab = len(tokenizer)
    config = BlipConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 32,
            "encoder_hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 64,
            "bos_token_id": tokenizer.convert_tokens_to_ids("[DEC]"),
            "sep_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
