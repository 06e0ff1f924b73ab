"""formerflow stage functions: plain Python, no Prefect import.

Each stage is ``run_stage(stage, domain, params, run)``: DVC calls it through
the CLI (``python -m tasks <stage> <domain>``), Prefect wraps it as a task
(:mod:`flows.pipeline`), tests call it directly.

Importing this package switches the libraries' telemetry off (unless the variables are set
already): every entry point (``python -m tasks``, the ``formerflow`` console script,
``flows``, a test) imports it before MLflow, Prefect or DVC load, and DVC runs as a child
process that inherits them. ``.dvc/config`` holds ``core.analytics = false`` for a ``dvc``
command typed in a fresh clone.
"""

import logging
import os

OFFLINE_ENV = {
    "DO_NOT_TRACK": "true",  # the common switch: Prefect's SDK analytics, MLflow, others
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # the ephemeral Prefect server a flow run starts
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",  # finance loads its encoder through transformers / huggingface_hub
}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

# torchao logs "failed to load" for two GPU-only libraries when it is first imported, by
# tasks/compress/quantize.py or by transformers (finance) whichever comes first: harmless on CPU.
logging.getLogger("torchao").setLevel(logging.ERROR)
# ... and torch warns at the same import that torchao registers two Enums torch.compile now handles itself.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
