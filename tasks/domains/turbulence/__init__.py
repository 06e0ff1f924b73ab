"""The ``turbulence`` domain: next-step prediction of filtered turbulent velocity fields (IFactFormer, models.md 4).

Data path:

* **ingest** generates the synthetic source, filtered DNS of 2-D Kolmogorov flow from the
  pseudo-spectral solver in :mod:`tasks.domains.turbulence.solver` (3-D forced isotropic
  turbulence with ``synthetic.dim: 3``), written as HDF5; or fetches one field file
  (HDF5, NetCDF3/4, NPZ, NPY, Zarr; any fsspec URL) described by the layout spec
  ``ingest.turbulence.spec``. The whole field is read and validated with
  :func:`tasks.domains.turbulence.readers.read_fields` (non-finite values, shapes, missing variables,
  axis spec, time step) before the file is kept in ``data/raw/turbulence/`` with a
  ``manifest.json`` holding the layout that reads it. A bad file leaves the previous
  folder untouched.
* **preprocess** optionally filters (spectral cut-off, box or Gaussian) and coarsens
  (spectral truncation) every snapshot, keeps every ``stride``-th snapshot so that one
  stored step is one model step (``dt_model``), splits by **whole trajectories** (the
  last ``test_trajectories`` for evaluation, the ``val_trajectories`` before them to pick
  the best epoch, the rest for training), and fits the per-channel mean / std on the
  training trajectories only. Each split is stored whole (``fields`` ``(n_traj, T, *grid,
  C)`` float32 in physical units) in safetensors; the ``(u_{t-T_in+1..t} -> u_{t+1})``
  pairs are cut from it on the fly (:class:`.data.FieldPairs`).

Model and stages: the shared train loop fits IFactFormer-m with the paper's recipe
(relative L2 in physical units, AdamW, StepLR) and, with the same loop, the neural
baselines FNO and IFactFormer-o (:mod:`.baselines`); evaluation rolls every model out
against the held-out trajectories (:mod:`tasks.domains.turbulence.evaluate`); scoring reads an
initial field file and writes the predicted trajectory in the same format
(:mod:`.scoring`). The generic stages reach it all through :mod:`.domain`; the stages are
:mod:`.ingest` and :mod:`.preprocess`, the params :mod:`.params`, the model configs :mod:`.configs`.
"""
