"""Params of the ``turbulence`` domain: its sections of params.yaml (``ingest.turbulence``, ...).

Assembled with the other domains' into the one ``Params`` model by :mod:`tasks.params`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from tasks.domains.turbulence.layout import DEFAULT_MAX_ABS_VALUE, DEFAULT_MAX_ARRAY_BYTES, FieldLayout
from tasks.params_base import (
    CompressSection,
    DomainParams,
    EvaluateSection,
    RegisterSection,
    RegressionTrain,
    ScoreSection,
    SourceSection,
    Strict,
)


class FieldLayoutSpec(Strict):
    """How a field file stores the velocity (:class:`tasks.domains.turbulence.layout.FieldLayout`), so new datasets need a
    spec, not code. The synthetic source's layout is the default. The paper's channel-flow array
    (``Retau180_dim21x400x32x33x16x4_dT200.npy``) is ``variables: [u], axes: trajectory,time,x,y,z,component,
    channels: [0, 1, 2], coords: {x: 12.566, y: 2.0, z: 4.189}, dt: 1.0``; ``hit_slice.nc`` is
    ``variables: [velocity_x, velocity_y, velocity_z], axes: z,y,x``."""

    variables: list[str] = Field(default_factory=lambda: ["velocity"], min_length=1)
    """One variable with a ``component`` axis, or one variable per component (HDF5/Zarr paths allowed)."""
    axes: str = "trajectory,time,x,y,component"
    """Stored axis order, comma-separated from ``trajectory, time, x, y, z, component``."""
    components: list[str] | None = None
    channels: list[int] | None = None
    """Stored component indices to keep (the channel-flow set: ``[0, 1, 2]``, dropping the 4th)."""
    coords: dict[Literal["x", "y", "z"], str | float | list[float]] | None = None
    """Per spatial axis: a coordinate variable name, a domain length, or ``[start, stop]``."""
    time: str | None = None
    dt: float | None = Field(None, gt=0)
    """Time between stored snapshots (else a time variable ``t``/``time`` or the file attribute ``dt``)."""
    dt_model: float | None = Field(None, gt=0)
    """Time the surrogate advances per step: a whole multiple of the snapshot spacing (default: the spacing)."""
    periodic: bool | Literal["auto"] = "auto"
    """Is the grid periodic? auto: yes for HDF5 / NetCDF / NPZ / NPY / Zarr (solver output), no for text tables and
    Tecplot (PIV, wall-bounded grids). Not periodic: spectra are windowed (Hann), no spectral filter / coarsening."""
    delimiter: str | None = None
    """Text tables: the column separator (null: a comma when the header has one, else whitespace)."""
    grid_rtol: float = Field(0.01, gt=0, lt=0.5)
    """Text tables and Tecplot: largest deviation of a coordinate spacing from the mean spacing, relative to it."""

    def to_layout(self) -> FieldLayout:
        return FieldLayout(**self.model_dump())


class TurbulenceSynthetic(Strict):
    """The offline solver (tasks/domains/turbulence/synthetic.py): filtered DNS of forced turbulence, written as HDF5."""

    dim: Literal[2, 3] = 2
    """2: Kolmogorov flow (vorticity form); 3: forced homogeneous isotropic turbulence (the paper profile)."""
    n_trajectories: int = Field(7, ge=2)
    """Independent trajectories from random initial fields; split whole into train / val / test."""
    n_snapshots: int = Field(60, ge=3)
    fine_n: int | None = Field(None, ge=8)
    """Solver grid per side (default 128 in 2-D, 32 in 3-D)."""
    coarse_n: int | None = Field(None, ge=4)
    """Stored (LES-like) grid per side (default 32 in 2-D, 16 in 3-D)."""
    dt_snapshot: float | None = Field(None, gt=0)
    """Time between stored snapshots (default 0.5 in 2-D, 0.2 in 3-D)."""
    spinup: float | None = Field(10.0, ge=0)
    """Time simulated before the first snapshot (None: the generator's default, 15 in 2-D, 10 in 3-D)."""
    filter_kind: Literal["spectral", "box", "gaussian"] = "gaussian"
    filter_width: float = Field(2.0, gt=0)
    """Filter width in coarse-grid cells."""
    viscosity: float | None = Field(None, gt=0)
    forcing_amplitude: float | None = Field(None, gt=0)
    """2-D Kolmogorov forcing amplitude A of (A sin(4y), 0) (default 0.1)."""
    seed: int = 0


class TurbulenceIngest(SourceSection):
    source: str = "synthetic"
    """``synthetic``, one HDF5 / NetCDF3 / NetCDF4 / NPZ / NPY file or Zarr store, or text tables / Tecplot ASCII
    files (one file, a folder or a glob; one trajectory per folder), local or any fsspec URL."""
    format: Literal["auto", "hdf5", "netcdf4", "netcdf3", "npz", "npy", "zarr", "table", "tecplot"] = "auto"
    spec: FieldLayoutSpec = Field(default_factory=FieldLayoutSpec)
    synthetic: TurbulenceSynthetic = Field(default_factory=TurbulenceSynthetic)
    max_array_bytes: int = Field(DEFAULT_MAX_ARRAY_BYTES, ge=1)
    """The field variables may declare at most this many bytes (shape x item size, 8 GiB), checked before they
    are read, as is the memory available; a NetCDF3 file (read whole) may be at most this large."""
    max_abs_value: float = Field(DEFAULT_MAX_ABS_VALUE, gt=0)
    """Largest velocity magnitude accepted; larger values (1e36-ish fill values of some writers) are an error."""



class TurbulencePreprocess(Strict):
    """Filtering, coarsening, the split by whole trajectories and the pairs (tasks/turbulence)."""

    filter: Literal["none", "spectral", "box", "gaussian"] = "none"
    """Filter applied before coarsening (the synthetic source is already filtered DNS: none)."""
    filter_width: float = Field(2.0, gt=0)
    """Filter width in cells of the coarse grid."""
    coarse_n: int | None = Field(None, ge=4)
    """Coarsen (spectral truncation) to this many points per side; null = keep the grid. Periodic axes only."""
    t_in: int = Field(1, ge=1)
    """Input window: the last T_in snapshots predict the next one (the paper: 1)."""
    test_trajectories: int = Field(1, ge=1)
    """The last trajectories held out for evaluation (whole trajectories: none is on both sides)."""
    val_trajectories: int = Field(1, ge=0)
    """The trajectories just before them, to pick the best epoch by one-step relative L2 (0: keep the last)."""
    segments: int = Field(1, ge=1)
    """Cut every trajectory into this many consecutive pieces of equal length (the rest of the snapshots dropped),
    each then split as a trajectory: one long PIV sequence becomes train / val / test segments (later in time is
    test). 1: trajectories as ingested."""



TURBULENCE_BASELINES = ("fno", "ifactformer_o")


class TurbulenceTrain(RegressionTrain):
    """IFactFormer-m's recipe (models.md 4.5): relative L2 in physical units, AdamW 5e-4, StepLR(5, 0.7),
    batch 5; 30 epochs in the paper profile, fewer steps here so the default run takes seconds."""

    defaults = {"model": {"arch": "ifactformer"}, "epochs": 6, "steps_per_epoch": 25, "batch_size": 5,
                "eval_batch_size": 32, "lr": 5e-4, "grad_clip": None, "lr_schedule": "step"}
    baselines: list[Literal["fno", "ifactformer_o"]] = Field(default_factory=lambda: list(TURBULENCE_BASELINES))
    """Neural baselines trained by the same loop on the same pairs: FNO and IFactFormer-o (chained kernels)."""
    baseline_configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Constructor overrides per baseline, e.g. ``{fno: {width: 24, modes: [8, 8]}}``."""
    residual: bool = True
    """Every model predicts the increment over the last snapshot (output statistics = the increments'), not the
    field itself as the reference does; on a CPU-sized budget this starts training from persistence. The
    paper profile turns it off."""


class TurbulenceCompress(CompressSection):
    """The budget is a relative rise of the rollout error (5 %); the student: half the width, half the loops."""

    defaults = {"latency_repeats": 20, "budget": 0.05, "distill": {"student": {"dim": 16, "latent_dim": 16, "n_layer": 2}}}


class TurbulenceEvaluate(EvaluateSection):
    """Rollouts against the solver (tasks/domains/turbulence/evaluate.py); throughput at 16 windows per call."""

    defaults = {"latency_repeats": 20, "throughput_batch_size": 16}

    rollout_steps: int = Field(50, ge=1)
    """Autoregressive steps from the first window of each test trajectory (capped by its length)."""
    report_steps: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [10, 50], min_length=1)
    """Steps whose rollout relative L2 goes into the table (``rollout_rel_l2_<s>``); each at least 1 (step 0 is
    the input itself). Steps beyond a trajectory's length are left out of the table with a note."""
    blowup_factor: float = Field(5.0, gt=1.0)
    """A rollout has blown up when a value is not finite or its kinetic energy leaves
    [truth min / factor, truth max * factor] over the window."""
    small_scale_k_fraction: float = Field(0.5, gt=0.0, le=1.0)
    """The small-scale check's shells: k above this fraction of the Nyquist wavenumber (corner shells beyond the
    Nyquist circle, up to sqrt(dim) x, included: a grid-scale checkerboard lives there)."""
    small_scale_factor: float = Field(10.0, gt=1.0)
    """A rollout is unstable (check "small-scale energy") from the first step at which a trajectory's energy in
    those shells exceeds this factor times the truth's at the same step."""
    small_scale_floor: float = Field(1e-3, ge=0.0)
    """The truth's small-scale energy counts as at least this fraction of its total energy (a filtered truth has
    next to none there; without a floor any round-off would be an infinite excess)."""
    solver_speed: bool = True
    """Time the fine-grid solver (synthetic source) for the speed ratio per predicted step."""
    gif: bool = True
    """Write rollout.gif (truth | prediction vorticity) beside the image strip."""
    hit_slice: str | None = "../shared/data/turbulence/hit_slice.nc"
    """A 2-D field whose energy spectrum and inertial-range slope the report shows (relative to the project
    root; skipped with a note when absent)."""
    hit_slice_k_range: list[float] = Field(default_factory=lambda: [3.0, 10.0], min_length=2, max_length=2)
    hit_slice_format: Literal["auto", "hdf5", "netcdf4", "netcdf3", "npz", "npy", "zarr", "table", "tecplot"] = "auto"
    hit_slice_spec: FieldLayoutSpec = Field(default_factory=lambda: FieldLayoutSpec(
        variables=["velocity_x", "velocity_y", "velocity_z"], axes="z,y,x"))
    """How the slice file stores its field, as ``ingest.turbulence.spec`` (default: ``hit_slice.nc``'s
    ``velocity_x/y/z`` stored ``(z, y, x)``); every snapshot of it is averaged into one spectrum."""



class TurbulenceRegister(RegisterSection):
    """Gated on rollout error (lower is better); a rollout that blew up is never promoted."""

    defaults = {"primary_metric": "rollout_rel_l2_50", "higher_is_better": False, "latency_budget_ms": 200.0}


class TurbulenceScore(ScoreSection):
    steps: int = Field(50, ge=1)
    """Snapshots predicted from the last input window of each trajectory in the scored file."""


PARAMS = DomainParams(ingest=TurbulenceIngest, preprocess=TurbulencePreprocess, train=TurbulenceTrain,
                      compress=TurbulenceCompress, evaluate=TurbulenceEvaluate, register=TurbulenceRegister,
                      score=TurbulenceScore)
