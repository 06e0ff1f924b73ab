"""The ``formerflow`` command: every ``python -m tasks`` command, plus the flows' own (``sweep``).

``tasks/`` never imports ``flows/`` (the house rules), so the console script lives here: ``sweep`` runs
:func:`flows.sweep.main` (an Optuna study whose trials are Prefect tasks); anything else is
:func:`tasks.__main__.main` unchanged (stages, ``score``, ``params``, ``lineage``, ``status``).

Examples::

    formerflow train netflow --set train.netflow.epochs=2
    formerflow sweep netflow --trials 20        # = python -m flows.sweep netflow --trials 20
"""

from __future__ import annotations

import sys

from tasks.__main__ import main as tasks_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sweep"]:
        from flows.sweep import main as sweep  # lazy: Prefect and Optuna load only for a sweep

        return sweep(argv[1:])
    return tasks_main(argv)


if __name__ == "__main__":
    sys.exit(main())
