"""Search settings that every search would fail on are refused when the service is configured."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inference_service.config import Settings


@pytest.mark.parametrize(
    "setting",
    [
        {"search_ef_search": 1001},  # pgvector refuses hnsw.ef_search above 1000
        {"search_ef_search": 0},
        {"fusion_alpha": 1.5},
        {"fusion_normalisation": "robust-z"},
    ],
)
def test_a_setting_every_search_would_fail_on_is_refused(setting: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=next(iter(setting))):
        Settings(**setting)  # type: ignore[arg-type]


def test_the_bounds_keep_the_defaults_and_the_extremes() -> None:
    Settings(search_ef_search=1000, fusion_alpha=0, fusion_normalisation="robust_z")
    assert Settings().search_ef_search == 800
