"""Artifact paths, fsspec I/O, atomic writes and content hashes.

Every stage reads its inputs and writes its outputs through this module, so the
layout lives in one place (:class:`DomainPaths`) and every write is atomic: a
file is written to a temporary name beside its target and renamed; a folder is
built in a temporary sibling and swapped in only when the stage succeeded. A
failing stage therefore leaves the previous outputs untouched and nothing
half-written behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
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
def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
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


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling and swap it in on success.

    On an exception the temporary folder is removed and ``target`` is left as it
    was, so no stage ever leaves a half-written output folder.

    Yields:
        The temporary folder to write into.
    """
    target = Path(target)
    created = [p for p in reversed(target.parents) if not p.exists()]  # parents made here, outermost first
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
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
        os.replace(tmp, target)
    except BaseException:
        if old.exists():
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that is renamed onto it when the block succeeds.

    For writers that want a path rather than bytes (Parquet, HDF5, NetCDF, EDF, a copied
    folder): write to the yielded path; on success it replaces ``target`` in one rename, on
    an exception it is removed and ``target`` is left as it was. The temporary name keeps
    ``target``'s last suffix, for writers that pick the format by suffix (``mne.export``).

    Yields:
        The temporary path (a file or a folder may be created there).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{time.monotonic_ns()}.tmp{target.suffix}")
    try:
        yield tmp
        if target.is_dir() and tmp.is_dir():
            shutil.rmtree(target)  # os.replace cannot put a folder over a non-empty folder
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


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


def expand_urls(url: str) -> list[str]:
    """Expand a path, URL or glob into a sorted list of concrete file URLs/paths.

    Raises:
        FileNotFoundError: Nothing matches (the message names the pattern).
    """
    import fsspec  # lazy: fsspec loads its filesystem registry; most stages never fetch

    fs, _, paths = fsspec.get_fs_token_paths(url)
    has_glob = any(ch in url for ch in "*?[")
    if not has_glob:
        try:
            fs.info(paths[0])
        except FileNotFoundError as exc:
            if is_transient(exc):
                raise  # unreachable, not missing: the caller retries
            raise FileNotFoundError(f"no such file: {url}") from None
        if fs.isdir(paths[0]):
            raise IsADirectoryError(f"{url} is a folder: give a file or a glob such as {url.rstrip('/')}/*.csv")
    if not paths:
        raise FileNotFoundError(f"the pattern {url!r} matches no file")
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
        OSError: The transfer failed after ``retries`` retries (names the URL and the cause).
    """
    import fsspec  # lazy: fsspec pulls in its registry of filesystems; most stages never fetch

    url = str(url)
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
        with atomic_path(out) as tmp:
            if not unzip and fs.isdir(paths[0]):
                fs.get(paths[0].rstrip("/") + "/", str(tmp), recursive=True)
            else:
                with fs.open(paths[0], "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(gzip.GzipFile(fileobj=src) if unzip else src, dst, length=1 << 22)
        return out

    return retry(fetch, retries=retries, delay_s=delay_s, what=f"reading {url}")


def source_fingerprint(url: str) -> dict[str, Any]:
    """Cheap identity of a source file: size and modification time/etag from fsspec ``info``."""
    import fsspec  # lazy: fsspec loads its filesystem registry; most stages never fetch

    fs, _, paths = fsspec.get_fs_token_paths(url)
    info = fs.info(paths[0])
    keep = {k: info.get(k) for k in ("size", "mtime", "ETag", "etag", "LastModified", "created") if k in info}
    return {"url": url, **{k: str(v) for k, v in keep.items()}}


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
                raise OSError(f"{what}: failed after {attempt + 1} tries: {type(cause).__name__}: {cause}") from exc
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
