"""Fuzz target: image validation must only ever accept or raise ImageRejected.

python fuzz/fuzz_images.py -runs=5000 fuzz/corpus/images   # a few seconds
python fuzz/fuzz_images.py -max_total_time=600             # longer local runs
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from inference_service.imaging import ImageRejected, decode_image


def test_one_input(data: bytes) -> None:
    try:
        image = decode_image(data, max_bytes=1_000_000, max_pixels=4_000_000, name="fuzz")
    except ImageRejected:
        return
    # Whatever is accepted is a fully decoded RGB image within the pixel cap.
    assert image.mode == "RGB"
    assert image.width * image.height <= 4_000_000


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
