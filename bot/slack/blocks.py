"""Block Kit for results, review cards, prompts and modals. The paging state is written into the
message itself (a context block with the page ref), so reactions and buttons survive restarts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.core.flags import evidence_text, status_label
from bot.core.paging import result_footer
from bot.core.rendering import REMOVED_PAGE, ResultsPage
from bot.slack.identity import user_id_of
from findlora_client.protocol import MAX_NOTE_CHARS
from protos import findlora_pb2 as pb

Block = dict[str, Any]

REF_BLOCK = "findlora_ref"
MORE_BLOCK = "findlora_more"
ACTION_MORE = "findlora_more"
ACTION_APPROVE = "findlora_flag_approve"
ACTION_DISMISS = "findlora_flag_dismiss"
REGISTER_VIEW = "findlora_register"
FLAG_VIEW = "findlora_flag"
FLAG_REQUEST_EVENT = "findlora_flag_request"
FLAG_SENT_EVENT = "findlora_flag_sent"
REACTION_HINT = "React :arrow_right: for more results, :+1:/:-1: to rate the first one."


def escape(text: str) -> str:
    """Slack mrkdwn control characters; user and catalog text must not form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str) -> str:
    """The core writes Discord-style **bold**; Slack's bold is *single*."""
    return text.replace("**", "*")


def _section(text: str, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
    if block_id:
        block["block_id"] = block_id
    return block


def _context(text: str, block_id: str | None = None) -> Block:
    block: Block = {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}
    if block_id:
        block["block_id"] = block_id
    return block


def _link(url: str, label: str) -> str:
    label = escape(label).replace("|", "¦")
    if not url.startswith(("https://", "http://")):
        return label
    # A raw < > or | would end the link early, and what follows would be read as markup
    # (<!channel>, another link): percent-encode them, escape & as Slack asks.
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{label}>"


def results_text(page: ResultsPage) -> str:
    """The notification fallback of a results message."""
    return page.footer.split(" · ref ")[0]


def results_blocks(page: ResultsPage) -> list[Block]:
    intro = (
        f"*Pseudo-prompt:* `{escape(page.pseudo_prompt)}`"
        if page.pseudo_prompt
        else "Ranked by style distance."
    )
    blocks: list[Block] = [_section(f"{intro}\n{REACTION_HINT}")]
    for card in page.cards:
        lines = [
            f"*#{card.rank} {_link(card.url, card.title)}*" + (" 🔞" if card.nsfw else ""),
            f"Base model: {escape(card.base_model or 'unknown')} · Score: {card.score_text}",
        ]
        if card.suggested_prompt:
            lines.append(f"Suggested prompt:\n```{escape(card.suggested_prompt)}```")
        blocks += [{"type": "divider"}, _section("\n".join(lines))]
    if not page.cards:
        blocks.append(_section(REMOVED_PAGE))
    first = page.cards[0].lora_id if page.cards else 0
    blocks.append(_context(result_footer(page.ref, page.total, first), REF_BLOCK))
    if page.has_next:
        blocks.append(
            {
                "type": "actions",
                "block_id": MORE_BLOCK,
                "elements": [
                    {
                        "type": "button",
                        "action_id": ACTION_MORE,
                        "text": {"type": "plain_text", "text": "More"},
                        "value": page.ref.encode(),
                    }
                ],
            }
        )
    return blocks


def ref_text(blocks: Iterable[Mapping[str, Any]]) -> str | None:
    """The page ref context of one of our results messages (None for any other message)."""
    for block in blocks:
        if block.get("block_id") == REF_BLOCK:
            elements = block.get("elements") or []
            return str(elements[0].get("text", "")) if elements else None
    return None


def has_more(blocks: Iterable[Mapping[str, Any]]) -> bool:
    return any(block.get("block_id") == MORE_BLOCK for block in blocks)


def paged_blocks(blocks: Sequence[Mapping[str, Any]]) -> list[Block]:
    """The same results once their next page is posted: the More button becomes a pointer, which
    also stops a second ➡️ from posting that page again."""
    kept = [dict(block) for block in blocks if block.get("block_id") != MORE_BLOCK]
    return [*kept, _context("More results below in this thread.")]


def transfers_comment(page: ResultsPage) -> str:
    return (
        f"Sample transfers of results {page.ref.offset + 1}–{page.ref.offset + len(page.cards)}: "
        "each LoRA's reference images nearest your image."
    )


# --- lookalike flags ---------------------------------------------------------------------------


def _person(key: str) -> str:
    user_id = user_id_of(key)
    return f"<@{user_id}>" if user_id else escape(key)


def review_blocks(flag: pb.Flag, *, allow_nsfw: bool) -> list[Block]:
    fields = [f"*Reporter:* {_person(flag.reporter)}", f"*Status:* {status_label(flag)}"]
    if flag.reviewer:
        fields.append(f"*Reviewer:* {_person(flag.reviewer)}")
    blocks: list[Block] = [
        _section(f"*Lookalike report:* {escape(flag.lora_name)} (`{escape(flag.slug)}`)"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        _section(f"*Evidence:* {mrkdwn(evidence_text(flag, allow_nsfw=allow_nsfw))}"),
    ]
    if flag.note:
        blocks.append(_section(f"*Note:* {escape(flag.note[:1500])}"))
    blocks.append(_context(f"flag {flag.flag_id}"))
    if flag.status == pb.FLAG_STATUS_OPEN:
        blocks.append(
            {
                "type": "actions",
                "block_id": "findlora_review",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ACTION_APPROVE,
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Approve (take down)"},
                        "value": flag.flag_id,
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Take the LoRA down?"},
                            "text": {"type": "plain_text", "text": "A takedown is final."},
                            "confirm": {"type": "plain_text", "text": "Take down"},
                            "deny": {"type": "plain_text", "text": "Cancel"},
                        },
                    },
                    {
                        "type": "button",
                        "action_id": ACTION_DISMISS,
                        "text": {"type": "plain_text", "text": "Dismiss"},
                        "value": flag.flag_id,
                    },
                ],
            }
        )
    return blocks


def review_text(flag: pb.Flag) -> str:
    return f"Lookalike report about {flag.slug}: {status_label(flag)}"


def flag_request_text(lora: str) -> str:
    return (
        f"Reply in this thread with up to 3 images of your own artwork to report `{escape(lora)}` "
        "as a lookalike. The moderators see the images, your note and the evidence."
    )


# --- modals ------------------------------------------------------------------------------------


def _input(
    block_id: str,
    label: str,
    *,
    multiline: bool = False,
    optional: bool = False,
    hint: str = "",
    max_length: int = 1000,
) -> Block:
    """A text field that stops at what the service accepts (Slack's own cap is 3,000), so a long
    entry is cut while typing instead of refused after the modal has closed."""
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": {
            "type": "plain_text_input",
            "action_id": "value",
            "multiline": multiline,
            "max_length": max_length,
        },
    }
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def _modal(callback_id: str, title: str, submit: str, blocks: list[Block]) -> Block:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def register_modal() -> Block:
    return _modal(
        REGISTER_VIEW,
        "Register a LoRA",
        "Register",
        [
            _input("url", "Link to the .safetensors file", hint="https only", max_length=3000),
            _input("name", "Display name"),
            _input(
                "base_model",
                "Base model",
                optional=True,
                hint="When the file does not say: SD 1.5, SDXL, Pony, Illustrious, NoobAI, ... "
                "(any common spelling)",
            ),
            _input("trigger_words", "Trigger words", optional=True, hint="comma-separated"),
        ],
    )


def flag_modal() -> Block:
    return _modal(
        FLAG_VIEW,
        "Report a lookalike",
        "Next",
        [
            _input("lora", "LoRA link or slug", max_length=2048),
            _input(
                "note", "Note for the moderators", multiline=True, optional=True, max_length=MAX_NOTE_CHARS
            ),
        ],
    )


def submitted_values(view: Mapping[str, Any]) -> dict[str, str]:
    """The text of every input of a submitted modal, by block id."""
    values = (view.get("state") or {}).get("values") or {}
    return {
        block_id: str((inputs.get("value") or {}).get("value") or "").strip()
        for block_id, inputs in values.items()
    }
