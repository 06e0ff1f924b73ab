"""EEG readers of the ``eeg`` domain: fetch sources, name them, read recordings and epochs.

Pure functions with plain arguments (no params objects), so the ingest stage and the
tests call them alike. Three kinds of input:

* **continuous recordings with events** (EDF/EDF+, BDF, GDF, FIF, BrainVision), read
  through MNE into a :class:`Recording`: the raw data (EEG channels only) and the sample
  index and class of every event the caller's ``event_map`` names. Events come from
  annotations (EDF+ TAL, GDF event table, BrainVision markers, FIF annotations) or from
  a stim channel.
* **already-epoched MATLAB files** (v5 through SciPy, v7.3/HDF5 through h5py), read by
  :func:`read_mat` into an :class:`EpochSet` ``(n, C, T)``.
* **single-channel ASCII segments**, one number per line, the class in the folder name
  (the Bonn epilepsy layout ``A_Z/Z001.txt`` ... ``E_S/S100.txt``), read by
  :func:`read_ascii_segments` into an :class:`EpochSet` ``(n, 1, T)``.

:func:`fetch_sources` first brings every source (local paths, folders, globs, fsspec
URLs, ``.zip`` archives) into one local folder; :func:`describe` names subject,
session and run of each file from its path. Every error on bad input is an
:class:`EEGInputError` whose message names the file and the field, key, entry or value
at fault. Units: MNE returns volts; MAT and ASCII data are returned in the units the
file stores (often microvolts) -- the caller scales them.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import stat
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks import store

if TYPE_CHECKING:
    import mne


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

MNE_FORMATS: tuple[str, ...] = ("edf", "bdf", "gdf", "fif", "brainvision")
"""Formats :func:`read_recording` reads (continuous recordings with events)."""

# Documentation files that share a recording suffix (README.txt beside Bonn segments).
_NOT_RECORDINGS = {"readme", "license", "licence", "changes", "changelog", "citation", "notes"}
_GLOB_CHARS = "*?["
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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
def fetch_sources(
    source: str | list[str],
    target: Path,
    cache: Path,
    *,
    retries: int = 3,
    delay_s: float = 0.5,
) -> list[Path]:
    """Bring every recording named by ``source`` into the local folder ``target``.

    ``source`` is one or several local paths, folders (walked recursively), globs or
    fsspec URLs (``s3://bucket/eeg/*.edf``, ``memory://x``). Files keep their names
    relative to the folder given, or to the fixed part of a glob (``data/*/*.txt`` keeps
    ``A_Z/Z001.txt``), because folder names can carry labels (Bonn). Remote files are
    downloaded into ``cache`` first (retried on transient network errors). A ``.zip``
    archive is extracted into ``target/<zip stem>/`` after every entry was checked: an
    entry with an absolute path, a drive letter, a ``..`` component or a symlink
    rejects the whole archive before anything is extracted. A BrainVision ``.vhdr``
    brings the data and marker files its header names.

    The caller owns ``target`` and writes it atomically (:func:`tasks.store.atomic_dir`),
    so on an error this function just raises.

    Args:
        source: A path/URL/glob or a list of them.
        target: Existing folder to write into.
        cache: Existing folder for downloads of remote files.
        retries: Retries of a remote listing or download on transient errors.
        delay_s: First delay between retries (doubles each try).

    Returns:
        The recording files written to ``target`` (those :func:`format_of` knows), sorted.

    Raises:
        EEGInputError: A source matches nothing, two sources give the same file name,
            an archive is unsafe or corrupt, a sidecar is missing, or no recording was found.
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
        for url, rel in _expand(str(src), retries, delay_s):
            if any(part.startswith(".") for part in rel.split("/")):
                continue  # .git, .dvc, editor and OS droppings inside a walked folder
            if rel.lower().endswith(".zip"):
                if claim(rel, url):
                    archive = _local(url, rel, cache, retries, delay_s)
                    for entry in _extract_zip(archive, target / rel[:-4], display=url):
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
                    if claim(side_rel, side_url):
                        try:
                            _bring(side_url, side_rel, target, cache, retries, delay_s)
                        except EEGInputError:
                            raise EEGInputError(
                                f"{url}: the BrainVision header names {posixpath.basename(side_rel)!r}, "
                                "which is missing beside it"
                            ) from None

    recordings = sorted(p for p in written if format_of(p) is not None)
    if not recordings:
        known = ", ".join(sorted(set(FORMATS)) + [".zip"])
        raise EEGInputError(f"no EEG recording found in {sources} (known suffixes: {known})")
    return recordings


def _expand(src: str, retries: int, delay_s: float) -> list[tuple[str, str]]:
    """``(url, relative name)`` of every file ``src`` names: a file, a folder (recursively) or a glob."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(src)
    is_glob = any(ch in src for ch in _GLOB_CHARS)
    remote = store.is_remote(src)

    def unstrip(p: str) -> str:
        return fs.unstrip_protocol(p) if remote else p

    if not is_glob and store.retry(lambda: fs.isdir(path), retries=retries, delay_s=delay_s, what=src):
        base = path.rstrip("/")
        files = store.retry(lambda: fs.find(base), retries=retries, delay_s=delay_s, what=f"listing {src}")
        return [(unstrip(p), posixpath.relpath(p, base)) for p in sorted(files)]
    try:
        urls = store.retry(
            lambda: store.expand_urls(src), retries=retries, delay_s=delay_s, what=f"listing {src}"
        )
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise EEGInputError(f"EEG source {src!r}: {exc}") from None
    if not is_glob:
        return [(urls[0], posixpath.basename(path))]
    # names relative to the folder before the first wildcard keep the folder structure under it
    fixed = path[: min(path.find(ch) for ch in _GLOB_CHARS if ch in path)]
    base = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
    out = []
    for url in urls:
        p = fsspec.core.url_to_fs(url)[1] if remote else url
        out.append((url, posixpath.relpath(p, base) if base else p.lstrip("/")))
    return out


def _local(url: str, rel: str, cache: Path, retries: int, delay_s: float) -> Path:
    """A local path for ``url``: the path itself, or a download into ``cache/rel``.

    Downloads go to a temporary name first, so an interrupted one never looks complete.
    """
    if not store.is_remote(url):
        return Path(url.removeprefix("file://"))
    import fsspec

    out = cache / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")

    def fetch() -> Path:
        with fsspec.open(url, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 22)
        tmp.replace(out)
        return out

    try:
        return store.retry(fetch, retries=retries, delay_s=delay_s, what=f"downloading {url}")
    except FileNotFoundError:
        raise EEGInputError(f"EEG source {url}: no such file") from None
    finally:
        tmp.unlink(missing_ok=True)


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


def _extract_zip(archive: Path, dest: Path, display: str) -> list[Path]:
    """Extract ``archive`` into ``dest`` after checking every entry; the files written, sorted.

    Zip entries are untrusted paths: ``zipfile.extractall`` sanitises some of them
    silently, but a rejected archive should say which entry is at fault and leave
    nothing behind, so the whole table of contents is checked before the first write.
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
        written = []
        root = dest.resolve()
        for info, rel in entries:
            out = dest / rel
            if not out.resolve().is_relative_to(root):  # defence in depth against odd separators
                raise EEGInputError(f"{display}: unsafe archive entry {info.filename!r}")
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 22)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
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
        folder_label: ASCII segments: the parent folder (the class in the Bonn layout); else None.
    """

    path: Path
    format: str
    subject: str
    session: str
    run: str
    folder_label: str | None


def describe(path: Path, root: Path, name_pattern: str | None = None) -> SourceInfo:
    """Subject, session and run of a recording from its path.

    In order: the user regex ``name_pattern`` (named groups ``subject``/``session``/``run``,
    searched in the path relative to ``root``); BIDS-like ``sub-<x>``, ``ses-<x>``,
    ``run-<x>`` entities (the last occurrence in the relative path, so the file name
    wins over folders); PhysioNet's ``S001R04`` (subject "001", run "04"); else the
    subject is the file stem. Missing session/run are "1". ASCII segments have no
    subject in their names: subject "all", session = parent folder, run = stem,
    folder_label = parent folder (Bonn: "A_Z" ... "E_S"), each overridable by the pattern.

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
    if fmt == "ascii":
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
        folder_label=parent if fmt == "ascii" else None,
    )


# ============================================================================ MNE recordings
@dataclass
class Recording:
    """A continuous recording with labelled events.

    Attributes:
        raw: Preloaded MNE raw, EEG channels only (stim/EOG/misc dropped after the events were read), volts.
        onsets: (n,) int64 sample index of each kept event, relative to the first sample of ``raw``.
        labels: (n,) class name of each event (after ``event_map``).
        source: File name, for messages.
    """

    raw: mne.io.BaseRaw
    onsets: np.ndarray
    labels: list[str]
    source: str


_MNE_NAMES = {"edf": "EDF", "bdf": "BDF", "gdf": "GDF", "fif": "FIF", "brainvision": "BrainVision"}


def read_recording(
    path: Path, fmt: str, *, event_map: dict[str, str], stim_channel: str | None = None,
    allow_empty: bool = False,
) -> Recording:
    """Read a continuous recording and its mapped events through MNE.

    Events come from annotations (``mne.events_from_annotations``) when ``stim_channel``
    is None, else from that channel (``mne.find_events``). ``event_map`` maps an
    annotation description (``"T1"``, ``"769"``, ``"Stimulus/S  1"``) or a stim code as
    a string (``"1"``) to a class name; other events (PhysioNet's ``T0`` rest, BAD
    spans) are ignored.

    Args:
        path: The file (for BrainVision, the ``.vhdr``).
        fmt: One of :data:`MNE_FORMATS`.
        event_map: Event description or code -> class name.
        stim_channel: Name of the trigger channel, or None for annotations.
        allow_empty: Return a recording without events instead of raising (continuous recordings cut
            into windows, where unannotated time is the background class; scoring).

    Returns:
        The recording, EEG channels only, preloaded, with events in time order.

    Raises:
        EEGInputError: The file is unreadable (truncated, corrupt header), has no EEG
            channel, no events, none of the mapped ones, or no channel ``stim_channel``.
    """
    import mne

    path = Path(path)
    if fmt not in MNE_FORMATS:
        raise EEGInputError(f"{path.name}: read_recording reads {MNE_FORMATS}, not {fmt!r}")
    if not event_map and not allow_empty:
        raise EEGInputError(f"{path.name}: event_map is empty; name the events to keep")
    readers = {
        "edf": mne.io.read_raw_edf,
        "bdf": mne.io.read_raw_bdf,
        "gdf": mne.io.read_raw_gdf,
        "fif": mne.io.read_raw_fif,
        "brainvision": mne.io.read_raw_brainvision,
    }
    name = path.name
    try:
        # MNE only warns when an EDF/BDF holds fewer records than its header says and then
        # reads what is there; for an ingest that is a truncated copy, so the warning is caught
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = readers[fmt](path, preload=False, verbose="warning")
    except Exception as exc:  # MNE raises ValueError, RuntimeError, struct/Unicode errors... on bad files
        raise EEGInputError(
            f"{name}: not a readable {_MNE_NAMES[fmt]} file: {type(exc).__name__}: {exc}"
        ) from None
    if fmt in ("edf", "bdf") and _header_records(path) != -1:  # -1: "unknown" (recording not closed)
        for w in caught:
            if "does not match the file size" in str(w.message):
                raise EEGInputError(
                    f"{name}: not a readable {_MNE_NAMES[fmt]} file: truncated (the header promises "
                    f"{_header_records(path)} data records, the file holds fewer)"
                )

    if allow_empty:
        # Events are optional here: read what is there, keep the mapped ones, never complain.
        if stim_channel is None and len(raw.annotations):
            events, ids = mne.events_from_annotations(raw, verbose="error")
            code_to_desc = {code: desc for desc, code in ids.items()}
            descs = [code_to_desc[c] for c in events[:, 2]]
        elif stim_channel is not None and stim_channel in raw.ch_names:
            events = mne.find_events(raw, stim_channel=stim_channel, shortest_event=1, initial_event=True,
                                     verbose="error")
            descs = [str(int(c)) for c in events[:, 2]]
        else:
            events, descs = np.zeros((0, 3), np.int64), []
    elif stim_channel is None:
        if len(raw.annotations) == 0:
            raise EEGInputError(f"{name}: no events (the file has no annotations)")
        events, ids = mne.events_from_annotations(raw, verbose="error")
        code_to_desc = {code: desc for desc, code in ids.items()}
        descs = [code_to_desc[c] for c in events[:, 2]]
        what = "annotations"
    else:
        if stim_channel not in raw.ch_names:
            shown = raw.ch_names[:20] + (["..."] if len(raw.ch_names) > 20 else [])
            raise EEGInputError(f"{name}: no stim channel {stim_channel!r}; channels: {shown}")
        try:
            events = mne.find_events(
                raw, stim_channel=stim_channel, shortest_event=1, initial_event=True, verbose="error"
            )
        except Exception as exc:
            raise EEGInputError(f"{name}: cannot read events from {stim_channel!r}: {exc}") from None
        descs = [str(int(c)) for c in events[:, 2]]
        what = f"events on {stim_channel!r}"
    if len(descs) == 0 and not allow_empty:
        raise EEGInputError(f"{name}: no events ({what} hold none)")
    keep = np.array([d in event_map for d in descs], dtype=bool)
    if not keep.any() and not allow_empty:
        raise EEGInputError(f"{name}: no events among {sorted(event_map)}; found: {sorted(set(descs))}")

    onsets = (events[keep, 0] - raw.first_samp).astype(np.int64)
    labels = [event_map[d] for d, k in zip(descs, keep, strict=True) if k]
    order = np.argsort(onsets, kind="stable")
    onsets, labels = onsets[order], [labels[i] for i in order]

    types = set(raw.get_channel_types())
    if "eeg" not in types:
        raise EEGInputError(f"{name}: no EEG channel (channel types: {sorted(types)})")
    raw.pick("eeg")
    # Some EDF writers pad labels to a fixed width with dots (PhysioNet: "Fc4.", "C3.."); use the
    # 10-20 names so channel lists in params and montages match.
    stripped = {n: n.rstrip(".") for n in raw.ch_names if n.rstrip(".") and n.rstrip(".") != n}
    if stripped and len(set(raw.ch_names) - set(stripped) | set(stripped.values())) == len(raw.ch_names):
        raw.rename_channels(stripped, verbose="error")
    try:
        raw.load_data(verbose="error")
    except Exception as exc:  # a header that promises more data than the file holds
        raise EEGInputError(
            f"{name}: not a readable {_MNE_NAMES[fmt]} file: {type(exc).__name__}: {exc}"
        ) from None
    return Recording(raw=raw, onsets=onsets, labels=labels, source=name)


def _header_records(path: Path) -> int | None:
    """The number of data records an EDF/BDF header declares (bytes 236-244), None if unreadable."""
    with open(path, "rb") as fh:
        fh.seek(236)
        try:
            return int(fh.read(8).decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return None


# ============================================================================ epoched data
@dataclass
class EpochSet:
    """Already-epoched data (MAT files, ASCII segments).

    Attributes:
        data: (n, C, T) float64, in the units the source stores (MAT/ASCII are often microvolts).
        labels: (n,) class name of each epoch.
        sfreq: Sampling rate in Hz.
        ch_names: (C,) channel names.
        source: File or folder name, for messages.
    """

    data: np.ndarray
    labels: list[str]
    sfreq: float
    ch_names: list[str]
    source: str


_AXES = ("trials", "channels", "samples")


def read_mat(
    path: Path,
    *,
    data_key: str,
    label_key: str,
    sfreq: float | None = None,
    sfreq_key: str | None = None,
    layout: str = "trials,channels,samples",
    ch_names_key: str | None = None,
    label_map: dict[str, str] | None = None,
) -> EpochSet:
    """Read epochs and their labels from a MATLAB file (v5 via SciPy, v7.3/HDF5 via h5py).

    ``layout`` names the axes of the data array as MATLAB shows them (``size(X)``), any
    permutation of trials, channels, samples. MATLAB drops trailing singleton axes, so a
    2-D array gets a trailing axis of 1 (one-channel data ``[trials x samples x 1]``).
    h5py shows a v7.3 array with its axes reversed; it is transposed back to MATLAB order
    first, so one ``layout`` describes a file saved either way. Keys may name struct
    fields with dots (``"eeg.X"``). Labels (numbers, char rows or a cell of strings) are
    converted to strings (``1.0`` -> ``"1"``) and mapped through ``label_map`` when given.

    Args:
        path: The ``.mat`` file.
        data_key: Variable holding the data.
        label_key: Variable holding one label per trial.
        sfreq: Sampling rate in Hz, when the file does not hold it.
        sfreq_key: Variable holding the sampling rate (wins over ``sfreq``; both must agree).
        layout: Axes of the data in MATLAB order, comma-separated.
        ch_names_key: Variable holding the channel names (default ``EEG1``, ``EEG2``, ...).
        label_map: Label (as a string) -> class name; a label not in it is an error.

    Returns:
        The epochs ``(n, C, T)`` in the file's units.

    Raises:
        EEGInputError: Unreadable file; a missing key (the message lists the keys that
            exist); wrong number of dimensions; label count != trial count; an unmapped
            label; no sampling rate; bad ``layout``.
    """
    path = Path(path)
    name = path.name
    axes = [a.strip() for a in layout.split(",")]
    if sorted(axes) != sorted(_AXES):
        raise EEGInputError(f"{name}: layout {layout!r} must be a permutation of {','.join(_AXES)}")
    if sfreq is None and sfreq_key is None:
        raise EEGInputError(f"{name}: give sfreq or sfreq_key (the file's sampling rate is unknown)")
    reader = _Hdf5Mat(path) if _is_hdf5(path) else _V5Mat(path)
    with reader:
        x = reader.get(data_key, "data")
        raw_labels = reader.get(label_key, "labels")
        file_sfreq = reader.get(sfreq_key, "sfreq") if sfreq_key else None
        names = (
            reader.strings(reader.get(ch_names_key, "channel names"), ch_names_key) if ch_names_key else None
        )
        labels = reader.strings(raw_labels, label_key)

    if x.dtype.kind not in "iufb":
        raise EEGInputError(f"{name}: {data_key!r} is not a numeric array (MATLAB class of dtype {x.dtype})")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise EEGInputError(f"{name}: {data_key!r} has {x.ndim} dimensions {x.shape}; expected 3 ({layout})")
    x = np.ascontiguousarray(np.transpose(x, [axes.index(a) for a in _AXES]), dtype=np.float64)  # (n, C, T)
    n, c, _ = x.shape
    if len(labels) != n:
        raise EEGInputError(
            f"{name}: {label_key!r} holds {len(labels)} labels but {data_key!r} has {n} trials"
        )
    if label_map is not None:
        bad = sorted({lab for lab in labels if lab not in label_map})
        if bad:
            raise EEGInputError(
                f"{name}: label {bad[0]!r} in {label_key!r} is not in label_map {sorted(label_map)}"
            )
        labels = [label_map[lab] for lab in labels]

    rate = sfreq
    if sfreq_key is not None:
        values = (
            np.asarray(file_sfreq, dtype=float).ravel() if file_sfreq.dtype.kind in "iufb" else np.array([])
        )
        if values.size != 1 or not np.isfinite(values[0]) or values[0] <= 0:
            raise EEGInputError(f"{name}: {sfreq_key!r} must hold one positive number, got {file_sfreq!r}")
        rate = float(values[0])
        if sfreq is not None and not np.isclose(sfreq, rate):
            raise EEGInputError(f"{name}: {sfreq_key!r} says {rate} Hz but sfreq={sfreq} was given")
    if rate is None or rate <= 0:
        raise EEGInputError(f"{name}: sfreq must be positive, got {rate}")
    if names is None:
        names = [f"EEG{i + 1}" for i in range(c)]
    elif len(names) != c:
        raise EEGInputError(
            f"{name}: {ch_names_key!r} holds {len(names)} names but the data have {c} channels"
        )
    return EpochSet(data=x, labels=labels, sfreq=float(rate), ch_names=names, source=name)


def _is_hdf5(path: Path) -> bool:
    """True for an HDF5 file; MATLAB v7.3 puts its signature after a 512-byte userblock."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise EEGInputError(f"{path.name}: cannot read: {exc}") from None
    return any(head[off : off + 8] == _HDF5_SIGNATURE for off in (0, 512, 1024, 2048))


def _label_str(v: Any) -> str:
    """A label as a string: integral numbers without ``.0``, text stripped."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace").strip()
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, np.generic | float | int):
        f = float(v)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(v).strip()


class _V5Mat:
    """A MATLAB v4-v7.2 file through :func:`scipy.io.loadmat`, with struct fields by dotted key."""

    def __init__(self, path: Path):
        import scipy.io

        self.name = path.name
        try:
            # struct_as_record=False gives attribute access to struct fields; no squeezing, so
            # shapes are MATLAB's (2-D at least)
            self.vars = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=False)
        except Exception as exc:
            raise EEGInputError(
                f"{self.name}: not a readable MATLAB file: {type(exc).__name__}: {exc}"
            ) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get(self, key: str, what: str) -> np.ndarray:
        node: Any = self.vars
        done: list[str] = []
        for part in key.split("."):
            if isinstance(node, np.ndarray) and node.dtype == object and node.size == 1:
                node = node.flat[0]  # a 1x1 struct
            if isinstance(node, dict):
                keys = sorted(k for k in node if not k.startswith("__"))
            else:
                keys = sorted(getattr(node, "_fieldnames", []) or [])
            if part not in keys:
                where = f" in {'.'.join(done)!r}" if done else ""
                raise EEGInputError(f"{self.name}: no {what} key {key!r}{where}; keys: {keys}")
            node = node[part] if isinstance(node, dict) else getattr(node, part)
            done.append(part)
        return np.asarray(node)

    def strings(self, arr: np.ndarray, key: str) -> list[str]:
        if arr.dtype.kind in "US":  # char matrix: one string per row
            return [_label_str(s) for s in arr.ravel()]
        if arr.dtype == object:  # cell array, column-major like MATLAB's (:)
            return [_cell_str(v, self.name, key) for v in arr.ravel(order="F")]
        _vector_check(arr, self.name, key)
        return [_label_str(v) for v in arr.ravel()]


def _cell_str(v: Any, name: str, key: str) -> str:
    v = np.asarray(v)
    if v.dtype.kind in "US":
        return "".join(_label_str(s) for s in v.ravel())
    if v.dtype.kind in "iufb" and v.size == 1:
        return _label_str(v.ravel()[0])
    raise EEGInputError(f"{name}: {key!r} holds a cell that is neither text nor one number: {v!r}")


def _vector_check(arr: np.ndarray, name: str, key: str) -> None:
    if arr.dtype.kind not in "iufb":
        raise EEGInputError(f"{name}: {key!r} holds {arr.dtype} values, expected numbers or text")
    if sum(d > 1 for d in arr.shape) > 1:
        raise EEGInputError(f"{name}: {key!r} must be a vector (one value per trial), got shape {arr.shape}")


class _Hdf5Mat:
    """A MATLAB v7.3 file through h5py; arrays come back in MATLAB's axis order."""

    def __init__(self, path: Path):
        self.name = path.name
        try:
            import h5py
        except ImportError:
            raise EEGInputError(
                f"{self.name}: a MATLAB v7.3 (HDF5) file needs h5py: pip install h5py"
            ) from None
        self.h5py = h5py
        try:
            self.f = h5py.File(path, "r")
        except Exception as exc:
            raise EEGInputError(
                f"{self.name}: not a readable MATLAB v7.3 file: {type(exc).__name__}: {exc}"
            ) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def _node(self, key: str, what: str):
        node = self.f
        done: list[str] = []
        for part in key.split("."):
            keys = sorted(k for k in node.keys() if not k.startswith("#")) if hasattr(node, "keys") else []
            if part not in keys:
                where = f" in {'.'.join(done)!r}" if done else ""
                raise EEGInputError(f"{self.name}: no {what} key {key!r}{where}; keys: {keys}")
            node = node[part]
            done.append(part)
        if not isinstance(node, self.h5py.Dataset):
            raise EEGInputError(f"{self.name}: {key!r} is a struct/group, not an array")
        return node

    def get(self, key: str, what: str) -> np.ndarray:
        return self._node(key, what)[()].T  # h5py sees MATLAB's column-major array reversed

    def strings(self, arr: np.ndarray, key: str) -> list[str]:
        ds = self._node(key, "labels")
        cls = ds.attrs.get("MATLAB_class", b"")
        cls = cls.decode() if isinstance(cls, bytes) else str(cls)
        if cls == "char":  # uint16 code units, one string per MATLAB row
            rows = np.atleast_2d(arr)
            return ["".join(map(chr, row)).rstrip("\x00").strip() for row in rows]
        if arr.dtype == object or arr.dtype.kind == "O":  # cell: object references
            return [self._ref_str(r, key) for r in arr.ravel(order="F")]
        _vector_check(arr, self.name, key)
        return [_label_str(v) for v in arr.ravel()]

    def _ref_str(self, ref, key: str) -> str:
        ds = self.f[ref]
        cls = ds.attrs.get("MATLAB_class", b"")
        cls = cls.decode() if isinstance(cls, bytes) else str(cls)
        v = ds[()]
        if cls == "char":
            return "".join(map(chr, np.ravel(v, order="F"))).strip()
        v = np.asarray(v)
        if v.dtype.kind in "iufb" and v.size == 1:
            return _label_str(v.ravel()[0])
        raise EEGInputError(f"{self.name}: {key!r} holds a cell that is neither text nor one number")


def read_ascii_segments(
    paths: list[Path],
    root: Path,
    *,
    sfreq: float,
    label_map: dict[str, str] | None = None,
    ch_name: str = "EEG",
) -> EpochSet:
    """Read single-channel ASCII segments (one number per line), labelled by their folder.

    The Bonn layout: ``<root>/A_Z/Z001.txt`` ... ``<root>/E_S/S100.txt``, the folder
    being the class. With ``label_map``, folders not in it are skipped (a 2-class
    subset of Bonn); without it, the folder name is the label.

    Args:
        paths: The segment files (e.g. from :func:`fetch_sources`), each in a class folder.
        root: The folder the paths are relative to (for messages and :func:`describe`).
        sfreq: Sampling rate in Hz (Bonn: 173.61).
        label_map: Folder name -> class name.
        ch_name: Name of the one channel.

    Returns:
        Epochs ``(n, 1, T)`` in the file's units, in the order of ``paths`` sorted.

    Raises:
        EEGInputError: A non-numeric line (file and line number), segments of different
            lengths (file and both lengths), a file outside a folder, or no segment left.
    """
    if sfreq <= 0:
        raise EEGInputError(f"ASCII segments under {root}: sfreq must be positive, got {sfreq}")
    root = Path(root)
    chosen: list[tuple[Path, str]] = []
    folders: set[str] = set()
    for p in sorted(Path(q) for q in paths):
        folder = describe(p, root).folder_label
        if folder is None:
            raise EEGInputError(f"{p}: an ASCII segment must lie in a folder named after its class")
        folders.add(folder)
        if label_map is None:
            chosen.append((p, folder))
        elif folder in label_map:
            chosen.append((p, label_map[folder]))
    if not chosen:
        raise EEGInputError(
            f"no ASCII segment under {root} in the folders of label_map {sorted(label_map or {})}; "
            f"folders found: {sorted(folders)}"
        )
    segments, labels = [], []
    first: tuple[Path, int] | None = None
    for p, label in chosen:
        x = _read_column(p, root)
        if first is None:
            first = (p, len(x))
        elif len(x) != first[1]:
            raise EEGInputError(
                f"{_rel(p, root)}: {len(x)} samples, but {_rel(first[0], root)} has {first[1]}; "
                "all segments must have the same length"
            )
        segments.append(x)
        labels.append(label)
    data = np.stack(segments)[:, None, :]  # (n, 1, T)
    return EpochSet(data=data, labels=labels, sfreq=float(sfreq), ch_names=[ch_name], source=root.name)


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _read_column(p: Path, root: Path) -> np.ndarray:
    """One number per line as float64; on a bad line, name it (1-based) exactly."""
    try:
        # numpy's C parser: Bonn's 500 x 4097 lines take well under a second; blank lines are skipped
        x = np.loadtxt(p, dtype=np.float64, ndmin=2, encoding="latin-1")
    except ValueError:
        x = None
    if x is not None and x.shape[1] == 1 and x.shape[0] > 0:
        return x[:, 0]
    for i, line in enumerate(p.read_bytes().decode("latin-1").splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        try:
            float(s)
        except ValueError:
            raise EEGInputError(f"{_rel(p, root)}: line {i} is not a number: {s[:40]!r}") from None
    raise EEGInputError(f"{_rel(p, root)}: holds no numbers")
