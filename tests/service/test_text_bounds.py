"""Text in a request is bounded before any work: a prompt of megabytes would be split and stored
for every match on the event loop, with gRPC's message size as the only limit."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from findlora_client.client import FindLoraClient, QueryImage, ServiceCallError
from findlora_client.protocol import Reason
from inference_service.errors import InvalidArgument
from inference_service.text_bounds import MAX_ENTRIES, MAX_TEXT, MAX_URL, check_text_bounds
from protos import findlora_pb2 as pb


def test_every_string_field_nested_ones_too_is_bounded() -> None:
    check_text_bounds(pb.SearchRequest(prompt="p" * MAX_TEXT, requested_by="u" * MAX_TEXT))
    with pytest.raises(
        InvalidArgument, match=f"prompt is {MAX_TEXT + 1} characters long; at most {MAX_TEXT}"
    ):
        check_text_bounds(pb.SearchRequest(prompt="p" * (MAX_TEXT + 1)))
    with pytest.raises(InvalidArgument, match=r"images\.filename is"):
        check_text_bounds(pb.SearchRequest(images=[pb.Image(data=b"x", filename="f" * 5000)]))
    lora = pb.LoraMetadata(page_url="https://example.org/" + "a" * (MAX_URL - 30))
    check_text_bounds(pb.RegisterLoraRequest(metadata=lora))  # a link may be longer than a name
    check_text_bounds(pb.SetLoraStatusRequest(lora=lora.page_url))  # a LoRA named by its page
    signed = "https://example.org/a.safetensors?X-Amz-Security-Token=" + "t" * 3000
    check_text_bounds(pb.RegisterLoraRequest(source_url=signed))
    with pytest.raises(InvalidArgument, match="source_url is"):
        check_text_bounds(pb.RegisterLoraRequest(source_url=signed + "t" * 8192))
    with pytest.raises(InvalidArgument, match=r"metadata\.trigger_words has 101 entries"):
        check_text_bounds(
            pb.RegisterLoraRequest(metadata=pb.LoraMetadata(trigger_words=["w"] * (MAX_ENTRIES + 1)))
        )


@pytest.mark.db
async def test_an_oversized_prompt_is_refused_and_the_service_stays_up(
    client: FindLoraClient, catalog_dir: Path
) -> None:
    data = (catalog_dir / "samples" / "s00.png").read_bytes()
    with pytest.raises(ServiceCallError) as info:
        await client.search([QueryImage(data)], prompt="ab," * 3_000_000)
    assert (info.value.code, info.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT)
    assert f"at most {MAX_TEXT} are accepted" in info.value.message
    assert await client.health() == "SERVING"
