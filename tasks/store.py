"""Artifact paths, fsspec I/O, atomic writes and content hashes.

Every stage reads its inputs and writes its outputs through this module, so the
layout lives in one place (:class:`DomainPaths`) and every write is atomic: a
file is written to a temporary name beside its target and renamed; a folder is
built in a temporary sibling and swapped in only when the stage succeeded. A
failing stage therefore leaves the previous outputs untouched and nothing
half-written behind. Files and folders are fsync'd before the rename and their
parent folder after it, so a power cut cannot leave a renamed but empty file.

A process killed outright (``kill -9``, the OOM killer) runs no clean-up: its
temporary names (which carry its pid) stay behind, and a kill between the two
renames of :func:`atomic_dir` leaves the previous folder under an ``.old-`` name
with the target missing. :func:`recover` puts both right when the next stage
starts, under the per-domain :func:`lock` that makes one stage at a time write
a domain's outputs.

Every URL that is logged or written down goes through :func:`redact_url` (or
:func:`redact` for a message or a manifest): user-info and query strings, where
credentials and signatures live, never reach MLflow, a manifest or a log.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def project_root() -> Path:
    """The project folder: ``$FORMERFLOW_ROOT`` if set, else the current directory."""
    return Path(os.environ.get("FORMERFLOW_ROOT") or os.getcwd()).resolve()


@dataclass(frozen=True)
class DomainPaths:
    """Where each stage of one domain reads and writes (see DESIGN.md "Artifacts")."""

    domain: str
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw" / self.domain

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed" / self.domain

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts" / self.domain

    @property
    def teacher(self) -> Path:
        return self.artifacts / "teacher"

    @property
    def baselines(self) -> Path:
        return self.artifacts / "baselines"

    @property
    def compressed(self) -> Path:
        return self.artifacts / "compressed"

    @property
    def reports(self) -> Path:
        return self.root / "reports" / self.domain

    @property
    def checkpoints(self) -> Path:
        """Resumable training state; outside DVC's outputs so a re-run can resume from it."""
        return self.root / "checkpoints" / self.domain


def domain_paths(domain: str, root: Path | None = None) -> DomainPaths:
    return DomainPaths(domain, (root or project_root()).resolve())


# ----------------------------------------------------------------------------- atomic writes
_SEQUENCE = itertools.count()  # two threads of one process never draw the same temporary name


def _temp_name(target: Path, tag: str = "") -> Path:
    """A temporary sibling of ``target`` that names its owner: ``.<name>.<pid>-<unique>.tmp<tag>``.

    The pid lets :func:`recover` tell a live writer's temporary from one a killed process left.
    """
    return target.with_name(f".{target.name}.{os.getpid()}-{time.monotonic_ns()}_{next(_SEQUENCE)}.tmp{tag}")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file, fsync and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            view = memoryview(data)
            fh.write(view[: len(view) // 2])
            fh.flush()
            fault_point("atomic_write.partial", path.name)  # test hook: a kill with half the file written
            fh.write(view[len(view) // 2 :])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename in it, a new file) to disk."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a platform that cannot open a folder (Windows): its renames are durable on their own
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder (EINVAL); the rename is still atomic there
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """fsync every file under ``path`` (or ``path`` itself, a file), then every folder, deepest first."""
    path = Path(path)
    if not path.is_dir():
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return
    for dirpath, _, filenames in os.walk(path, topdown=False):
        for name in filenames:
            file = os.path.join(dirpath, name)
            if not os.path.islink(file):
                fsync_tree(file)
        fsync_dir(dirpath)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling and swap it in on success.

    On an exception the temporary folder is removed and ``target`` is left as it
    was, so no stage ever leaves a half-written output folder. The new folder is
    fsync'd before the swap. The swap is two renames (``target`` to
    ``.<name>.old-<pid>-<n>``, the new folder to ``target``); a process killed
    between them leaves ``target`` missing and the old folder beside it, which
    :func:`recover` renames back.

    Yields:
        The temporary folder to write into.
    """
    target = Path(target)
    created = [p for p in reversed(target.parents) if not p.exists()]  # parents made here, outermost first
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    tmp.mkdir()
    try:
        yield tmp
        fault_point("atomic_dir.before_swap", target.name)  # test hook: the new folder written, not swapped in
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in reversed(created):  # leave no empty data/raw behind either
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
    if target.exists():
        os.replace(target, old)
    try:
        fault_point("atomic_dir.between_renames", target.name)  # test hook: target moved away, new not in
        os.replace(tmp, target)
    except BaseException:
        if old.exists():
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)
    fault_point("atomic_dir.after_swap", target.name)  # test hook: swapped in, the old folder not yet removed
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that is renamed onto it when the block succeeds.

    For writers that want a path rather than bytes (Parquet, HDF5, NetCDF, EDF, a copied
    folder): write to the yielded path; on success it is fsync'd and replaces ``target`` in
    one rename, on an exception it is removed and ``target`` is left as it was. The
    temporary name keeps ``target``'s last suffix, for writers that pick the format by
    suffix (``mne.export``).

    Yields:
        The temporary path (a file or a folder may be created there).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target, target.suffix)
    try:
        yield tmp
        fault_point("atomic_path.before_rename", target.name)  # test hook: written, not renamed
        fsync_tree(tmp)
        if target.is_dir() and tmp.is_dir():
            shutil.rmtree(target)  # os.replace cannot put a folder over a non-empty folder
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------- recovery after a kill
# The names the writers above give their temporaries and the old folder of a swap; ``name`` is the target's.
_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp(?:\.[A-Za-z0-9]+)?$")
_OLD_NAME = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)-(?P<n>\d+)$")
# Before the temporaries carried a pid, atomic_dir used tempfile.mkdtemp: ``.<name>.<8 random>.tmp``.
_LEGACY_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def _leftover(entry: str) -> tuple[str, str, int | None] | None:
    """``(kind, target name, owner pid)`` of a temporary or old-folder name (pid None: unknown), or None."""
    for kind, pattern in (("old", _OLD_NAME), ("tmp", _TMP_NAME), ("tmp", _LEGACY_TMP_NAME)):
        m = pattern.match(entry)
        if m:
            pid = m.groupdict().get("pid")
            return kind, m["name"], int(pid) if pid else None
    return None


def process_alive(pid: int) -> bool:
    """True when a process with this pid runs on this machine (a zombie counts as gone)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:  # a killed child its parent has not reaped yet still answers kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def recover(target: str | Path) -> list[str]:
    """Put ``target`` right after a writer was killed, and say what was done.

    * ``target`` missing with an ``.<name>.old-*`` folder beside it (a kill between the
      two renames of :func:`atomic_dir`): the old folder is renamed back, so the
      previous outputs are what the interrupted stage found;
    * old folders left beside an existing ``target`` (a kill after the swap) and
      temporaries (``.<name>.<pid>-*.tmp*``) are removed.

    Only leftovers whose owner process is gone are touched (a live writer's are not);
    call it holding the domain's :func:`lock`, so no live writer of ``target`` exists.

    Returns:
        One line per action, e.g. ``"restored data/raw/netflow from .netflow.old-123-456"``.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    olds: list[tuple[int, Path]] = []
    stale: list[Path] = []
    for entry in os.listdir(parent):
        found = _leftover(entry)
        if found is None or found[1] != target.name:
            continue
        kind, _, pid = found
        if pid is not None and process_alive(pid):
            continue
        if kind == "old":
            olds.append((int(_OLD_NAME.match(entry)["n"]), parent / entry))
        else:
            stale.append(parent / entry)
    actions = []
    olds.sort()
    if olds and not os.path.lexists(target):
        _, newest = olds.pop()  # the latest swap's previous folder
        os.replace(newest, target)
        actions.append(f"restored {target} from {newest.name}")
    for path in [p for _, p in olds] + stale:
        _remove(path)
        actions.append(f"removed {path}")
    if actions:
        fsync_dir(parent)
    return actions


def recover_tree(folder: str | Path) -> list[str]:
    """:func:`recover` for every target under ``folder`` that has leftovers beside it (checkpoints)."""
    folder = Path(folder)
    actions: list[str] = []
    if not folder.is_dir():
        return actions
    for dirpath, dirnames, filenames in os.walk(folder):
        names = {found[1] for entry in (*dirnames, *filenames) if (found := _leftover(entry))}
        for name in sorted(names):
            actions += recover(Path(dirpath) / name)
        dirnames[:] = [d for d in dirnames if _leftover(d) is None and (Path(dirpath) / d).is_dir()]
    return actions


# ----------------------------------------------------------------------------- locks
class LockHeldError(RuntimeError):
    """Another process (or thread) holds the lock; the message names it and what it runs."""


LOCKS_DIR = ".locks"


def lock_path(name: str, root: Path | None = None) -> Path:
    """The file behind lock ``name``: ``<project root>/.locks/<name>.lock``."""
    return (root or project_root()) / LOCKS_DIR / f"{name}.lock"


@contextlib.contextmanager
def lock(name: str, *, what: str, root: Path | None = None, timeout_s: float = 0.0,
         poll_s: float = 0.2) -> Iterator[Path]:
    """Hold the project's lock ``name`` for the block (``fcntl.flock`` on :func:`lock_path`).

    One helper for every lock of the project: the per-domain stage lock (``name`` = the
    domain, :func:`tasks.stages.run_stage`), and later a store-creation or whole-run lock
    under another name. The operating system releases the lock when the holder exits, however
    it exits (``kill -9`` included), so a lock is never left stale; the lock file stays and
    holds the last holder's pid, host, start time and ``what``, which the refusal quotes.
    Locks are per open file: a second ``lock(name)`` in the same process (another thread)
    is refused like another process's. flock works on local filesystems; on NFS use one
    machine per project root.

    Args:
        name: Lock name (a file name: the domain for stage locks).
        what: What the holder does, for the refusal message (``"ingest netflow"``).
        root: Project root (default :func:`project_root`).
        timeout_s: 0 (default): refuse at once when the lock is held; else wait up to this long.
        poll_s: How often to retry while waiting.

    Raises:
        LockHeldError: Still held after ``timeout_s``; names the holder's pid, host, what and since when.
    """
    path = lock_path(name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeldError(_held_message(path, name, what, timeout_s)) from None
                time.sleep(poll_s)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                  "since": time.strftime("%Y-%m-%d %H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock


def _held_message(path: Path, name: str, what: str, timeout_s: float) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('what')}, since {holder.get('since')})"
           if holder.get("pid") else "another process")
    waited = f" after waiting {timeout_s:g} s" if timeout_s > 0 else ""
    return (f"cannot {what}: the {name!r} lock ({path}) is held by {who}{waited}. Wait for it to finish, "
            f"or stop that process; a lock is released as soon as its holder exits.")


# ----------------------------------------------------------------------------- test hook
FAULT_ENV = "FORMERFLOW_FAULT"
_fault_counts: dict[str, int] = {}


def fault_point(point: str, name: str = "") -> None:
    """Test hook: kill this process (SIGKILL, like ``kill -9``) at a named point when asked to.

    ``$FORMERFLOW_FAULT=<point>[@<name>][#<n>]`` kills the process the ``n``-th time (default
    the first) it passes ``point``, for the target file or folder called ``name`` if given
    (``atomic_dir.between_renames@netflow``, ``checkpoint#2``). Unset, this does nothing.
    tests/flows/test_fault_injection.py uses it to check that a re-run after ``kill -9``
    recovers and writes what an uninterrupted run writes. Points: ``atomic_write.partial``,
    ``atomic_path.before_rename``, ``atomic_dir.before_swap``, ``atomic_dir.between_renames``,
    ``atomic_dir.after_swap`` (this module) and ``checkpoint`` (:func:`tasks.loop.fit`).
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    m = re.fullmatch(r"(?P<point>[\w.]+)(?:@(?P<name>[^#]+))?(?:#(?P<n>\d+))?", spec)
    if m is None or m["point"] != point or (m["name"] is not None and m["name"] != name):
        return
    _fault_counts[spec] = _fault_counts.get(spec, 0) + 1
    if _fault_counts[spec] == int(m["n"] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- hashing
def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file's bytes (the hash DVC records for a file)."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_hash(path: str | Path) -> str:
    """Content hash of a file or a folder (relative paths + file hashes, order-independent).

    Returns ``"missing"`` when the path does not exist, so it can be used in
    cache keys that must change when an output disappears.
    """
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    if not path.is_dir():
        return "missing"
    h = hashlib.md5()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue  # temp files, .gitignore
        h.update(rel.encode())
        h.update(file_md5(file).encode())
    return h.hexdigest() + ".dir"


# ----------------------------------------------------------------------------- fsspec I/O
def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _pattern_part(url: str) -> str:
    """The part of ``url`` where ``* ? [`` are wildcards: all of it, but for an HTTP URL's query string."""
    if url.split("://", 1)[0].lower() in ("http", "https"):
        return url.split("?", 1)[0]  # a signed URL's ?X-Amz-Signature=... is not a glob
    return url


def expand_urls(url: str) -> list[str]:
    """Expand a path, URL or glob into a sorted list of concrete file URLs/paths.

    Raises:
        FileNotFoundError: Nothing matches (the message names the pattern, redacted).
        PermissionError: The store refused the credentials (:func:`access_refused`).
        ValueError: Credentials written into an object-store URL (:func:`check_url_credentials`).
    """
    check_url_credentials(url)
    try:
        return _expand_urls(url)
    except PermissionError as exc:
        raise access_refused(url, exc) from None


def _expand_urls(url: str) -> list[str]:
    import fsspec  # lazy: fsspec loads its filesystem registry; most stages never fetch
    from fsspec.core import url_to_fs  # lazy: see above

    has_glob = any(ch in _pattern_part(url) for ch in "*?[")
    if not has_glob:
        fs, path = url_to_fs(url)
        paths = [path]
        try:
            fs.info(paths[0])
        except FileNotFoundError as exc:
            if is_transient(exc):
                raise  # unreachable, not missing: the caller retries
            raise FileNotFoundError(f"no such file: {redact_url(url)}") from None
        if fs.isdir(paths[0]):
            shown = redact_url(url)
            raise IsADirectoryError(f"{shown} is a folder: give a file or a glob such as {shown.rstrip('/')}/*.csv")
    else:
        fs, _, paths = fsspec.get_fs_token_paths(url)
    if not paths:
        raise FileNotFoundError(f"the pattern {redact_url(url)!r} matches no file")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return sorted(paths)
    return sorted(fs.unstrip_protocol(p) for p in paths)


def fetch_to_cache(url: str | Path, cache: str | Path, *, name: str | None = None, gunzip: bool = False,
                   retries: int = 0, delay_s: float = 0.5) -> Path:
    """A local path for ``url``, the one way every ingest brings a source in.

    A local path (or ``file://`` URL) is returned as it is, unless ``gunzip`` and it ends in
    ``.gz``. A remote file (any fsspec URL) or folder (a Zarr store), and a ``.gz`` file to
    decompress, are copied into ``cache``: written under a temporary name and renamed
    (:func:`atomic_path`), so an interrupted copy never looks complete, and retried with
    exponential backoff on transient errors only (:func:`retry`: a missing file fails at once).

    Args:
        url: Path or fsspec URL of one file or folder.
        cache: Folder that receives copies.
        name: Path of the copy relative to ``cache`` (default: the source's file name, without ``.gz``
            when decompressing, prefixed ``1-``, ``2-``, ... when that name is taken).
        gunzip: Stream a ``.gz`` source out (polars and most readers want the plain file).
        retries: Retries of a failed transfer.
        delay_s: First backoff delay (doubled each retry).

    Raises:
        FileNotFoundError: No such file (named).
        PermissionError: The store refused the credentials (:func:`access_refused`).
        ValueError: Credentials written into an object-store URL (:func:`check_url_credentials`).
        OSError: The transfer failed after ``retries`` retries (names the URL and the cause).
    """
    import fsspec  # lazy: fsspec pulls in its registry of filesystems; most stages never fetch

    url = str(url)
    check_url_credentials(url)
    base = Path(url.split("::")[-1].split("?")[0].rstrip("/")).name or "source"
    unzip = gunzip and base.endswith(".gz")
    if not is_remote(url) and not unzip:
        return Path(url.removeprefix("file://"))
    cache = Path(cache)
    if name is not None:
        out = cache / name
    else:
        out = cache / (base[:-3] if unzip else base)
        i = 0
        while out.exists():  # two sources with one file name
            i += 1
            out = out.with_name(f"{i}-{(base[:-3] if unzip else base)}")

    def fetch() -> Path:
        fs, _, paths = fsspec.get_fs_token_paths(url)
        try:
            with atomic_path(out) as tmp:
                if not unzip and fs.isdir(paths[0]):
                    fs.get(paths[0].rstrip("/") + "/", str(tmp), recursive=True)
                else:
                    with fs.open(paths[0], "rb") as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(gzip.GzipFile(fileobj=src) if unzip else src, dst, length=1 << 22)
        except PermissionError as exc:
            raise access_refused(url, exc) from None
        return out

    return retry(fetch, retries=retries, delay_s=delay_s, what=f"reading {redact_url(url)}")


def source_fingerprint(url: str) -> dict[str, Any]:
    """Identity of one source file or folder, to tell a changed source from the same one.

    A local file: size, modification time (ns) and MD5 of the bytes, so a file rewritten in
    place is seen even where size and time stay the same; a local folder (a Zarr store, a
    folder of recordings): the :func:`content_hash` of its files. A remote one: what fsspec's
    ``info`` reports (size, ETag, modification time), without reading it. The URL is recorded
    redacted (:func:`redact_url`).

    Raises:
        FileNotFoundError: No such file or folder.
    """
    if not is_remote(url):
        path = Path(url.removeprefix("file://"))
        st = path.stat()
        if path.is_dir():
            return {"url": redact_url(url), "content": content_hash(path)}
        return {"url": redact_url(url), "size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns),
                "md5": file_md5(path)}
    from fsspec.core import url_to_fs  # lazy: fsspec loads its filesystem registry; most stages never fetch

    fs, path = url_to_fs(url)
    info = fs.info(path)
    keep = {k: info.get(k) for k in ("size", "mtime", "ETag", "etag", "LastModified", "created") if k in info}
    return {"url": redact_url(url), **{k: str(v) for k, v in keep.items()}}


def sources_fingerprint(urls: list[str]) -> list[dict[str, Any]]:
    """:func:`source_fingerprint` of every file each of ``urls`` (paths, URLs, globs, folders) names.

    What cannot be read is fingerprinted by its error (``missing``, or the error's type), so a
    source that appears or disappears changes the result too.
    """
    out: list[dict[str, Any]] = []
    for url in urls:
        try:
            try:
                files = expand_urls(url)
            except IsADirectoryError:
                files = [url]  # a folder source (a Zarr store, a folder of EEG recordings)
            out += [source_fingerprint(f) for f in files]
        except FileNotFoundError:
            out.append({"url": redact_url(url), "missing": True})
        except Exception as exc:  # unreachable remote: the stage will say why; the key just must differ
            out.append({"url": redact_url(url), "error": type(exc).__name__})
    return out


# ----------------------------------------------------------------------------- redaction
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_URL_PARTS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#]*)(?P<path>[^?#]*)")


# Object stores whose URLs carry no user-info (a bucket name holds neither ``@`` nor ``:``): credentials
# written there would be a secret in params.yaml, in dvc.lock, in MLflow or in a shell's history. Not
# abfs/az, whose ``container@account`` is no credential. The values say where the credentials come from.
_AWS_ENV = ("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or the machine's role); "
            "AWS_ENDPOINT_URL for an S3-compatible store")
_GCP_ENV = "GOOGLE_APPLICATION_CREDENTIALS (or the machine's service account)"
_ENV_CREDENTIALS = {"s3": _AWS_ENV, "s3a": _AWS_ENV, "gs": _GCP_ENV, "gcs": _GCP_ENV}


def redact_url(url: str) -> str:
    """``url`` as it may be logged or written down: without user-info, query string and fragment.

    ``https://user:secret@host/a.csv?X-Amz-Signature=...`` becomes ``https://host/a.csv``: a
    password, a token or a presigned signature never reaches MLflow, a manifest, dvc-tracked
    data or a log. Chained fsspec URLs (``zip://x::https://...``) are redacted part by part. A
    plain path (no ``scheme://``) is returned as it is: a ``?`` there is a glob character.
    ``s3://KEY:SECRET@bucket/a.csv`` becomes ``s3://bucket/a.csv`` also when the secret holds
    a ``/`` (AWS secrets do), which would otherwise end the host part early.
    """
    parts = []
    for part in str(url).split("::"):
        m = _URL_PARTS.match(part)
        if m is None:
            parts.append(part)
            continue
        if _object_store_userinfo(m):
            # s3://KEY:SECRET@bucket/...: an AWS secret may hold "/", which ends the authority early
            # (a bucket name holds neither ":" nor "@", and the secret no "@": drop all up to the first "@")
            part = m["scheme"] + part[len(m["scheme"]):].split("@", 1)[1]
            m = _URL_PARTS.match(part)
        host = m["authority"].rsplit("@", 1)[-1]  # user:password@host -> host
        parts.append(f"{m['scheme']}{host}{m['path']}")
    return "::".join(parts)


def _object_store_userinfo(m: re.Match) -> bool:
    """True when the matched URL part is an object-store URL (s3, gs) with user-info in it."""
    if m["scheme"][:-3].lower() not in _ENV_CREDENTIALS:
        return False
    return "@" in m["authority"] or (":" in m["authority"] and "@" in m.string[len(m["scheme"]):])


def _scheme(url: str) -> str:
    m = _URL_PARTS.match(str(url).split("::")[-1])
    return m["scheme"][:-3].lower() if m else ""


def check_url_credentials(url: str) -> None:
    """Refuse credentials written into an object-store URL (``s3://KEY:SECRET@bucket/...``).

    Credentials of S3 and GCS come from the environment only (or the tools' own profile
    files), never from params: a URL is written into params.yaml, dvc.lock, MLflow and
    shell histories. An HTTP URL's ``user:password@`` is left to :func:`redact_url`.

    Raises:
        ValueError: Names the URL without its user-info and where the credentials belong.
    """
    for part in str(url).split("::"):
        m = _URL_PARTS.match(part)
        if m is not None and _object_store_userinfo(m):
            scheme = m["scheme"][:-3].lower()
            raise ValueError(f"{redact_url(part)}: credentials written into the URL are refused (a URL is "
                             f"written into params, dvc.lock and MLflow); {scheme}:// reads them from the "
                             f"environment: {_ENV_CREDENTIALS[scheme]}")


def access_refused(url: str, exc: BaseException) -> PermissionError:
    """A :class:`PermissionError` for ``url`` that the store refused, saying where credentials come from.

    s3fs reports refused credentials (a wrong key, a bad signature, no policy) as a bare
    ``PermissionError('Forbidden')`` that names no object; this names the URL (redacted)
    and the environment variables read, never their values.
    """
    scheme = _scheme(url)
    where = (f"; credentials for {scheme}:// come from the environment: {_ENV_CREDENTIALS[scheme]}"
             if scheme in _ENV_CREDENTIALS else "")
    return PermissionError(redact(f"{redact_url(url)}: access refused ({_root_cause(exc)}){where}"))


def _redact_match(m: re.Match) -> str:
    url = m.group()
    core = url.rstrip(".,;:)]}")  # punctuation after a URL in a sentence stays in the sentence
    return redact_url(core) + url[len(core):]


def redact(obj: T) -> T:
    """``obj`` with every URL inside it passed through :func:`redact_url`.

    A string (a message, a log line) has each ``scheme://...`` in it redacted; a dict, list or
    tuple (a manifest) is redacted value by value, recursively; anything else is returned as it is.
    """
    if isinstance(obj, str):
        return _URL_IN_TEXT.sub(_redact_match, obj) if "://" in obj else obj
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact(v) for v in obj)
    return obj


def retry(
    fn: Callable[[], T],
    *,
    retries: int,
    delay_s: float,
    what: str,
    retry_on: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError),
    no_retry: tuple[type[BaseException], ...] = (FileNotFoundError, IsADirectoryError, PermissionError),
) -> T:
    """Call ``fn`` with exponential backoff on transient I/O errors.

    Missing files and decode errors (:func:`is_permanent`) are not retried (they
    will not go away by waiting); other OSErrors (network, timeouts) are, ``retries`` times, with ``delay_s``,
    ``2*delay_s``, ... between tries.

    Raises:
        OSError: The last error, re-raised with ``what`` and the number of tries.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except retry_on as exc:
            if (isinstance(exc, no_retry) or is_permanent(exc)) and not is_transient(exc):
                raise
            if attempt >= retries:
                cause = _root_cause(exc)
                raise OSError(redact(f"{what}: failed after {attempt + 1} tries: {type(cause).__name__}: {cause}")) from exc
            time.sleep(delay_s * (2**attempt))
            attempt += 1


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _root_cause(exc: BaseException) -> BaseException:
    return list(_chain(exc))[-1]


def is_transient(exc: BaseException) -> bool:
    """True when a network error hides in the exception chain.

    fsspec's HTTP filesystem reports a refused or dropped connection as
    FileNotFoundError; the aiohttp / socket error is its cause.
    """
    for e in _chain(exc):
        if isinstance(e, ConnectionError | TimeoutError):
            return True
        if any(n in type(e).__name__ for n in ("ClientConnector", "ServerDisconnected", "Timeout")):
            return True
    return False


def is_permanent(exc: BaseException) -> bool:
    """True when a decode/format error hides in the exception chain (not gzip, a truncated stream).

    The same bytes fail the same way on every try, so :func:`retry` does not retry them;
    :class:`gzip.BadGzipFile` is an OSError and would otherwise look like an I/O hiccup.
    """
    return any(isinstance(e, gzip.BadGzipFile | zlib.error | EOFError) for e in _chain(exc))


# ----------------------------------------------------------------------------- untrusted inputs
RATIO_FLOOR_BYTES = 1 << 20
"""Outputs up to this size are never refused for their compression ratio (a small run of zeros
compresses 1000:1 and harms nobody); the byte cap still applies."""


def capped_copy(src: Any, dst: Any, *, display: str, max_bytes: int, bytes_key: str, max_ratio: float | None = None,
                ratio_key: str = "", consumed: Callable[[], int] | None = None,
                error: type[Exception] = ValueError, chunk: int = 1 << 20) -> int:
    """Copy the stream ``src`` into ``dst``, stopping as soon as it passes a cap; the bytes written.

    For decompression, where the output is untrusted in size: the count runs as the bytes
    come, so a decompression bomb is stopped after ``max_bytes`` (or ``max_ratio`` times the
    compressed bytes read so far, from ``consumed``) rather than after filling the disk.
    The caller owns ``dst`` and removes it on an error (write it inside :func:`atomic_path`
    or :func:`atomic_dir`).

    Args:
        src: Readable binary stream (a ``GzipFile``, a zip entry).
        dst: Writable binary stream.
        display: The file, as the message names it.
        max_bytes: Most bytes to write.
        bytes_key: The params key that sets ``max_bytes`` (named in the message).
        max_ratio: Most output bytes per compressed byte read (None: no ratio check).
        ratio_key: The params key that sets ``max_ratio``.
        consumed: Compressed bytes read so far (e.g. the raw file's ``tell``).
        error: The exception type to raise (the caller domain's error type).

    Raises:
        error: A cap was passed; the message names the file, the cap and its key.
    """
    written = 0
    while block := src.read(chunk):
        written += len(block)
        if written > max_bytes:
            raise error(f"{display}: unpacks to more than {max_bytes} bytes, the cap {bytes_key}; "
                        "refused (raise the cap if the file is genuine)")
        if max_ratio is not None and consumed is not None and written > RATIO_FLOOR_BYTES:
            packed = max(int(consumed()), 1)
            if written > max_ratio * packed:
                raise error(f"{display}: unpacks to more than {max_ratio:g} times its compressed size "
                            f"({written} bytes from {packed}), the cap {ratio_key}; refused as a likely "
                            "decompression bomb (raise the cap if the file is genuine)")
        dst.write(block)
    return written


def check_inside(path: str | Path, root: str | Path, *, display: str, error: type[Exception] = ValueError) -> Path:
    """``path`` resolved, after checking that it (through any symbolic link) lies inside ``root``.

    A symbolic link in a source folder can point anywhere on the machine; following it would
    copy a file from outside the source into DVC-tracked ``data/raw`` (and push it).

    Raises:
        error: ``path`` resolves outside ``root``; the message names both.
    """
    real, base = Path(path).resolve(), Path(root).resolve()
    if not real.is_relative_to(base):
        raise error(f"{display}: a symbolic link to {real}, outside the source {base}; links out of the source "
                    "are refused (copy the file into the source instead)")
    return real


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get (Linux ``MemAvailable``, else free pages); None when unknown."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def check_array_bytes(nbytes: int, *, display: str, max_bytes: int | None, key: str,
                      error: type[Exception] = ValueError) -> None:
    """Refuse an array that a file *declares* before it is read: over ``max_bytes`` or over the memory available.

    A few bytes of HDF5 header can declare a 128 GiB dataset; reading it would end in an
    allocation failure (or the OOM killer) instead of an error that names the file.

    Args:
        nbytes: Bytes the read will allocate (shape x item size of what is kept).
        display: The file and variable, as the message names them.
        max_bytes: The cap (None: only the memory check).
        key: The params key that sets the cap.
        error: The exception type to raise.
    """
    if max_bytes is not None and nbytes > max_bytes:
        raise error(f"{display}: declares {nbytes} bytes ({nbytes / 2**30:.3g} GiB), more than the cap {key} "
                    f"({max_bytes} bytes); refused before reading (raise the cap if the file is genuine)")
    free = available_memory()
    if free is not None and nbytes > free:
        raise error(f"{display}: declares {nbytes} bytes ({nbytes / 2**30:.3g} GiB), more than the memory "
                    f"available ({free / 2**30:.3g} GiB); refused before reading")
