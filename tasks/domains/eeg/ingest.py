"""The ``ingest`` stage of the ``eeg`` domain: recordings into ``data/raw/eeg/source/``, every one read to validate it.

Synthetic EDF+ by default; any EDF/BDF/GDF/FIF/BrainVision/MAT/ASCII files, folders, globs,
fsspec URLs or zip archives otherwise (:mod:`.sources`, :mod:`.readers`). Events present,
channels consistent across recordings, sampling rates logged; a bad file fails the stage
with its name and the previous ``data/raw/eeg`` stays untouched.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import logs, store
from tasks.domains.eeg.data import NAME, EEGDataError
from tasks.domains.eeg.params import EEGSpec
from tasks.domains.eeg.readers import EpochSet, Recording, read_ascii_segments, read_mat, read_recording
from tasks.domains.eeg.sources import EEGInputError, SourceInfo, describe, fetch_sources, format_of
from tasks.domains.eeg.synthetic import generate

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun

log = logging.getLogger(__name__)

CONTINUOUS = ("edf", "bdf", "gdf", "fif", "brainvision")
"""Formats of continuous recordings (read with MNE); MAT and ASCII sources hold epochs already."""


def _synthetic(out: Path, params: Params) -> list[Path]:
    s = params.ingest.eeg.synthetic
    return generate(out, n_subjects=s.n_subjects, n_sessions=s.n_sessions, trials_per_class=s.trials_per_class,
                    mode=s.mode, seed=s.seed, sfreq=s.sfreq, recording_s=s.recording_s)


def _read_continuous(path: Path, fmt: str, spec: EEGSpec) -> Recording:
    return read_recording(path, fmt, event_map=spec.event_map, stim_channel=spec.stim_channel,
                          allow_empty=spec.background_class is not None)


def _read_mat(path: Path, spec: EEGSpec, max_array_bytes: int | None = None, *, label: str | None = None,
              display: str | None = None) -> EpochSet:
    m = spec.mat
    return read_mat(path, data_key=m.data_key, label_key=m.label_key, sfreq=m.sfreq, sfreq_key=m.sfreq_key,
                    layout=m.layout, ch_names_key=m.ch_names_key, label_map=spec.label_map or None,
                    max_array_bytes=max_array_bytes, label=label, display=display)


def path_label(info: SourceInfo, rel: str, spec: EEGSpec, display: str) -> tuple[str, str | None]:
    """The label a MAT file's path gives (``mat.label_key: null``) and its class (None: not in ``label_map``).

    The label is ``mat.label_regex``'s group searched in ``rel`` (the path relative to the source), else the
    parent folder's name; ``spec.label_map`` maps it (a label not in a non-empty map: the file is skipped, as
    for ASCII segments), else it must be one of ``spec.classes``.

    Raises:
        EEGInputError: The regex does not match, the file lies in no folder, or (no map) the label is no class.
    """
    rx = spec.mat.label_regex
    if rx is not None:
        m = re.search(rx, rel)
        if m is None:
            raise EEGInputError(f"{display}: ingest.eeg.spec.mat.label_regex {rx!r} does not match its path {rel!r}")
        raw = m.group("label") if "label" in m.re.groupindex else m.group(1)
        where = f"label_regex {rx!r}"
    else:
        if info.folder_label is None:
            raise EEGInputError(f"{display}: with ingest.eeg.spec.mat.label_key null the class is the name of the "
                                "file's folder, but it lies in no folder; put it in a folder named after its class "
                                "or set ingest.eeg.spec.mat.label_regex")
        raw = info.folder_label
        where = "folder"
    if spec.label_map:
        return raw, spec.label_map.get(raw)
    if raw not in spec.classes:
        raise EEGInputError(f"{display}: its {where} gives the label {raw!r}, which is not in ingest.eeg.spec.classes "
                            f"{spec.classes}; map it with ingest.eeg.spec.label_map")
    return raw, raw


def read_sources(folder: Path, spec: EEGSpec, max_array_bytes: int | None = None,
                 origins: dict[str, str] | None = None) -> list[tuple[SourceInfo, Any]]:
    """Read every recording under ``folder`` with ``spec``: ``[(info, Recording | EpochSet)]`` in subject order.

    ASCII segments are read together (one :class:`~tasks.domains.eeg.readers.EpochSet` per folder label
    set), since each file is one single-channel trial. MAT files are read one by one; under
    ``mat.label_key: null`` each takes the class of its path (:func:`path_label`), and those whose label
    ``label_map`` does not name are skipped (counted in a message).

    Args:
        folder: The source folder (``data/raw/eeg/source`` or ingest's temporary copy of it).
        spec: How to read and label.
        max_array_bytes: Cap of one MAT variable (``ingest.eeg.max_array_bytes``).
        origins: File name relative to ``folder`` -> the user's path (:func:`fetch_sources`), for messages;
            without it MAT errors name the path relative to ``folder``.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and format_of(p) is not None)
    path_labels = spec.mat.label_key is None
    infos = [describe(p, folder, spec.name_pattern, path_labels=path_labels) for p in files]
    out: list[tuple[SourceInfo, Any]] = []
    ascii_infos = [i for i in infos if i.format == "ascii"]
    skipped: dict[str, int] = {}
    for info in infos:
        if info.format in CONTINUOUS:
            out.append((info, _read_continuous(info.path, info.format, spec)))
        elif info.format == "mat":
            rel = info.path.relative_to(folder).as_posix()
            display = (origins or {}).get(rel, rel)
            label = None
            if path_labels:
                raw, label = path_label(info, rel, spec, display)
                if label is None:
                    skipped[raw] = skipped.get(raw, 0) + 1
                    continue
            out.append((info, _read_mat(info.path, spec, max_array_bytes, label=label, display=display)))
    if skipped:
        what = "label_regex labels" if spec.mat.label_regex else "folders"
        if not out and not ascii_infos:
            raise EEGInputError(f"no MAT file under the EEG source has a label of ingest.eeg.spec.label_map "
                                f"{sorted(spec.label_map)}; {what} found: {sorted(skipped)}")
        print(f"eeg: skipped MAT files whose {what} are not in ingest.eeg.spec.label_map: "
              + ", ".join(f"{k} ({n})" for k, n in sorted(skipped.items())))
    if ascii_infos:
        es = read_ascii_segments([i.path for i in ascii_infos], folder, sfreq=spec.ascii_sfreq,
                                 label_map=spec.label_map or None)
        first = ascii_infos[0]
        out.append((SourceInfo(folder, "ascii", first.subject, "1", "1", None), es))
    if not out:
        raise EEGInputError(f"{folder}: no EEG recordings found")
    out.sort(key=lambda item: (item[0].subject, item[0].session, item[0].run, str(item[0].path)))
    return out


def recording_sizes(folder: Path) -> dict[str, int]:
    """Every recording file under ``folder`` (those :func:`read_sources` reads: a format it knows) -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file() and format_of(p) is not None}


def _channels_of(obj) -> list[str]:
    return list(obj.raw.ch_names) if isinstance(obj, Recording) else list(obj.ch_names)


def sfreq_of(obj) -> float:
    return float(obj.raw.info["sfreq"]) if isinstance(obj, Recording) else float(obj.sfreq)


def common_channels(items: list[tuple[SourceInfo, Any]], policy: str, root: Path) -> list[str]:
    """The channels every recording has (in the first recording's order).

    Raises:
        EEGDataError: under ``policy="error"`` when recordings differ; names the files and the channels.
    """
    first_info, first = items[0]
    ref = _channels_of(first)
    ref_set = set(ref)
    common = ref_set.copy()
    problems = []
    for info, obj in items[1:]:
        chans = set(_channels_of(obj))
        common &= chans
        if chans != ref_set:
            missing, extra = sorted(ref_set - chans), sorted(chans - ref_set)
            problems.append(f"{info.path.relative_to(root)}: missing {missing}, extra {extra}")
    if problems and policy == "error":
        raise EEGDataError(
            f"channels differ between recordings (compared with {first_info.path.relative_to(root)}): "
            + "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            + ". Set ingest.eeg.spec.channel_policy=common to keep the shared channels, "
            "or preprocess.eeg.channels to choose them.")
    if not common:
        raise EEGDataError("the recordings share no channel")
    return [c for c in ref if c in common]


def ingest(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Fetch (or generate) the recordings, read each one to validate it, and write the manifest.

    Output folder ``data/raw/eeg/``: ``source/`` (the files, in their own format) and
    ``manifest.json`` (per file: format, subject, session, run, sampling rate, channels,
    events per class). Replaced atomically: a failure leaves the previous folder as it was.
    """
    p = params.ingest.eeg
    spec = p.spec
    paths = store.domain_paths(NAME)
    with store.atomic_dir(paths.raw) as out:
        src = out / "source"
        src.mkdir()
        origins: dict[str, str] = {}  # file in src -> the user's path, for messages
        if p.source == "synthetic":
            _synthetic(src, params)
            fingerprint: Any = {"synthetic": p.synthetic.model_dump()}
        else:
            with tempfile.TemporaryDirectory(dir=out) as cache:
                fetch_sources(p.source, src, Path(cache), retries=p.retries, delay_s=p.retry_delay_s,
                              max_bytes=p.max_extracted_bytes, max_ratio=p.max_compression_ratio, origins=origins)
            sources = [p.source] if isinstance(p.source, str) else list(p.source)
            fingerprint = [store.source_fingerprint(u) for u in sources if "*" not in u and not store.is_remote(u)]
        t0 = time.perf_counter()
        items = read_sources(src, spec, p.max_array_bytes, origins)
        # One line of what was read, as the other domains' ingest: the recording files and their bytes (no row
        # count: a recording is a continuous signal or a set of epochs, not rows).
        logs.report_read(log, "eeg ingest", recording_sizes(src), rows=None, seconds=time.perf_counter() - t0)
        channels = common_channels(items, spec.channel_policy, src)
        rates = sorted({sfreq_of(obj) for _, obj in items})
        if len(rates) > 1:
            print(f"eeg ingest: sampling rates differ between recordings {rates}; preprocess resamples them "
                  f"to preprocess.eeg.sfreq")
        files, totals = [], dict.fromkeys(spec.classes, 0)
        for info, obj in items:
            labels = obj.labels
            counts = {c: int(sum(1 for lab in labels if lab == c)) for c in spec.classes}
            for c, n in counts.items():
                totals[c] += n
            files.append({
                "path": str(info.path.relative_to(out)), "format": info.format, "subject": info.subject,
                "session": info.session, "run": info.run, "sfreq": sfreq_of(obj),
                "n_channels": len(_channels_of(obj)), "events": counts,
                **({"n_segments": int(len(obj.labels))} if isinstance(obj, EpochSet) else
                   {"duration_s": round(obj.raw.n_times / obj.raw.info["sfreq"], 3)}),
                **({"variable": obj.variable, "dtype": obj.dtype}
                   if isinstance(obj, EpochSet) and obj.variable is not None else {}),
            })
        integer = sorted({f["dtype"] for f in files if f.get("dtype", "float")[:1] in ("i", "u", "b")})
        if integer:
            # ADC counts need the device's gain to be volts; nothing in a MAT file says what it is
            print(f"eeg ingest: MAT data stored as {', '.join(integer)} are read as numbers in "
                  f"ingest.eeg.spec.epoch_units={spec.epoch_units}, with no scale factor")
        if not any(totals.values()) and spec.background_class is None:
            raise EEGDataError(f"{p.source}: no labelled events in any recording")
        manifest = {
            "stage": "ingest", "domain": NAME, "source": p.source, "fingerprint": fingerprint, "spec": spec.name,
            "files": files, "channels": channels, "sfreqs": rates, "class_counts": totals,
            **({"epoch_units": f"{spec.epoch_units} (MAT/ASCII numbers, integers too, read unscaled in these units)"}
               if any(isinstance(obj, EpochSet) for _, obj in items) else {}),
            "subjects": sorted({f["subject"] for f in files}),
            "outputs": {"source": store.content_hash(src)},
        }
        store.atomic_write_json(out / "manifest.json", store.redact(manifest))  # no credentials in URLs
    if run is not None:
        run.log_params({"source": str(p.source), "spec": spec.name, "files": len(files)})
        run.log_metrics({"recordings": len(files), **{f"events.{k}": v for k, v in totals.items()}})
    return manifest
