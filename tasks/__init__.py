"""formerflow stage functions: plain Python, no Prefect import.

Each stage is ``run_stage(stage, domain, params, run)``: DVC calls it through
the CLI (``python -m tasks <stage> <domain>``), Prefect wraps it as a task
(:mod:`flows.pipeline`), tests call it directly.
"""

import logging

# torchao logs "failed to load" for two GPU-only libraries when it is first imported, by
# tasks/compress/quantize.py or by transformers (finance) whichever comes first: harmless on CPU.
logging.getLogger("torchao").setLevel(logging.ERROR)
# ... and torch warns at the same import that torchao registers two Enums torch.compile now handles itself.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
