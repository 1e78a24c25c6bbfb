"""Read and write the catalog directory format (docs/design.md 6). No database here."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from findlora_client.base_models import resolve
from findlora_client.links import page_link_problem
from inference_service.catalog.platform_prompts import PLATFORM_PROMPTS
from inference_service.imaging import IMAGE_SUFFIXES

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
SAMPLE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SPEC_NAME_RE = re.compile(r"^(\d+)-(\d+)$")
SPEC_MAX_NUMBER = 2**31 - 1  # PostgreSQL integer (spec_points.n, prompts.local_id)


class CatalogError(Exception):
    """Every problem found in a catalog directory, each with its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the catalog:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class SpecImage:
    prompt_id: int
    n: int
    path: Path


@dataclass
class LoraEntry:
    slug: str
    name: str
    url: str = ""
    base_model: str = "sd1"
    trigger_words: list[str] = field(default_factory=list)
    license: str = ""
    author: str = ""
    nsfw: bool = False
    file: str = ""
    references: dict[str, Path] = field(default_factory=dict)
    spec: list[SpecImage] = field(default_factory=list)
    own_prompts: list[str] = field(default_factory=list)


@dataclass
class Catalog:
    root: Path
    name: str
    base_model: str
    note: str
    prompts: list[str]
    samples: dict[str, Path]
    loras: dict[str, LoraEntry]
    warnings: list[str] = field(default_factory=list)  # kept as given, worth a look (unknown base models)


def _linked(path: Path, problems: list[str]) -> bool:
    """True, with a problem naming it, when `path` is a symbolic link. Every link is refused, not
    only those that lead out of the catalog: a catalog often arrives as someone else's archive,
    where a link could make the import store (and search show) any file this user can read; a
    link inside the catalog gains nothing a copy would not, and telling where a link leads
    (chains, '..', a link replaced after the check) is easy to get wrong."""
    if not path.is_symlink():
        return False
    problems.append(
        f"{path}: a symbolic link (to {os.readlink(path)}); the catalog must hold its own files: "
        "replace the link with a copy of what it points to"
    )
    return True


def _real_dir(path: Path, problems: list[str]) -> bool:
    """Whether the scan may enter `path`: a directory, not a link to one (reported)."""
    return not _linked(path, problems) and path.is_dir()


def _images_by_stem(directory: Path, what: str, problems: list[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.name == "prompts.txt" or _linked(path, problems):
            continue
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{path}: not a {what} image (expected {', '.join(IMAGE_SUFFIXES)})")
            continue
        if path.stem in found:
            problems.append(f"{path}: duplicate {what} id {path.stem!r} (also {found[path.stem].name})")
            continue
        found[path.stem] = path
    return found


def _read_text(path: Path, problems: list[str], *, required: bool) -> str | None:
    """A text file's contents as UTF-8 (a leading byte-order mark dropped: editors on Windows
    write one), or None: absent, or a problem naming the file."""
    if _linked(path, problems):
        return None
    if not path.exists():
        if required:
            problems.append(f"{path}: missing")
        return None
    if not path.is_file():  # a directory, a FIFO (whose read would block the scan)
        problems.append(f"{path}: not a regular file: make it a UTF-8 text file")
        return None
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8")
    except OSError as exc:
        problems.append(f"{path}: unreadable ({exc.strerror or exc}): make it readable to this user")
    return None


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    text = _read_text(path, problems, required=True)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: invalid TOML ({exc})")
    return None


def _read_lines(path: Path, problems: list[str]) -> list[str]:
    """The non-blank lines, stripped. A line with a NUL is kept (so that prompt ids still count
    right) but reported: PostgreSQL text cannot hold it."""
    lines = []
    for number, line in enumerate((_read_text(path, problems, required=False) or "").splitlines(), 1):
        if "\x00" in line:
            problems.append(f"{path}: line {number} contains a NUL character: remove it")
        if line.strip():
            lines.append(line.strip())
    return lines


def _spec_point(path: Path, problems: list[str]) -> tuple[int, int] | None:
    """(prompt id, n) of a spec image named <prompt_id>-<n>. Numbers are canonical (no leading
    zeros: 0-1 and 00-1 would be one point, stored twice) and fit PostgreSQL's integer."""
    match = SPEC_NAME_RE.match(path.stem)
    if not match:
        problems.append(
            f"{path}: spec images are named <prompt_id>-<n> (such as 0-1{path.suffix}): rename it"
        )
        return None
    prompt_id, n = int(match.group(1)), int(match.group(2))  # a file name is short: int() is cheap
    if match.group(1, 2) != (str(prompt_id), str(n)):
        problems.append(f"{path}: leading zeros in a spec image name: rename it {prompt_id}-{n}{path.suffix}")
        return None
    if max(prompt_id, n) > SPEC_MAX_NUMBER:
        problems.append(f"{path}: a number in its name is over {SPEC_MAX_NUMBER}: renumber it")
        return None
    return prompt_id, n


def _str_field(data: dict[str, Any], key: str, path: Path, problems: list[str], default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        problems.append(f"{path}: {key} must be a string")
        return default
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it here, not mid-import
        problems.append(f"{path}: {key} contains a NUL character")
        return default
    return value


def _page_url(data: dict[str, Any], path: Path, problems: list[str]) -> str:
    url = _str_field(data, "url", path, problems).strip()
    if problem := page_link_problem(url):
        problems.append(f"{path}: {problem.replace('page_url', 'url', 1)}")
        return ""
    return url


def _base_model(given: str, path: Path, warnings: list[str]) -> str:
    """Any spelling of a family becomes its canonical id; an unknown name is kept as other:<name>."""
    resolved = resolve(given)
    if not resolved.known:
        warnings.append(f"{path}: {resolved.warning}")
    return resolved.id or "sd1"


def _read_lora(
    lora_dir: Path,
    default_base: str,
    samples: dict[str, Path],
    n_prompts: int,
    problems: list[str],
    warnings: list[str],
) -> LoraEntry | None:
    slug = lora_dir.name
    toml_path = lora_dir / "lora.toml"
    if not SLUG_RE.match(slug):
        problems.append(f"{lora_dir}: slug must be lower-case letters, digits, '.', '_' or '-'")
        return None
    if _linked(lora_dir, problems):
        return None
    data = _read_toml(toml_path, problems)
    if data is None:
        return None
    base_model = _base_model(
        _str_field(data, "base_model", toml_path, problems, default_base), toml_path, warnings
    )
    triggers = data.get("trigger_words", [])
    if not (isinstance(triggers, list) and all(isinstance(t, str) for t in triggers)):
        problems.append(f"{toml_path}: trigger_words must be a list of strings")
        triggers = []
    elif any("\x00" in t for t in triggers):
        problems.append(f"{toml_path}: trigger_words contains a NUL character")
        triggers = []
    nsfw = data.get("nsfw", False)
    if not isinstance(nsfw, bool):
        problems.append(f"{toml_path}: nsfw must be true or false")
        nsfw = False
    entry = LoraEntry(
        slug=slug,
        name=_str_field(data, "name", toml_path, problems, slug) or slug,
        url=_page_url(data, toml_path, problems),
        base_model=base_model,
        trigger_words=list(triggers),
        license=_str_field(data, "license", toml_path, problems),
        author=_str_field(data, "author", toml_path, problems),
        nsfw=nsfw,
        file=_str_field(data, "file", toml_path, problems),
    )
    ref_dir = lora_dir / "references"
    if _real_dir(ref_dir, problems):
        entry.references = _images_by_stem(ref_dir, "reference", problems)
        for sample_id, path in entry.references.items():
            if sample_id not in samples:
                problems.append(f"{path}: unknown sample id {sample_id!r} (no samples/{sample_id}.*)")
    if not entry.references and not ref_dir.is_symlink():  # a link is reported above
        # Import stores references; it does not generate them (that is a registration's job), so a
        # LoRA without any would be listed as imported and never be found.
        hint = (
            f"; register its file instead: findlora lora register {lora_dir / entry.file} --name ..."
            if entry.file
            else ""
        )
        problems.append(f"{lora_dir}: no references/ images{hint}")
    spec_dir = lora_dir / "spec"
    if _real_dir(spec_dir, problems):
        entry.own_prompts = _read_lines(spec_dir / "prompts.txt", problems)
        # Canonical names make (prompt id, n) one stem: _images_by_stem reports both files of a
        # point given twice (0-1.png and 0-1.jpg).
        for path in _images_by_stem(spec_dir, "spec", problems).values():
            point = _spec_point(path, problems)
            if point is None:
                continue
            if point[0] >= n_prompts + len(entry.own_prompts):
                problems.append(f"{path}: prompt id {point[0]} is not in prompts.txt or spec/prompts.txt")
                continue
            entry.spec.append(SpecImage(*point, path))
    return entry


def scan_catalog(root: Path) -> tuple[Catalog, list[str]]:
    """Parse a catalog directory as far as it goes: what could be read, and every problem."""
    problems: list[str] = []
    root = root.resolve()
    if not root.is_dir():
        return Catalog(root, root.name, "sd1", "", [], {}, {}), [f"{root}: not a directory"]
    meta_path = root / "catalog.toml"
    meta = _read_toml(meta_path, problems) or {}
    warnings: list[str] = []
    default_base = _str_field(meta, "base_model", meta_path, problems, "sd1")
    default_base = _base_model(default_base, meta_path, warnings)
    samples_dir = root / "samples"
    samples: dict[str, Path] = {}
    if _real_dir(samples_dir, problems):
        samples = _images_by_stem(samples_dir, "sample", problems)
        for sample_id, path in samples.items():
            if not SAMPLE_ID_RE.match(sample_id):
                problems.append(f"{path}: sample id must be letters, digits, '.', '_' or '-'")
    elif not samples_dir.is_symlink():
        problems.append(f"{samples_dir}: missing (the sample set S)")
    prompts = _read_lines(root / "prompts.txt", problems)
    loras: dict[str, LoraEntry] = {}
    loras_dir = root / "loras"
    if not _real_dir(loras_dir, problems):
        if not loras_dir.is_symlink():
            problems.append(f"{loras_dir}: missing")
    else:
        seen_lower: dict[str, Path] = {}
        # A link is a LoRA directory to _read_lora (which refuses it), whatever it points to.
        listed = (
            p for p in loras_dir.iterdir() if (p.is_dir() or p.is_symlink()) and not p.name.startswith(".")
        )
        for lora_dir in sorted(listed):
            if lora_dir.name.lower() in seen_lower:
                problems.append(f"{lora_dir}: duplicate slug (also {seen_lower[lora_dir.name.lower()]})")
                continue
            seen_lower[lora_dir.name.lower()] = lora_dir
            # Without prompts.txt, spec prompt ids refer to the default platform set.
            n_platform = len(prompts) or len(PLATFORM_PROMPTS)
            entry = _read_lora(lora_dir, default_base, samples, n_platform, problems, warnings)
            if entry is not None:
                loras[entry.slug] = entry
    catalog = Catalog(
        root=root,
        name=_str_field(meta, "name", meta_path, problems, root.name) or root.name,
        base_model=default_base,
        note=_str_field(meta, "note", meta_path, problems),
        prompts=prompts,
        samples=samples,
        loras=loras,
        warnings=warnings,
    )
    return catalog, problems


def read_catalog(root: Path) -> Catalog:
    """Parse and check a catalog directory (structure and names; pixels are checked on import)."""
    catalog, problems = scan_catalog(root)
    if problems:
        raise CatalogError(problems)
    return catalog


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + "".join(_toml_char(c) for c in str(value)) + '"'


def _toml_char(char: str) -> str:
    """One character of a TOML basic string: quote, backslash and control characters escaped."""
    if char in ('"', "\\"):
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04X}"
    return char


def dump_toml(data: dict[str, object]) -> str:
    """Flat TOML (strings, booleans, lists of strings): all the format needs."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in data.items())


def lora_toml(entry: LoraEntry) -> str:
    data: dict[str, object] = {
        "name": entry.name,
        "url": entry.url,
        "base_model": entry.base_model,
        "trigger_words": entry.trigger_words,
        "license": entry.license,
        "author": entry.author,
        "nsfw": entry.nsfw,
    }
    if entry.file:
        data["file"] = entry.file
    return dump_toml(data)
