"""formerflow stage functions: plain Python, no Prefect import.

Each stage is ``run_stage(stage, domain, params, run)``: DVC calls it through
the CLI (``python -m tasks <stage> <domain>``), Prefect wraps it as a task
(:mod:`flows.pipeline`), tests call it directly.
"""
