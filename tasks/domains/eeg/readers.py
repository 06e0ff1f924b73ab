"""Reading EEG recordings: continuous recordings with events, MATLAB epochs, ASCII segments.

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

The files are brought in and named by :mod:`tasks.domains.eeg.sources`. Every error on
bad input is an :class:`~tasks.domains.eeg.sources.EEGInputError` whose message names
the file and the field, key, entry or value at fault. Units: MNE returns volts; MAT and
ASCII data are returned in the units the file stores (often microvolts) -- the caller
scales them.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks import store
from tasks.domains.eeg.sources import EEGInputError, describe

if TYPE_CHECKING:
    import mne


MNE_FORMATS: tuple[str, ...] = ("edf", "bdf", "gdf", "fif", "brainvision")
"""Formats :func:`read_recording` reads (continuous recordings with events)."""

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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
    import mne  # lazy: MNE is slow to import; MAT and ASCII sources never need it

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
    for w in caught:
        # MNE renames repeated channel labels C3, C3 to C3-0, C3-1 and only warns; which one is the
        # real C3 cannot be known, and the renamed ones match no montage or channel list.
        m = re.search(r"Channel names are not unique, found duplicates for: (\{.*?\})", str(w.message))
        if m:
            try:
                dups = sorted(ast.literal_eval(m.group(1)))
            except (ValueError, SyntaxError):
                dups = [m.group(1)]
            raise EEGInputError(f"{name}: the channel name(s) {dups} appear more than once; give every channel "
                                "a distinct name in the file")
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
    # channel by channel: one channel's copy at a time, not a second copy of the recording
    bad = [ch for i, ch in enumerate(raw.ch_names) if not np.isfinite(raw.get_data(picks=[i])).all()]
    _refuse_non_finite(bad, name)
    return Recording(raw=raw, onsets=onsets, labels=labels, source=name)


def check_finite(data: np.ndarray, ch_names: list[str], name: str) -> None:
    """Refuse channels holding NaN or infinite values, naming them.

    A NaN channel would pass into every epoch (and break the alignment's eigendecomposition);
    filters spread it to the whole channel, so it cannot be cut out later.

    Args:
        data: ``(C, T)`` or ``(n, C, T)``.
        ch_names: The ``C`` channel names.
        name: The file, for the message.
    """
    axes = tuple(i for i in range(data.ndim) if i != data.ndim - 2)  # every axis but the channels
    finite = np.isfinite(data).all(axis=axes)
    _refuse_non_finite([c for c, ok in zip(ch_names, finite, strict=True) if not ok], name)


def _refuse_non_finite(bad: list[str], name: str) -> None:
    if bad:
        raise EEGInputError(f"{name}: channel(s) {bad} hold non-finite values (NaN or inf); remove or repair "
                            "them in the file")


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
    variable: str | None = None
    """MAT: the variable the data came from (``data_key`` resolved when it is ``*`` or a pattern)."""
    dtype: str = "float64"
    """The dtype the file stores (``int16`` for ADC counts): ``data`` is always float64 in those units."""


_AXES = ("trials", "channels", "samples")


def read_mat(
    path: Path,
    *,
    data_key: str,
    label_key: str | None,
    sfreq: float | None = None,
    sfreq_key: str | None = None,
    layout: str = "trials,channels,samples",
    ch_names_key: str | None = None,
    label_map: dict[str, str] | None = None,
    max_array_bytes: int | None = None,
    label: str | None = None,
    display: str | None = None,
) -> EpochSet:
    """Read epochs and their labels from a MATLAB file (v5 via SciPy, v7.3/HDF5 via h5py).

    ``layout`` names the axes of the data array as MATLAB shows them (``size(X)``), any
    permutation of trials, channels, samples. MATLAB drops trailing singleton axes, so a
    2-D array gets a trailing axis of 1 (one-channel data ``[trials x samples x 1]``).
    h5py shows a v7.3 array with its axes reversed; it is transposed back to MATLAB order
    first, so one ``layout`` describes a file saved either way. A vector (``1 x T``,
    ``T x 1`` or 1-D) is one single-channel segment ``(1, 1, T)`` whatever ``layout`` says.
    Integer data (ADC counts) are converted to float64 unscaled; :attr:`EpochSet.dtype`
    records what the file stored. Keys may name struct fields with dots (``"eeg.X"``).
    Labels (numbers, char rows or a cell of strings) are converted to strings (``1.0`` ->
    ``"1"``) and mapped through ``label_map`` when given.

    ``data_key`` may also be ``*`` (the one top-level variable that no other key names;
    ``__header__``-style metadata and v7.3's ``#refs#`` are not variables), a glob over the
    top-level variable names (``seg_*``) or ``re:<regex>`` (full match); either must find
    exactly one variable.

    Args:
        path: The ``.mat`` file.
        data_key: Variable holding the data, ``*`` or a pattern (above).
        label_key: Variable holding one label per trial; None: every trial is ``label``.
        sfreq: Sampling rate in Hz, when the file does not hold it.
        sfreq_key: Variable holding the sampling rate (wins over ``sfreq``; both must agree).
        layout: Axes of the data in MATLAB order, comma-separated.
        ch_names_key: Variable holding the channel names (default ``EEG1``, ``EEG2``, ...).
        label_map: Label (as a string) -> class name; a label not in it is an error.
        max_array_bytes: A variable declaring more bytes (v5: in its header; v7.3: its dataset) is refused
            before it is read (``ingest.eeg.max_array_bytes``; None: only the memory available is checked).
        label: The class of every trial when ``label_key`` is None (the caller takes it from the file's
            folder or path, already mapped); not mapped again.
        display: How messages name the file (the user's path); default its name.

    Returns:
        The epochs ``(n, C, T)`` in the file's units.

    Raises:
        EEGInputError: Unreadable file; a missing key (the message lists the keys that
            exist); ``*`` or a pattern finding no variable or several (listed); wrong number
            of dimensions; label count != trial count; an unmapped label; no label source;
            no sampling rate; bad ``layout``; duplicate channel names; a channel
            with non-finite values; a v7.3 variable over the size cap, stored outside the
            file (external storage, external link, virtual dataset).
    """
    path = Path(path)
    name = display or path.name
    axes = [a.strip() for a in layout.split(",")]
    if sorted(axes) != sorted(_AXES):
        raise EEGInputError(f"{name}: layout {layout!r} must be a permutation of {','.join(_AXES)}")
    if sfreq is None and sfreq_key is None:
        raise EEGInputError(f"{name}: give sfreq or sfreq_key (the file's sampling rate is unknown)")
    if label_key is None and label is None:
        raise EEGInputError(f"{name}: no label_key, and no class from the file's folder or path was given")
    reader = _Hdf5Mat(path, max_array_bytes, name) if _is_hdf5(path) else _V5Mat(path, max_array_bytes, name)
    with reader:
        named = [k.split(".")[0] for k in (label_key, sfreq_key, ch_names_key) if k]
        data_key = _resolve_data_key(data_key, reader.variables(), named, name)
        x = reader.get(data_key, "data")
        raw_labels = reader.get(label_key, "labels") if label_key else None
        file_sfreq = reader.get(sfreq_key, "sfreq") if sfreq_key else None
        names = (
            reader.strings(reader.get(ch_names_key, "channel names"), ch_names_key) if ch_names_key else None
        )
        labels = reader.strings(raw_labels, label_key) if label_key else None

    if x.dtype.kind not in "iufb":
        raise EEGInputError(f"{name}: {data_key!r} is not a numeric array (MATLAB class of dtype {x.dtype})")
    stored = str(x.dtype)
    if x.ndim == 1 or (x.ndim == 2 and min(x.shape) == 1 < max(x.shape)):
        # A vector is one single-channel segment (a Bonn-like file per segment): MATLAB shows it 1 x T or
        # T x 1 (v7.3 and numpy writers may store it 1-D), and no layout of 2-D data reads it right.
        x = np.ascontiguousarray(x.reshape(1, 1, -1), dtype=np.float64)
    else:
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3:
            raise EEGInputError(f"{name}: {data_key!r} has {x.ndim} dimensions {x.shape}; expected 3 ({layout})")
        x = np.ascontiguousarray(np.transpose(x, [axes.index(a) for a in _AXES]), dtype=np.float64)  # (n, C, T)
    n, c, _ = x.shape
    if labels is None:
        labels = [str(label)] * n
    elif len(labels) != n:
        raise EEGInputError(
            f"{name}: {label_key!r} holds {len(labels)} labels but {data_key!r} has {n} trials"
        )
    if label_map is not None and label_key is not None:
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
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise EEGInputError(f"{name}: {ch_names_key!r} names the channel(s) {dups} more than once")
    check_finite(x, names, name)
    return EpochSet(data=x, labels=labels, sfreq=float(rate), ch_names=names, source=name, variable=data_key,
                    dtype=stored)


def _resolve_data_key(data_key: str, variables: list[str], named: list[str], name: str) -> str:
    """The variable ``data_key`` names: itself, or the one match of ``*`` / a glob / ``re:<regex>``.

    Args:
        data_key: A name (dotted for struct fields), ``*``, a glob or ``re:<regex>``.
        variables: The file's top-level variables (metadata left out), sorted.
        named: Top-level variables other keys name (labels, sampling rate, channel names): never the data.
        name: The file, for messages.
    """
    if data_key.startswith("re:"):
        rx = re.compile(data_key[3:])
        found = [v for v in variables if rx.fullmatch(v)]
    elif any(ch in data_key for ch in "*?["):
        found = [v for v in variables if fnmatch.fnmatchcase(v, data_key)]
    else:
        return data_key
    found = [v for v in found if v not in named]
    if len(found) == 1:
        return found[0]
    what = ("takes the one data variable of the file" if data_key == "*"
            else "must match exactly one variable of the file")
    others = f" ({', '.join(named)} named by other keys)" if named else ""
    if not found:
        raise EEGInputError(f"{name}: data_key {data_key!r} {what}, but matches none; variables: {variables}"
                            f"{others}")
    raise EEGInputError(f"{name}: data_key {data_key!r} {what}, but the file holds {len(found)}: {found}; name "
                        "the one to read in ingest.eeg.spec.mat.data_key")


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

    def __init__(self, path: Path, max_array_bytes: int | None = None, name: str | None = None):
        import scipy.io  # lazy: scipy.io is slow to import; only MATLAB v5 files need it

        self.name = name or path.name
        try:
            # loadmat inflates every (zlib-compressed) variable it holds: the headers say how big they are
            declared = scipy.io.whosmat(path)
        except Exception as exc:
            raise EEGInputError(
                f"{self.name}: not a readable MATLAB file: {type(exc).__name__}: {exc}"
            ) from None
        for var, shape, _cls in declared:
            # 8 bytes per element bounds every numeric class and the float64 copy read_mat makes
            store.check_array_bytes(int(np.prod(shape, dtype=np.int64)) * 8, display=f"{self.name}: {var!r}",
                                    max_bytes=max_array_bytes, key="ingest.eeg.max_array_bytes",
                                    error=EEGInputError)
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

    def variables(self) -> list[str]:
        """The file's variables, without loadmat's ``__header__``, ``__version__``, ``__globals__``."""
        return sorted(k for k in self.vars if not k.startswith("__"))

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

    def __init__(self, path: Path, max_array_bytes: int | None = None, name: str | None = None):
        self.name = name or path.name
        self.max_array_bytes = max_array_bytes
        try:
            import h5py  # lazy: only MATLAB v7.3 files need it (and it may be missing)
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

    def variables(self) -> list[str]:
        """The file's variables, without MATLAB's ``#refs#`` / ``#subsystem#`` groups."""
        return sorted(k for k in self.f.keys() if not k.startswith(("#", "__")))

    def _node(self, key: str, what: str):
        node = self.f
        done: list[str] = []
        for part in key.split("."):
            keys = sorted(k for k in node.keys() if not k.startswith("#")) if hasattr(node, "keys") else []
            if part not in keys:
                where = f" in {'.'.join(done)!r}" if done else ""
                raise EEGInputError(f"{self.name}: no {what} key {key!r}{where}; keys: {keys}")
            if isinstance(node.get(part, getlink=True), self.h5py.ExternalLink):
                # h5py would open the other file silently; what is read must come from this file
                raise EEGInputError(f"{self.name}: {key!r} is an HDF5 external link to another file; refused "
                                    "(store the data in the file itself)")
            node = node[part]
            done.append(part)
        if not isinstance(node, self.h5py.Dataset):
            raise EEGInputError(f"{self.name}: {key!r} is a struct/group, not an array")
        if node.external or node.is_virtual:
            raise EEGInputError(
                f"{self.name}: {key!r} is stored outside the file "
                f"({'HDF5 external storage' if node.external else 'an HDF5 virtual dataset'}); refused "
                "(store the data in the file itself)")
        return node

    def get(self, key: str, what: str) -> np.ndarray:
        ds = self._node(key, what)
        if ds.dtype.kind != "O":  # object references (cells) are small; their targets are read one by one
            # the read allocates the declared shape (and read_mat makes a float64 copy): check it first
            store.check_array_bytes(int(ds.size) * max(ds.dtype.itemsize, 8), display=f"{self.name}: {key!r}",
                                    max_bytes=self.max_array_bytes, key="ingest.eeg.max_array_bytes",
                                    error=EEGInputError)
        try:
            return ds[()].T  # h5py sees MATLAB's column-major array reversed
        except (OSError, RuntimeError, ValueError) as exc:
            raise EEGInputError(f"{self.name}: cannot read {key!r}: {type(exc).__name__}: {exc}") from None

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
        if not np.isfinite(x).all():
            raise EEGInputError(f"{_rel(p, root)}: holds non-finite values (NaN or inf): value(s) number "
                                f"{(np.flatnonzero(~np.isfinite(x)) + 1)[:5].tolist()} of the segment")
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
