"""The ``turbulence`` domain's side of the contract (:mod:`tasks.domains`): what the generic stages call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.domains import FieldDefaults, InputExample, LoadedModel, TaskInfo
from tasks.domains.turbulence import data, evaluate, scoring
from tasks.domains.turbulence.baselines import train_baselines
from tasks.domains.turbulence.configs import model_config

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


class TurbulenceDomain(FieldDefaults):
    """Next-step prediction of filtered turbulent velocity fields (IFactFormer-m; FNO and IFactFormer-o baselines)."""

    name = "turbulence"

    def load_split(self, name: str, task: str) -> data.FieldPairs:
        return data.load_split(name, task)

    def model_config(self, params: Params, schema: dict[str, Any]) -> dict[str, Any]:
        return model_config(params, schema)

    def task_info(self, params: Params, schema: dict[str, Any]) -> TaskInfo:
        """No classes; the report's columns, one per reported rollout step the test trajectories reach."""
        p = params.evaluate.turbulence
        steps = [s for s in p.report_steps if s <= min(p.rollout_steps, schema["snapshots"] - schema["t_in"])]
        return TaskInfo(
            task="regression", item="step",
            table_columns=["one_step_rel_l2", *[f"rollout_rel_l2_{s}" for s in steps], "spectrum_lsd", "stable",
                           "ms_per_step", "throughput_per_s", "speedup_vs_solver", "bytes", "parameters"],
            column_labels={f"rollout_rel_l2_{s}": f"rel. L2 @{s}" for s in steps},
            split_note=(f"held-out trajectories ({schema['pairs']['test']} one-step pairs; rollouts from the first "
                        "window of each)"))

    def extra_train(self, params: Params, out: Path, run: StageRun | None,
                    baselines: dict[str, Any]) -> dict[str, Any]:
        """The neural baselines (FNO, IFactFormer-o) by the shared loop on the teacher's pairs (:mod:`.baselines`)."""
        return train_baselines(params, out, run)

    def evaluate_models(self, params: Params, models: dict[str, LoadedModel],
                        plots_dir: Path) -> tuple[dict[str, Any], str, list[str]]:
        return evaluate.evaluate_models(params, models, plots_dir)

    def score_fields(self, params: Params, model_uri: str, input_url: str, output: str | Path,
                     width: float | None = None) -> dict[str, Any]:
        return scoring.score_fields(params, model_uri, input_url, output, width=width)

    def predict_array(self, loaded: LoadedModel, model_input: Any) -> np.ndarray:
        return scoring.predict_array(loaded, model_input)

    def input_example(self, loaded: LoadedModel) -> InputExample:
        return scoring.input_example(loaded)


DOMAIN = TurbulenceDomain()
