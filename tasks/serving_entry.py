"""MLflow's loader module for formerflow models: the MLmodel file of every registered version names it.

MLflow imports this module from the installed formerflow package and calls :func:`_load_pyfunc`
with the model folder inside the artifact; no code from the artifact runs. The folder's files
are checked against the artifact's manifest before any of them is read
(:func:`tasks.serving.verify_artifact`).
"""

from __future__ import annotations

from pathlib import Path

from tasks.serving import MODEL_DIR, FormerflowModel, verify_artifact


def _load_pyfunc(data_path: str) -> FormerflowModel:
    """Verify the artifact that holds ``data_path`` (``<artifact>/data/model_dir``), then load the model folder."""
    folder = Path(data_path)
    root = folder.parents[len(Path(MODEL_DIR).parts) - 1]
    verify_artifact(root)
    return FormerflowModel(folder)
