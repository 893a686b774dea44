"""Book manifests (books/*.yaml), fetching from Project Gutenberg, and first-start sync.

A manifest records what a library needs to be rebuilt elsewhere: id, title,
author, language, source (``gutenberg:244`` or ``local:<file name>``),
licence note and the sha256 of the file as distributed.
``ensure_books(settings, on_progress)`` brings the library in line with the
manifests: books already present are skipped, Gutenberg books are downloaded
from ``{gutenberg_url}/cache/epub/{n}/pg{n}.txt`` (size-checked, checksum-
checked), and anything that cannot be fetched is imported from a local folder
(``settings.local_books_dir`` or ``from_dir``), matched by checksum or by a
file name containing the Gutenberg number.  The returned :class:`SyncReport`
says what was fetched, imported, present or missing, and the one command that
fixes what is missing.  ``on_progress(message, done, total)``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from app.domain import BookMeta
from app.library.errors import FetchError, LibraryError
from app.library.importers import sha256_bytes

SyncProgress = Callable[[str, int, int], None]
_GUTENBERG_RE = re.compile(r"^gutenberg:(\d+)$")


@dataclass
class Manifest:
    id: str
    title: str
    author: str
    language: str
    source: str
    licence: str = ""
    sha256: str = ""
    file: str = ""          # file name of the distributed copy (a hint for local import)
    note: str = ""

    @property
    def gutenberg_number(self) -> int | None:
        m = _GUTENBERG_RE.match(self.source)
        return int(m.group(1)) if m else None


def load_manifests(books_dir: Path) -> tuple[list[Manifest], list[str]]:
    """Manifests in books_dir and the problems of those that could not be read."""
    manifests, problems = [], []
    for path in sorted(Path(books_dir).glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            known = {k: str(v) for k, v in data.items() if k in Manifest.__dataclass_fields__}
            manifests.append(Manifest(**known))
        except (yaml.YAMLError, TypeError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: not a valid book manifest ({exc})")
    return manifests, problems


def write_manifest(books_dir: Path, meta: BookMeta, *, file: str = "", note: str = "") -> Path:
    books_dir = Path(books_dir)
    books_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(id=meta.id, title=meta.title, author=meta.author, language=meta.language,
                        source=meta.source, licence=meta.licence, sha256=meta.sha256, file=file, note=note)
    path = books_dir / f"{meta.id}.yaml"
    data = {k: v for k, v in asdict(manifest).items() if v}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def gutenberg_url(base: str, number: int) -> str:
    return f"{base.rstrip('/')}/cache/epub/{number}/pg{number}.txt"


def download(url: str, *, timeout: float, max_bytes: int,
             on_progress: Callable[[int, int], None] | None = None) -> bytes:
    """GET a file whole or raise FetchError (status, too large, connection lost, short body)."""
    import httpx

    chunks: list[bytes] = []
    received = expected = 0
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise FetchError(url, f"HTTP {response.status_code}")
            expected = int(response.headers.get("content-length") or 0)
            if expected > max_bytes:
                raise FetchError(url, f"{expected / 1e6:.1f} MB is larger than the "
                                 f"{max_bytes / 1e6:.0f} MB limit")
            for chunk in response.iter_raw():
                chunks.append(chunk)
                received += len(chunk)
                if received > max_bytes:
                    raise FetchError(url, f"more than the {max_bytes / 1e6:.0f} MB limit")
                if on_progress:
                    on_progress(received, expected)
    except httpx.HTTPError as exc:
        if expected and received < expected:
            raise FetchError(url, f"download stopped at {received} of {expected} bytes "
                             f"({exc.__class__.__name__})") from exc
        raise FetchError(url, f"download failed after {received} bytes: {exc.__class__.__name__}: "
                         f"{exc}") from exc
    if expected and received != expected:
        raise FetchError(url, f"download stopped at {received} of {expected} bytes")
    if not received:
        raise FetchError(url, "empty response")
    return b"".join(chunks)


def fetch_gutenberg(number: int, settings, *, on_progress: Callable[[int, int], None] | None = None) -> bytes:
    return download(gutenberg_url(settings.gutenberg_url, number), timeout=settings.fetch_timeout_s,
                    max_bytes=settings.max_book_bytes, on_progress=on_progress)


def find_local(manifest: Manifest, folder: Path | None) -> Path | None:
    """A file in folder with the manifest's checksum, its file name, or its Gutenberg number in the name."""
    if folder is None or not Path(folder).is_dir():
        return None
    files = [p for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.suffix.lower() in (".txt", ".epub")]
    by_name = [p for p in files if manifest.file and p.name == manifest.file]
    number = manifest.gutenberg_number
    by_number = [p for p in files if number and re.search(rf"(?<!\d){number}(?!\d)", p.stem)]
    for candidate in by_name + by_number + files:
        if manifest.sha256 and candidate.stat().st_size < 64 * 1024 * 1024 \
                and sha256_bytes(candidate.read_bytes()) == manifest.sha256:
            return candidate
    if not manifest.sha256:
        return (by_name + by_number or [None])[0]
    return None


@dataclass
class SyncReport:
    present: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)       # from a local folder
    missing: dict[str, str] = field(default_factory=dict)   # book id -> why
    problems: list[str] = field(default_factory=list)       # unreadable manifests, etc.
    changed: dict[str, str] = field(default_factory=dict)   # fetched, but not the manifest's edition
    fix_command: str = ""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.problems

    def summary(self) -> str:
        lines = [f"books: {len(self.present)} present, {len(self.fetched)} fetched, "
                 f"{len(self.imported)} imported from a local folder, {len(self.missing)} missing"]
        lines += [f"  missing {book}: {why}" for book, why in self.missing.items()]
        lines += [f"  warning {book}: {why}; imported the new text anyway (its excerpt ids differ from "
                  f"libraries built from the manifest's edition; `bookbot books fetch` updates the manifest)"
                  for book, why in self.changed.items()]
        lines += [f"  {p}" for p in self.problems]
        if self.fix_command:
            lines.append(f"fix: {self.fix_command}")
        return "\n".join(lines)

    __str__ = summary


def ensure_books(settings, on_progress: SyncProgress | None = None, *, library=None,
                 from_dir: Path | None = None, offline: bool = False) -> SyncReport:
    """Bring the library in line with the manifests in ``settings.books_dir``."""
    from app.library import open_library

    say = on_progress or (lambda message, done, total: None)
    report = SyncReport()
    manifests, report.problems = load_manifests(settings.books_dir)
    if library is None:
        library = open_library(settings)
    local_dir = Path(from_dir) if from_dir else settings.local_books_dir
    for n, manifest in enumerate(manifests, start=1):
        prefix = f"[{n}/{len(manifests)}] {manifest.id}"
        existing = library.book(manifest.id)
        if existing is not None and (not manifest.sha256 or existing.sha256 == manifest.sha256):
            report.present.append(manifest.id)
            say(f"{prefix}: present", n, len(manifests))
            continue
        reason = ""
        data, origin, changed_upstream = None, "", None
        number = manifest.gutenberg_number
        if number is not None and not offline:
            try:
                data = fetch_gutenberg(number, settings, on_progress=lambda got, total: say(
                    f"{prefix}: downloading", got, total or got))
                if manifest.sha256 and sha256_bytes(data) != manifest.sha256:
                    reason = (f"downloaded text has sha256 {sha256_bytes(data)[:12]}…, the manifest says "
                              f"{manifest.sha256[:12]}… (Project Gutenberg changed the file)")
                    changed_upstream, data = data, None     # a local copy of the manifest's edition wins
                else:
                    origin = "fetched"
            except FetchError as exc:
                reason = str(exc)
        elif number is None:
            reason = f"source {manifest.source!r} is not downloadable"
        else:
            reason = "offline"
        path = Path(f"pg{number}.txt" if number else manifest.file or manifest.id)
        if data is None:
            local = find_local(manifest, local_dir)
            if local is not None:
                data, origin, path = local.read_bytes(), "imported", local
            elif changed_upstream is not None:
                data, origin = changed_upstream, "fetched"
                report.changed[manifest.id] = reason
            elif local_dir is None:
                reason += "; no local books folder configured"
            else:
                reason += f"; not found in {local_dir}"
        if data is None:
            report.missing[manifest.id] = reason.lstrip("; ")
            continue
        try:
            library.add_file(path, data=data, book_id=manifest.id, title=manifest.title,
                             author=manifest.author, language=manifest.language, source=manifest.source,
                             licence=manifest.licence, replace_existing=True,
                             max_bytes=settings.max_book_bytes,
                             on_progress=lambda stage, done, total: say(f"{prefix}: {stage}", done, total))
        except LibraryError as exc:
            report.missing[manifest.id] = str(exc)
            continue
        (report.fetched if origin == "fetched" else report.imported).append(manifest.id)
        say(f"{prefix}: {origin}", n, len(manifests))
    if report.missing:
        report.fix_command = ("bookbot books sync --from /path/to/books   (a folder with the files, e.g. "
                              "pg244.txt; or set BOOKBOT_LOCAL_BOOKS_DIR=/path/to/books)")
    return report
