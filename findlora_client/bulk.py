"""Lists of LoRAs to register in one go (`findlora lora register-many`, the bots' attached file).

Three formats, told apart by the file name and, failing that, by the content:
- text: one https link or local .safetensors path per line; `#` comments and blank lines are skipped;
- TOML: one `[[lora]]` table per LoRA (url or path, name, slug, base_model, trigger_words, ...);
- JSON: a model host's model-version metadata saved to disk (Civitai-style objects), as a list or
  as {"items": [...]}.

Every entry is checked on its own: a bad one is reported with where it is (line, or JSON index) and
why, and the good ones still go. Nothing here touches the network or the files named.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from findlora_client.base_models import resolve
from findlora_client.links import page_link_problem

TEXT, TOML, JSON = "text", "toml", "json"
TOML_FIELDS = (
    "url",
    "path",
    "name",
    "slug",
    "base_model",
    "trigger_words",
    "license",
    "author",
    "nsfw",
    "page_url",
)
_TOML_HEADER = re.compile(r"^\s*\[\[\s*lora\s*\]\]")
_TOML_LINE = re.compile(r"at line (\d+)")
TOO_DEEP = "too deeply nested to read (brackets inside brackets, thousands of levels deep)"


@dataclass(frozen=True)
class BulkEntry:
    """One LoRA to register; `source` is an http(s) link or a local path as written."""

    where: str  # "line 3", "[4]": what a person looks for in the file
    source: str
    name: str
    slug: str = ""
    base_model: str = ""
    trigger_words: tuple[str, ...] = ()
    license: str = ""
    author: str = ""
    nsfw: bool = False
    page_url: str = ""

    @property
    def is_url(self) -> bool:
        return "://" in self.source


@dataclass(frozen=True)
class BadEntry:
    where: str
    reason: str
    source: str = ""


@dataclass
class ParsedList:
    format: str
    entries: list[BulkEntry] = field(default_factory=list)
    bad: list[BadEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # kept as given, e.g. unknown base models


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def detect_format(filename: str, text: str) -> str:
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix == ".toml":
        return TOML
    if suffix == ".json":
        return JSON
    if suffix in (".txt", ".list", ".lst"):
        return TEXT
    start = text.lstrip()[:1]
    if start in ("[", "{") and not _TOML_HEADER.match(text.lstrip()):
        return JSON
    if any(_TOML_HEADER.match(line) for line in text.splitlines()):
        return TOML
    return TEXT


def parse_list(text: str, filename: str = "") -> ParsedList:
    """All the entries of a list, good and bad; duplicates (same source or slug) are bad after the
    first."""
    text = text.removeprefix("\ufeff")  # a byte-order mark (PowerShell, Notepad) is no entry's text
    kind = detect_format(filename, text)
    parsed = ParsedList(kind)
    {TEXT: _parse_text, TOML: _parse_toml, JSON: _parse_json}[kind](text, parsed)
    _drop_duplicates(parsed)
    return parsed


def default_base_model(parsed: ParsedList, base_model: str) -> None:
    """Give entries that name no base model this one (a text list cannot name one)."""
    family = resolve(base_model)
    if not family.id:
        return
    if not family.known:
        parsed.warnings.append(family.warning)
    parsed.entries = [e if e.base_model else replace(e, base_model=family.id) for e in parsed.entries]


def slugify(text: str) -> str:
    """As the service derives a slug from a name (inference_service.registration.jobs.slugify)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].rstrip("-")


def name_from_source(source: str) -> str:
    """A display name when the list gives none: the file's name without its suffix."""
    path = urlsplit(source).path if "://" in source else source
    stem = PurePosixPath(unquote(path).replace("\\", "/")).stem
    return re.sub(r"[_\s]+", " ", stem).strip()


def check_source(source: str) -> None:
    if not source:
        raise _Bad("no link or path given")
    if any(ch in source for ch in "\r\n\t\0"):
        raise _Bad("the link or path contains control characters")
    if "://" in source:
        try:
            parts = urlsplit(source)
        except ValueError as exc:
            raise _Bad(f"not a valid URL ({exc})") from None
        if parts.scheme == "http":
            raise _Bad("only https download links are accepted")
        if parts.scheme != "https":
            wrong = f"not {parts.scheme}://" if parts.scheme else "nothing comes before ://"
            raise _Bad(f"only https:// download links are accepted, {wrong}")
        if not parts.hostname:
            raise _Bad("not a valid download link (https:// with no usable host)")
        return
    if not source.lower().endswith(".safetensors"):
        raise _Bad(f"{PurePosixPath(source).name} is not a .safetensors file")


def _entry(where: str, source: str, fields: Mapping[str, Any], parsed: ParsedList) -> BulkEntry:
    check_source(source)
    name = _text(fields, "name") or name_from_source(source)
    if not name:
        raise _Bad("no name given and none can be taken from the file name")
    slug = _text(fields, "slug")
    if slug and slug != slugify(slug):
        raise _Bad(f"slug {slug!r} must be lower-case letters, digits and '-'")
    if not (slug or slugify(name)):
        raise _Bad(f"the name {name!r} gives an empty slug; give a slug")
    family = resolve(_text(fields, "base_model"))
    if not family.known:
        parsed.warnings.append(f"{where}: {family.warning}")
    nsfw = fields.get("nsfw", False)
    if not isinstance(nsfw, bool):
        raise _Bad("nsfw must be true or false")
    return BulkEntry(
        where=where,
        source=source,
        name=name,
        slug=slug,
        base_model=family.id,
        trigger_words=_words(fields.get("trigger_words")),
        license=_text(fields, "license"),
        author=_text(fields, "author"),
        nsfw=nsfw,
        page_url=_page_link(fields),
    )


def _page_link(fields: Mapping[str, Any]) -> str:
    url = _text(fields, "page_url")
    if problem := page_link_problem(url):
        raise _Bad(problem)
    return url


def _text(fields: Mapping[str, Any], key: str) -> str:
    value = fields.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{key} must be a string")
    return value.strip()


def _words(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        raise _Bad("trigger_words must be a list of strings (or one comma-separated string)")
    return tuple(word.strip() for word in value if word.strip())


def _add(parsed: ParsedList, where: str, source: str, fields: Mapping[str, Any]) -> None:
    try:
        parsed.entries.append(_entry(where, source, fields, parsed))
    except _Bad as bad:
        parsed.bad.append(BadEntry(where, bad.reason, source))


def _parse_text(text: str, parsed: ParsedList) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        source = re.sub(r"\s#.*$", "", line).strip()  # a trailing comment needs a space before '#'
        if not source or source.startswith("#"):
            continue
        _add(parsed, f"line {number}", source, {})


def _parse_toml(text: str, parsed: ParsedList) -> None:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        parsed.bad.append(
            BadEntry(f"line {found.group(1)}" if found else "the file", f"not valid TOML: {exc}")
        )
        return
    except RecursionError:  # the parser recurses per nested array or inline table
        parsed.bad.append(BadEntry("the file", f"not valid TOML: {TOO_DEEP}"))
        return
    for key in document:
        if key != "lora":
            parsed.bad.append(
                BadEntry("the file", f"unknown table or key {key!r}; write one [[lora]] per LoRA")
            )
    tables = document.get("lora", [])
    if not isinstance(tables, list):
        parsed.bad.append(BadEntry("the file", "write each LoRA as its own [[lora]] table"))
        return
    header_lines = [n for n, line in enumerate(text.splitlines(), start=1) if _TOML_HEADER.match(line)]
    for index, table in enumerate(tables):
        where = f"line {header_lines[index]}" if index < len(header_lines) else f"[[lora]] {index + 1}"
        if not isinstance(table, dict):
            parsed.bad.append(BadEntry(where, "write each LoRA as its own [[lora]] table"))
            continue
        unknown = sorted(set(table) - set(TOML_FIELDS))
        url, path = table.get("url"), table.get("path")
        if unknown:
            reason = f"unknown field {unknown[0]!r} (known: {', '.join(TOML_FIELDS)})"
        elif (url is None) == (path is None):
            reason = "give exactly one of url or path"
        elif not isinstance(url if url is not None else path, str):
            reason = "url and path must be strings"
        else:
            _add(parsed, where, str(url if url is not None else path).strip(), table)
            continue
        parsed.bad.append(BadEntry(where, reason, str(url or path or "")))


def _parse_json(text: str, parsed: ParsedList) -> None:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        parsed.bad.append(BadEntry(f"line {exc.lineno}", f"not valid JSON: {exc.msg}"))
        return
    except RecursionError:  # the decoder recurses per nested array or object
        parsed.bad.append(BadEntry("the file", f"not valid JSON: {TOO_DEEP}"))
        return
    if isinstance(document, dict) and isinstance(document.get("items"), list):
        items, prefix = document["items"], "items"
    elif isinstance(document, dict) and "downloadUrl" in document:
        items, prefix = [document], ""
    elif isinstance(document, list):
        items, prefix = document, ""
    else:
        parsed.bad.append(BadEntry("the file", 'expected a list of model versions, or {"items": [...]}'))
        return
    for index, item in enumerate(items):
        where = f"{prefix}[{index}]"
        if not isinstance(item, dict):
            parsed.bad.append(BadEntry(where, "not a model-version object"))
            continue
        try:
            source, fields = model_version_fields(item)
        except _Bad as bad:
            parsed.bad.append(BadEntry(where, bad.reason))
            continue
        _add(parsed, where, source, fields)


def model_version_fields(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A Civitai-style model version as the fields of a registration."""
    model: Mapping[str, Any] = item["model"] if isinstance(item.get("model"), dict) else {}
    source = item.get("downloadUrl") or _primary_download(item.get("files"))
    if not isinstance(source, str) or not source:
        raise _Bad("no downloadUrl (nor files[].downloadUrl)")
    model_name, version = str(model.get("name") or "").strip(), str(item.get("name") or "").strip()
    name = f"{model_name} {version}".strip() if version and version != model_name else model_name or version
    creator = model.get("creator") or item.get("creator") or {}
    nsfw = model.get("nsfw", item.get("nsfw", False))
    return source.strip(), {
        "name": name,
        "base_model": item.get("baseModel"),
        "trigger_words": item.get("trainedWords"),
        "nsfw": bool(nsfw) if isinstance(nsfw, (bool, int)) else nsfw,
        "author": creator.get("username") if isinstance(creator, dict) else None,
        "page_url": _page_url(item, source),
    }


def _primary_download(files: object) -> str | None:
    """The version's model file: the one marked primary, else the first .safetensors."""
    if not isinstance(files, list):
        return None
    candidates = [f for f in files if isinstance(f, dict) and isinstance(f.get("downloadUrl"), str)]
    primary = [f for f in candidates if f.get("primary") is True]
    tensors = [f for f in candidates if str(f.get("name", "")).lower().endswith(".safetensors")]
    for choice in (primary, tensors, candidates):
        if choice:
            return str(choice[0]["downloadUrl"])
    return None


def _page_url(item: Mapping[str, Any], source: str) -> str | None:
    if isinstance(item.get("pageUrl"), str):
        return str(item["pageUrl"])
    try:
        host = (urlsplit(source).hostname or "") if "://" in source else ""
    except ValueError:  # a malformed link: check_source reports it on the entry
        host = ""
    model_id, version_id = item.get("modelId"), item.get("id")
    if host.endswith("civitai.com") and isinstance(model_id, int):
        query = f"?modelVersionId={version_id}" if isinstance(version_id, int) else ""
        return f"https://civitai.com/models/{model_id}{query}"
    return None


def _drop_duplicates(parsed: ParsedList) -> None:
    seen_source: dict[str, str] = {}
    seen_slug: dict[str, str] = {}
    kept: list[BulkEntry] = []
    for entry in parsed.entries:
        slug = entry.slug or slugify(entry.name)
        if entry.source in seen_source:
            parsed.bad.append(
                BadEntry(entry.where, f"same source as {seen_source[entry.source]}", entry.source)
            )
        elif slug in seen_slug:
            parsed.bad.append(
                BadEntry(entry.where, f"slug {slug!r} is also used by {seen_slug[slug]}", entry.source)
            )
        else:
            seen_source[entry.source] = seen_slug[slug] = entry.where
            kept.append(entry)
    parsed.entries = kept
    parsed.bad.sort(key=lambda bad: _position(bad.where))


REGISTERED = "registered"
ALREADY_REGISTERED = "already registered"
ALREADY_QUEUED = "already queued"
QUEUED = "queued"  # still queued or running when the command stopped following
FAILED = "failed"
STATUSES = (REGISTERED, ALREADY_REGISTERED, ALREADY_QUEUED, QUEUED, FAILED)
# The service's refusal of a source that a live job is registering already (AlreadyExists): a
# chat adapter tells "already queued" from "already registered" by it.
SOURCE_BUSY = "this source is already being registered by a running job"


def shown_source(source: str) -> str:
    """A link without query, fragment or user info (a signed link carries a token there)."""
    if "://" not in source:
        return source
    try:
        parts = urlsplit(source)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable link)"
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass
class Outcome:
    where: str
    source: str  # as shown_source gives it
    status: str
    slug: str = ""
    reason: str = ""
    job_id: str = ""


@dataclass
class BulkSummary:
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, parsed: ParsedList) -> BulkSummary:
        """The list's bad entries, failed before anything is queued."""
        summary = cls(warnings=list(parsed.warnings))
        for bad in parsed.bad:
            summary.outcomes.append(Outcome(bad.where, shown_source(bad.source), FAILED, reason=bad.reason))
        return summary

    def add(
        self, entry: BulkEntry, status: str, *, slug: str = "", reason: str = "", job_id: str = ""
    ) -> Outcome:
        outcome = Outcome(entry.where, shown_source(entry.source), status, slug, reason, job_id)
        self.outcomes.append(outcome)
        return outcome

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def failed(self) -> list[Outcome]:
        return sorted((o for o in self.outcomes if o.status == FAILED), key=lambda o: _position(o.where))

    def headline(self) -> str:
        parts = [f"{self.count(REGISTERED)} registered"]
        skipped = self.count(ALREADY_REGISTERED) + self.count(ALREADY_QUEUED)
        parts.append(
            f"{skipped} skipped ({self.count(ALREADY_REGISTERED)} already there, "
            f"{self.count(ALREADY_QUEUED)} already queued)"
        )
        if self.count(QUEUED):
            parts.append(f"{self.count(QUEUED)} still queued")
        parts.append(f"{self.count(FAILED)} failed")
        return ", ".join(parts)

    def failure_lines(self) -> list[str]:
        return [f"{o.where}: {o.reason}" + (f" ({o.source})" if o.source else "") for o in self.failed]

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": {status.replace(" ", "_"): self.count(status) for status in STATUSES},
            "entries": [
                {
                    "where": o.where,
                    "source": o.source,
                    "status": o.status.replace(" ", "_"),
                    "slug": o.slug,
                    "reason": o.reason,
                    "job_id": o.job_id,
                }
                for o in sorted(self.outcomes, key=lambda o: _position(o.where))
            ],
            "warnings": self.warnings,
        }


def _position(where: str) -> tuple[int, str]:
    number = re.search(r"\d+", where)
    return (int(number.group()) if number else -1, where)
