"""The MLflow pyfunc wrapper that every registered formerflow model uses.

The registered artifact holds the model folder written by this project
(``model.safetensors`` + ``config.json`` with the fitted preprocessing schema),
so a service needs only ``mlflow.pyfunc.load_model("models:/formerflow-<domain>@champion")``
and raw records: the wrapper applies the same preprocessing as training.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import polars as pl

from tasks import domains
from tasks.compress import load_any

# The wrapper takes raw records of any domain, so it has no single input type to declare;
# MLflow's hint-based validation does not apply.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method")


class FormerflowModel(mlflow.pyfunc.PythonModel):
    """Loads a teacher or compressed model folder and scores raw records of its domain."""

    def load_context(self, context) -> None:
        folder = Path(context.artifacts["model_dir"])
        self.model, self.meta = load_any(folder)
        self.loaded = domains.LoadedModel(self.model, self.meta, folder)

    def predict(self, context, model_input, params=None):  # noqa: D102 - MLflow's signature
        """Score a pandas DataFrame of raw records (in time order); returns a pandas DataFrame.

        Field models (turbulence) take arrays instead: ``{"initial": (B, T_in, *grid, C), "steps": [n]}``
        and return the predicted trajectory ``(B, n, *grid, C)``.
        """
        dom = domains.get(self.meta["schema"]["domain"])
        if dom.kind == "field":
            if not isinstance(model_input, dict | np.ndarray):
                raise TypeError(f"the {dom.name} model predicts fields, not table rows: pass {{'initial': array, "
                                f"'steps': [n]}} to the pyfunc, or score a field file with python -m flows.scoring "
                                f"{dom.name} <file> <out>")
            return dom.predict_array(self.loaded, model_input)
        frame = model_input if isinstance(model_input, pl.DataFrame) else pl.from_pandas(model_input)
        return dom.score_frame(self.loaded, frame).to_pandas()
