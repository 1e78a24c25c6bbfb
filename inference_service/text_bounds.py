"""Every text field of a request is bounded before the handler runs: a prompt or a user id of
megabytes would otherwise be lower-cased, split and stored per match on the event loop, with
only gRPC's message size as a limit."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from findlora_client.links import MAX_LINK_CHARS
from findlora_client.protocol import MAX_TEXT_CHARS
from inference_service.errors import InvalidArgument

MAX_TEXT = MAX_TEXT_CHARS  # characters of a prompt, a name, a note, a user id (CLIP reads 77 tokens)
MAX_URL = MAX_LINK_CHARS  # a page link, or a field that may hold one
MAX_ENTRIES = 100  # strings in one repeated field (trigger words)
# Fields longer than text: a signed download link carries its token in the query (a few
# thousand characters with a cloud session token); `lora` may name a LoRA by its page link.
FIELD_LIMITS = {"source_url": 8192, "page_url": MAX_URL, "lora": MAX_URL}


def check_text_bounds(message: object, prefix: str = "") -> None:
    """InvalidArgument naming the first string field (nested ones too) over its bound."""
    if not isinstance(message, Message):
        return
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                check_text_bounds(item, name + ".")
        elif field.type == FieldDescriptor.TYPE_STRING:
            texts = list(value) if field.is_repeated else [value]
            if len(texts) > MAX_ENTRIES:
                raise InvalidArgument(f"{name} has {len(texts)} entries; at most {MAX_ENTRIES} are accepted")
            limit = FIELD_LIMITS.get(field.name, MAX_TEXT)
            longest = max(map(len, texts), default=0)
            if longest > limit:
                raise InvalidArgument(f"{name} is {longest} characters long; at most {limit} are accepted")
