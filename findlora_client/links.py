"""A LoRA's page link as every chat shows it: an http(s) address, or none at all. Checked where a
link enters (registration, catalog import, bulk lists), not where a chat would refuse it."""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_LINK_CHARS = 2048
UNSAFE = '<>|"`'


def page_link_problem(url: str) -> str | None:
    """Why `url` cannot be a page link (None: it can; an empty one means no page)."""
    if not url:
        return None
    if len(url) > MAX_LINK_CHARS:
        return f"page_url is {len(url)} characters long; at most {MAX_LINK_CHARS} are accepted"
    if any(c.isspace() or ord(c) < 32 or c in UNSAFE for c in url):
        # A URL carries them percent-encoded; raw, they end a chat's link markup (Slack's
        # <url|label>) and what follows would be read as the message's own markup.
        return (
            'page_url must not contain spaces, control characters or any of < > | " ` (percent-encode them)'
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. "https://[host/": an unclosed IPv6 bracket
        return f"page_url {url[:80]!r} is not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return f"page_url {url[:80]!r} must be an http(s) address such as https://civitai.com/models/123"
    return None
