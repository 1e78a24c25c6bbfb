"""What the Debian package database says about the packages the real-art sources read.

Installed version and source package (`dpkg-query`), the files a package ships, and the licence
its `/usr/share/doc/<package>/copyright` gives (machine-readable DEP-5 when it is; otherwise
the licence names found in the text). Without dpkg every package counts as not installed.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DOC_ROOT = Path("/usr/share/doc")
_KNOWN_LICENCES = (
    ("GPL-3", r"GNU General Public License[^.]{0,80}version 3|GPL-?v?3"),
    ("GPL-2", r"GNU General Public License[^.]{0,80}version 2|GPL-?v?2"),
    ("LGPL", r"Lesser General Public License|Library General Public License|LGPL"),
    ("OFL-1.1", r"SIL Open Font License|\bOFL\b"),
    ("CC-BY-SA", r"Creative Commons Attribution[- ]Share ?Alike|CC-BY-SA"),
    ("CC0-1.0", r"CC0"),
    ("Apache-2.0", r"Apache License"),
    ("MIT", r"\bMIT\b|Permission is hereby granted, free of charge"),
    ("public-domain", r"public domain"),
)


@dataclass(frozen=True)
class PackageInfo:
    name: str
    version: str
    source: str  # the Debian source package: binary packages built from one source are one family


@dataclass(frozen=True)
class Licence:
    primary: str  # the licence of "Files: *" (DEP-5), else the first name found
    names: tuple[str, ...]  # every licence the copyright file names
    copyright_file: str


def installed(names: list[str]) -> dict[str, PackageInfo]:
    """The installed packages among `names` (any not in the result is missing)."""
    if not names or shutil.which("dpkg-query") is None:
        return {}
    # A missing name makes dpkg-query exit 1; the installed ones are still printed.
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Version}\t${source:Package}\t${db:Status-Abbrev}\n", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[str, PackageInfo] = {}
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[3].startswith("ii"):
            found[parts[0]] = PackageInfo(parts[0], parts[1], parts[2] or parts[0])
    return found


def package_files(name: str) -> list[Path]:
    """The files `name` installed (directories excluded), as dpkg lists them."""
    if shutil.which("dpkg-query") is None:
        return []
    result = subprocess.run(["dpkg-query", "-L", name], capture_output=True, text=True, check=False)
    return [Path(line) for line in result.stdout.splitlines() if line.startswith("/")]


def install_hint(packages: list[str]) -> str:
    return "apt-get install -y " + " ".join(sorted(packages))


def missing_message(source: str, packages: list[str], what: str = "") -> str:
    """One line naming the missing packages and the exact command that installs them."""
    listed = ", ".join(sorted(packages))
    extra = f" ({what})" if what else ""
    return f"{source}: not installed: {listed}{extra}; to add it: {install_hint(packages)}"


def licence_of(package: str, doc_root: Path = DOC_ROOT) -> Licence:
    return licence_for_files(package, [], doc_root)


def licence_for_files(package: str, files: list[str], doc_root: Path = DOC_ROOT) -> Licence:
    """The licence of `files` as `package`'s copyright file gives it (DEP-5: the last `Files:`
    paragraph matching a file wins; the first file's is primary)."""
    path = doc_root / package / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return Licence("unknown (no copyright file)", (), str(path))
    return parse_copyright(text, str(path), files)


def parse_copyright(text: str, path: str = "copyright", files: list[str] | None = None) -> Licence:
    """Licence names from a copyright file; with `files`, those that cover them."""
    if text.startswith("Format:") and "copyright-format" in text.splitlines()[0]:
        paragraphs: list[tuple[list[str], str]] = []
        for paragraph in re.split(r"\n\s*\n", text):
            fields = _fields(paragraph)
            if "files" in fields and "license" in fields:
                licence = fields["license"].splitlines()[0].strip()
                if licence:
                    paragraphs.append((fields["files"].split(), licence))
        if paragraphs:
            wanted = [_covering(paragraphs, file) for file in files or []]
            wanted = [licence for licence in wanted if licence]
            star = _covering(paragraphs, "")
            names = tuple(dict.fromkeys(wanted or [star or paragraphs[0][1]]))
            everything = tuple(dict.fromkeys(licence for _, licence in paragraphs))
            return Licence(names[0], names if files else everything, path)
    found = tuple(name for name, pattern in _KNOWN_LICENCES if re.search(pattern, text, re.IGNORECASE))
    return Licence(found[0] if found else "unknown (see copyright file)", found, path)


def _covering(paragraphs: list[tuple[list[str], str]], file: str) -> str:
    """The licence of the last paragraph whose patterns match a tail of `file` ("" = "*" only)."""
    parts = Path(file).parts
    tails = ["/".join(parts[i:]) for i in range(len(parts))] if file else []
    licence = ""
    for patterns, name in paragraphs:
        if any(p == "*" or any(fnmatch.fnmatchcase(tail, p) for tail in tails) for p in patterns):
            licence = name
    return licence


def _fields(paragraph: str) -> dict[str, str]:
    """A DEP-5 paragraph's fields (lower-case names; continuation lines joined)."""
    fields: dict[str, str] = {}
    current = ""
    for line in paragraph.splitlines():
        if line[:1] in (" ", "\t") and current:
            fields[current] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep and name and " " not in name:
            current = name.strip().lower()
            fields[current] = value.strip()
    return fields
