"""Bringing EEG sources in: fetch them, recognise their format, name them.

:func:`fetch_sources` brings every source (local paths, folders, globs, fsspec URLs,
``.zip`` archives) into one local folder: remote files through
:func:`tasks.store.fetch_to_cache`, archives extracted safely (every entry checked
before the first write), BrainVision headers with the data and marker files they
name. :func:`format_of` tells a recording's format from its suffix, and
:func:`describe` names subject, session and run of each file from its path
(:class:`SourceInfo`). The readers of the recordings are in
:mod:`tasks.domains.eeg.readers`.

Pure functions with plain arguments (no params objects), so the ingest stage and the
tests call them alike. Every error on bad input is an :class:`EEGInputError` whose
message names the file and the field, key, entry or value at fault.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tasks import store


class EEGInputError(ValueError):
    """Bad EEG input; the message names the file (and the field/key/entry/value) at fault."""


FORMATS: dict[str, str] = {
    ".edf": "edf",
    ".bdf": "bdf",
    ".gdf": "gdf",
    ".fif": "fif",
    ".fif.gz": "fif",
    ".vhdr": "brainvision",
    ".mat": "mat",
    ".txt": "ascii",
    ".asc": "ascii",
}
"""File suffix (lower case) -> format name."""

# Documentation files that share a recording suffix (README.txt beside Bonn segments).
_NOT_RECORDINGS = {"readme", "license", "licence", "changes", "changelog", "citation", "notes"}
_GLOB_CHARS = "*?["


def format_of(path: Path) -> str | None:
    """The format of a recording file from its suffix (case-insensitive), else None.

    Sidecars (``.vmrk``, ``.eeg``), archives, documentation (``README.txt``) and hidden
    files (``.DS_Store``, macOS ``._x.edf`` forks) are not recordings.
    """
    name = Path(path).name
    lower = name.lower()
    if lower.startswith(".") or lower.split(".")[0] in _NOT_RECORDINGS:
        return None
    if lower.endswith(".fif.gz"):
        return "fif"
    return FORMATS.get(Path(lower).suffix)


# ============================================================================ fetching
DEFAULT_MAX_EXTRACTED_BYTES = 16 * 2**30
DEFAULT_MAX_COMPRESSION_RATIO = 100.0


def fetch_sources(
    source: str | list[str],
    target: Path,
    cache: Path,
    *,
    retries: int = 3,
    delay_s: float = 0.5,
    max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES,
    max_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO,
    origins: dict[str, str] | None = None,
) -> list[Path]:
    """Bring every recording named by ``source`` into the local folder ``target``.

    ``source`` is one or several local paths, folders (walked recursively), globs or
    fsspec URLs (``s3://bucket/eeg/*.edf``, ``memory://x``). Files keep their names
    relative to the folder given, or to the fixed part of a glob (``data/*/*.txt`` keeps
    ``A_Z/Z001.txt``), because folder names can carry labels (Bonn). Remote files are
    downloaded into ``cache`` first (retried on transient network errors). A ``.zip``
    archive is extracted into ``target/<zip stem>/`` after every entry was checked: an
    entry with an absolute path, a drive letter, a ``..`` component or a symlink
    rejects the whole archive before anything is extracted, and so do entries that
    declare more than ``max_bytes`` in all or an entry over ``max_ratio`` times its
    compressed size (the extraction is counted too, in case a header lies). A symbolic
    link in a source folder or glob that resolves outside it is refused (a file named
    directly may be a link). A BrainVision ``.vhdr`` brings the data and marker files
    its header names.

    The caller owns ``target`` and writes it atomically (:func:`tasks.store.atomic_dir`),
    so on an error this function just raises.

    Args:
        source: A path/URL/glob or a list of them.
        target: Existing folder to write into.
        cache: Existing folder for downloads of remote files.
        retries: Retries of a remote listing or download on transient errors.
        delay_s: First delay between retries (doubles each try).
        max_bytes: Most bytes one archive may unpack to (``ingest.eeg.max_extracted_bytes``).
        max_ratio: Most unpacked bytes per compressed byte of an archive entry
            (``ingest.eeg.max_compression_ratio``; entries up to 1 MiB are exempt).
        origins: When given, filled with each recording's name relative to ``target`` -> where it came
            from (the user's path or URL; ``archive.zip!entry``), so messages can name the user's file.

    Returns:
        The recording files written to ``target`` (those :func:`format_of` knows), sorted.

    Raises:
        EEGInputError: A source matches nothing, two sources give the same file name,
            an archive is unsafe, corrupt or over a cap, a link points out of the source,
            a sidecar is missing, or no recording was found.
    """
    sources = [str(source)] if isinstance(source, str | Path) else [str(s) for s in source]
    if not sources:
        raise EEGInputError("no EEG source given")
    target, cache = Path(target), Path(cache)
    seen: dict[str, str] = {}  # relative name in target -> where it came from
    written: list[Path] = []

    def claim(rel: str, origin: str) -> bool:
        """Reserve ``rel`` for ``origin``; False when it was brought already (same origin)."""
        if rel in seen:
            if seen[rel] == origin:
                return False
            raise EEGInputError(f"two sources give the file {rel!r}: {seen[rel]} and {origin}")
        seen[rel] = origin
        return True

    for src in sources:
        root, found = _expand(str(src), retries, delay_s)
        for url, rel in found:
            if any(part.startswith(".") for part in rel.split("/")):
                continue  # .git, .dvc, editor and OS droppings inside a walked folder
            if root is not None and (rel.lower().endswith(".zip") or format_of(Path(rel)) is not None):
                store.check_inside(url, root, display=f"EEG source {url}", error=EEGInputError)
            if rel.lower().endswith(".zip"):
                if claim(rel, url):
                    archive = _local(url, rel, cache, retries, delay_s)
                    for entry in _extract_zip(archive, target / rel[:-4], display=url, max_bytes=max_bytes,
                                              max_ratio=max_ratio):
                        entry_rel = entry.relative_to(target).as_posix()
                        claim(entry_rel, f"{url}!{entry_rel}")
                        written.append(entry)
                continue
            fmt = format_of(Path(rel))
            if fmt is None or not claim(rel, url):
                continue  # sidecars come with their header; documentation is skipped
            written.append(_bring(url, rel, target, cache, retries, delay_s))
            if fmt == "brainvision":
                for side_url, side_rel in _vhdr_sidecars(target / rel, url, rel):
                    if not store.is_remote(side_url) and Path(side_url).exists():
                        store.check_inside(side_url, root if root is not None else Path(url).parent,
                                           display=f"{url}: sidecar {side_url}", error=EEGInputError)
                    if claim(side_rel, side_url):
                        try:
                            _bring(side_url, side_rel, target, cache, retries, delay_s)
                        except EEGInputError:
                            raise EEGInputError(
                                f"{url}: the BrainVision header names {posixpath.basename(side_rel)!r}, "
                                "which is missing beside it"
                            ) from None

    recordings = sorted(p for p in written if format_of(p) is not None)
    if origins is not None:
        origins.update({rel: origin for rel, origin in seen.items() if format_of(Path(rel)) is not None})
    if not recordings:
        known = ", ".join(sorted(set(FORMATS)) + [".zip"])
        raise EEGInputError(f"no EEG recording found in {sources} (known suffixes: {known})")
    return recordings


def _expand(src: str, retries: int, delay_s: float) -> tuple[Path | None, list[tuple[str, str]]]:
    """``(url, relative name)`` of every file ``src`` names: a file, a folder (recursively) or a glob.

    Also returns the local folder every file must resolve into (the folder walked, or the
    fixed part of a glob); None for a file named directly and for remote sources.
    """
    import fsspec  # lazy: fsspec loads its registry of filesystems; only fetching needs it

    fs, path = fsspec.core.url_to_fs(src)
    is_glob = any(ch in src for ch in _GLOB_CHARS)
    remote = store.is_remote(src)

    def unstrip(p: str) -> str:
        return fs.unstrip_protocol(p) if remote else p

    if not is_glob and store.retry(lambda: fs.isdir(path), retries=retries, delay_s=delay_s, what=src):
        base = path.rstrip("/")
        files = store.retry(lambda: fs.find(base), retries=retries, delay_s=delay_s, what=f"listing {src}")
        return (None if remote else Path(base)), [(unstrip(p), posixpath.relpath(p, base)) for p in sorted(files)]
    try:
        urls = store.retry(
            lambda: store.expand_urls(src), retries=retries, delay_s=delay_s, what=f"listing {src}"
        )
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise EEGInputError(f"EEG source {src!r}: {exc}") from None
    if not is_glob:
        return None, [(urls[0], posixpath.basename(path))]
    # names relative to the folder before the first wildcard keep the folder structure under it
    fixed = path[: min(path.find(ch) for ch in _GLOB_CHARS if ch in path)]
    base = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
    out = []
    for url in urls:
        p = fsspec.core.url_to_fs(url)[1] if remote else url
        out.append((url, posixpath.relpath(p, base) if base else p.lstrip("/")))
    return (None if remote else Path(base or ".")), out


def _local(url: str, rel: str, cache: Path, retries: int, delay_s: float) -> Path:
    """A local path for ``url``: the path itself, or a download into ``cache/rel``.

    :func:`tasks.store.fetch_to_cache` writes a download under a temporary name first, so an
    interrupted one never looks complete, and retries transient errors only.
    """
    try:
        return store.fetch_to_cache(url, cache, name=rel, retries=retries, delay_s=delay_s)
    except FileNotFoundError:
        raise EEGInputError(f"EEG source {url}: no such file") from None


def _bring(url: str, rel: str, target: Path, cache: Path, retries: int, delay_s: float) -> Path:
    """Copy one file (downloaded into the cache first when remote) to ``target/rel``."""
    local = _local(url, rel, cache, retries, delay_s)
    if not local.is_file():
        raise EEGInputError(f"EEG source {url}: no such file")
    dst = target / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, dst)
    return dst


def _vhdr_sidecars(vhdr: Path, url: str, rel: str) -> list[tuple[str, str]]:
    """``(url, rel)`` of the data and marker files a BrainVision header names (same folder)."""
    raw = vhdr.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # older headers: Codepage=ANSI
    names = {}
    for key in ("DataFile", "MarkerFile"):
        m = re.search(rf"^\s*{key}\s*=\s*(.+?)\s*$", text, flags=re.MULTILINE)
        if m is None:
            if key == "DataFile":
                raise EEGInputError(f"{url}: the BrainVision header has no DataFile= entry")
            continue  # a header without markers is valid: no events
        name = m.group(1).replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/") or re.match(r"^[A-Za-z]:", name):
            raise EEGInputError(f"{url}: {key}={m.group(1)} must name a file beside the header")
        names[key] = name
    parent_url = url.rsplit("/", 1)[0] if "/" in url else "."
    parent_rel = posixpath.dirname(rel)
    return [(f"{parent_url}/{n}", posixpath.join(parent_rel, n)) for n in names.values()]


def _extract_zip(archive: Path, dest: Path, display: str, *, max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES,
                 max_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO) -> list[Path]:
    """Extract ``archive`` into ``dest`` after checking every entry; the files written, sorted.

    Zip entries are untrusted paths and sizes: ``zipfile.extractall`` sanitises some paths
    silently, but a rejected archive should say which entry is at fault and leave
    nothing behind, so the whole table of contents is checked before the first write:
    paths, the declared sizes against ``max_bytes`` in all and each entry's ratio against
    ``max_ratio``. The extraction is counted as well (a header can understate a size).
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise EEGInputError(f"{display}: not a readable zip archive: {exc}") from None
    with zf:
        entries = []
        for info in zf.infolist():
            name = info.filename
            parts = name.replace("\\", "/").split("/")
            why = None
            if stat.S_ISLNK(info.external_attr >> 16):
                why = "is a symbolic link"
            elif name.startswith(("/", "\\")):
                why = "has an absolute path"
            elif re.match(r"^[A-Za-z]:", name):
                why = "has a drive letter"
            elif ".." in parts:
                why = "has a '..' component"
            if why:
                raise EEGInputError(f"{display}: unsafe archive entry {name!r} {why}; nothing was extracted")
            if info.is_dir() or parts[0] == "__MACOSX" or parts[-1].startswith("."):
                continue  # folders are made on demand; macOS resource forks are not data
            entries.append((info, "/".join(p for p in parts if p not in ("", "."))))
        total = sum(info.file_size for info, _ in entries)
        if total > max_bytes:
            raise EEGInputError(
                f"{display}: the archive unpacks to {total} bytes, more than the cap ingest.eeg.max_extracted_bytes "
                f"({max_bytes}); nothing was extracted (raise the cap if the archive is genuine)")
        for info, _ in entries:
            if info.file_size > store.RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
                raise EEGInputError(
                    f"{display}: entry {info.filename!r} unpacks to {info.file_size} bytes from {info.compress_size}, "
                    f"more than the cap ingest.eeg.max_compression_ratio ({max_ratio:g}:1); refused as a likely "
                    "decompression bomb, nothing was extracted")
        budget = max_bytes
        written = []
        root = dest.resolve()
        for info, rel in entries:
            out = dest / rel
            if not out.resolve().is_relative_to(root):  # defence in depth against odd separators
                raise EEGInputError(f"{display}: unsafe archive entry {info.filename!r}")
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(out, "wb") as dst:
                    budget -= store.capped_copy(
                        src, dst, display=f"{display}!{info.filename}", max_bytes=min(budget, info.file_size),
                        bytes_key="ingest.eeg.max_extracted_bytes (or the entry's declared size)",
                        max_ratio=max_ratio, ratio_key="ingest.eeg.max_compression_ratio",
                        consumed=lambda info=info: info.compress_size, error=EEGInputError)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise EEGInputError(f"{display}: cannot extract {info.filename!r}: {exc}") from None
            written.append(out)
    return sorted(written)


# ============================================================================ naming
@dataclass
class SourceInfo:
    """Where a recording comes from: its identity parsed from the path.

    Attributes:
        path: The file.
        format: Its format (:data:`FORMATS`).
        subject: Subject id (groups recordings for subject-wise splits).
        session: Session id ("1" when the name has none).
        run: Run id ("1" when the name has none).
        folder_label: ASCII segments and path-labelled MAT files: the parent folder (the class in the Bonn
            layout); else None.
    """

    path: Path
    format: str
    subject: str
    session: str
    run: str
    folder_label: str | None


def describe(path: Path, root: Path, name_pattern: str | None = None, *, path_labels: bool = False) -> SourceInfo:
    """Subject, session and run of a recording from its path.

    In order: the user regex ``name_pattern`` (named groups ``subject``/``session``/``run``,
    searched in the path relative to ``root``); BIDS-like ``sub-<x>``, ``ses-<x>``,
    ``run-<x>`` entities (the last occurrence in the relative path, so the file name
    wins over folders); PhysioNet's ``S001R04`` (subject "001", run "04"); else the
    subject is the file stem. Missing session/run are "1". ASCII segments have no
    subject in their names: subject "all", session = parent folder, run = stem,
    folder_label = parent folder (Bonn: "A_Z" ... "E_S"), each overridable by the pattern.
    With ``path_labels`` (MAT files labelled by their folder, ``mat.label_key: null``), MAT
    files default the same way (one segment per file is no subject of its own), while
    ``sub-``/``S001R04`` names and the pattern still give subjects.

    Raises:
        EEGInputError: The file has no known format, or does not match ``name_pattern``.
    """
    path, root = Path(path), Path(root)
    fmt = format_of(path)
    if fmt is None:
        raise EEGInputError(f"{path}: not an EEG recording (known suffixes: {sorted(FORMATS)})")
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    name = path.name
    stem = name[: -len(".fif.gz")] if name.lower().endswith(".fif.gz") else path.stem
    parent = path.parent.name if path.parent != root and "/" in rel else None

    found: dict[str, str] = {}
    if name_pattern:
        m = re.search(name_pattern, rel)
        if m is None:
            raise EEGInputError(f"{rel}: does not match name_pattern {name_pattern!r}")
        found = {
            k: v for k, v in m.groupdict().items() if v is not None and k in ("subject", "session", "run")
        }
    elif fmt != "ascii":
        for key, entity in (("subject", "sub"), ("session", "ses"), ("run", "run")):
            hits = re.findall(rf"(?:^|[/_.]){entity}-([A-Za-z0-9]+)", rel)
            if hits:
                found[key] = hits[-1]
        if not found:
            m = re.match(r"S(\d{3})R(\d{2})", name)
            if m:
                found = {"subject": m.group(1), "run": m.group(2)}
    segment = fmt == "ascii" or (fmt == "mat" and path_labels)
    if segment:
        defaults = {"subject": "all", "session": parent or "1", "run": stem}
    else:
        defaults = {"subject": stem, "session": "1", "run": "1"}
    ids = {**defaults, **found}
    return SourceInfo(
        path=path,
        format=fmt,
        subject=ids["subject"],
        session=ids["session"],
        run=ids["run"],
        folder_label=parent if segment else None,
    )
