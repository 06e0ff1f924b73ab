"""The ``eeg`` domain: ingest, preprocess, the evaluation protocols and the hooks of the generic stages.

* **ingest** brings the recordings into ``data/raw/eeg/source/`` (synthetic EDF+ by
  default; any EDF/BDF/GDF/FIF/BrainVision/MAT/ASCII files, folders, globs, fsspec
  URLs or zip archives otherwise; readers in :mod:`tasks.domains.eeg.readers`), reads every one
  to validate it (events present, channels consistent, sampling rates logged) and
  writes ``manifest.json``. A bad file fails the stage with its name; the previous
  ``data/raw/eeg`` stays untouched.
* **preprocess** picks channels, notches and band-passes (MNE FIR filters, zero
  phase), resamples, cuts epochs around events (or consecutive windows of continuous
  recordings), rejects flat or saturated epochs (counted in ``schema.json``) and
  writes ``data/processed/eeg/``: ``epochs.safetensors`` (unaligned, uV),
  ``meta.parquet`` (subject, session, run, recording, label, onset, group, split),
  ``train.safetensors`` / ``test.safetensors`` (the deployment split, Euclidean-aligned)
  and ``schema.json``.
* **train** (generic loop, :mod:`tasks.train`) fits the DBConformer teacher on the
  deployment split; :meth:`.domain.EEGDomain.extra_train` then runs the evaluation protocol (CO, k-fold
  or LOSO; every model x seed x fold; alignment per fold as the reference) and saves
  every test prediction to ``artifacts/eeg/baselines/protocol.parquet``.
* **evaluate** (generic) scores the teacher and its compressed versions on the
  deployment test split; :meth:`.domain.EEGDomain.extra_evaluate` adds the protocol summary (mean and
  std over subjects and seeds, chance level), the per-subject table, the bar plot, the
  EA ablation and the channel-attention topomap.

Euclidean alignment of the deployment split (a deliberate, documented choice): the
training trials of each subject are aligned offline with that subject's reference;
the held-out trials are aligned online (incremental, causal), as a new recording is
at scoring time. The protocols follow the reference instead (see :func:`~tasks.domains.eeg.runner.align_fold`).

The stages are :mod:`~tasks.domains.eeg.ingest` and :mod:`~tasks.domains.eeg.preprocess`;
the hooks the generic stages call are :mod:`~tasks.domains.eeg.domain`; scoring is
:mod:`~tasks.domains.eeg.scoring`, the params :mod:`~tasks.domains.eeg.params`; the rest of
the work is in :mod:`~tasks.domains.eeg.sources` (fetching, archives, naming),
:mod:`~tasks.domains.eeg.readers` (MNE / MATLAB / ASCII readers),
:mod:`~tasks.domains.eeg.epochs` (filtering, epoching, rejection),
:mod:`~tasks.domains.eeg.runner` (the protocol runner and its report section),
:mod:`~tasks.domains.eeg.protocol` (folds, Euclidean alignment, metrics, plots),
:mod:`~tasks.domains.eeg.data` (trials, schema, model config) and
:mod:`~tasks.domains.eeg.synthetic` (the offline generator).
"""
