"""Seed study of IFactFormer-m's rollout on the default synthetic turbulence: training noise and budget.

Issue 17 asks for a surrogate below persistence at 10 steps. One default run says little about that:
the 10-step error of a rollout from the test trajectory's first snapshot moves by 0.2-0.4 between
training seeds. This script trains IFactFormer-m (the ``train.turbulence`` section of params.yaml,
with each setting's overrides) on the default data once per seed and scores it as the evaluate stage
does (``tasks.domains.turbulence.evaluate.evaluate_fields``: one-step error, rollout errors at 10 and
50 steps, spectrum log distance), beside persistence u(t+1) = u(t).

Run it (about 15 s per fit on one core; the default 4 settings x 4 seeds: 5 minutes)::

    .venv/bin/python bench/turbulence_noise.py
    .venv/bin/python bench/turbulence_noise.py --seeds 0,1 \\
        --setting 'pf2={"pushforward_steps": 2}' --setting 'wide={"model": {"dim": 64, "latent_dim": 64}}'

A setting is ``name=JSON``: keys of ``train.turbulence`` (``epochs``, ``input_noise``, ``lr``, ...),
and ``model`` for keys of the model's config. Ingest and preprocess run once in a throw-away project
root (the project's own data/ is not touched); every fit runs on one thread, so that the fits of one
setting differ by their seed only. Prints one table (mean ± std over the seeds, and how many seeds
end below persistence at 10 steps) and writes ``bench/results/turbulence_noise.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import answer, machine, make_root, quiet_env, run_worker, table, write_json  # noqa: E402

METRICS = ("one_step_rel_l2", "rollout_rel_l2_10", "rollout_rel_l2_50", "spectrum_lsd")
DEFAULT_SETTINGS = {
    "no noise, 6 epochs (before)": {"input_noise": 0.0, "epochs": 6},
    "noise 0.05, 6 epochs": {"input_noise": 0.05, "epochs": 6},
    "no noise, 10 epochs": {"input_noise": 0.0, "epochs": 10},
    "noise 0.05, 10 epochs (default)": {"input_noise": 0.05, "epochs": 10},
}


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``name=JSON`` -> (name, overrides); a clear error for anything else."""
    name, sep, body = text.partition("=")
    if not sep or not name.strip():
        raise SystemExit(f"--setting {text!r}: expected name=JSON, e.g. 'pf2={{\"pushforward_steps\": 2}}'")
    try:
        value = json.loads(body)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--setting {name!r}: not JSON ({err}): {body!r}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"--setting {name!r}: expected a JSON object, got {body!r}")
    return name.strip(), value


def fit_once(overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """Worker: train IFactFormer-m with ``overrides`` and ``seed`` on this root's data; score it."""
    import torch

    import models
    from tasks.domains.turbulence.configs import model_config
    from tasks.domains.turbulence.data import load_fields, load_schema, load_split
    from tasks.domains.turbulence.evaluate import Persistence, evaluate_fields
    from tasks.loop import fit, seed_everything
    from tasks.params import load_params

    torch.set_num_threads(1)
    params, schema = load_params(), load_schema()
    overrides = dict(overrides)
    model_overrides = overrides.pop("model", {})
    cfg = params.train.turbulence.model_copy(update={**overrides, "seed": seed, "resume": False})
    seed_everything(seed)  # before the build, as the train stage: the seed picks the initial weights too
    model = models.build("turbulence/ifactformer", {**model_config(params, schema), **model_overrides})
    result = fit(model, load_split("train"), load_split("val"), cfg, task="regression", progress=False)
    e = params.evaluate.turbulence  # the evaluate stage's settings (tasks/domains/turbulence/evaluate.py)
    scores, _, _ = evaluate_fields(
        {"model": model, "persistence": Persistence()}, load_fields("test")["fields"], t_in=schema["t_in"],
        lengths=schema["lengths"], dt_model=schema["dt_model"] or 1.0, rollout_steps=e.rollout_steps,
        report_steps=e.report_steps, blowup_factor=e.blowup_factor, small_scale_k_fraction=e.small_scale_k_fraction,
        small_scale_factor=e.small_scale_factor, small_scale_floor=e.small_scale_floor, plots_dir=None,
        latency_repeats=0, periodic=bool(schema.get("periodic", True)))
    out = {n: {k: float(scores[n][k]) for k in METRICS} for n in scores}
    return {"best_epoch": result.best_epoch, **out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3", help="training seeds, comma-separated (default 0,1,2,3)")
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=JSON",
                    help="a setting to compare (repeatable; default: noise 0/0.05 x 6/10 epochs)")
    ap.add_argument("--keep", action="store_true", help="keep the throw-away project root")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:  # one fit in a subprocess whose environment points at the throw-away root
        job = json.loads(args.worker)
        answer(fit_once(job["overrides"], job["seed"]))
        return 0

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    settings = dict(parse_setting(s) for s in args.setting) or DEFAULT_SETTINGS
    root = make_root("turbulence-noise")
    env = quiet_env(root)
    try:
        for stage in ("ingest", "preprocess"):
            subprocess.run([sys.executable, "-m", "tasks", stage, "turbulence", "--no-track", "-q"], env=env,
                           cwd=root, check=True, capture_output=True, text=True, timeout=1800)
        runs: dict[str, list[dict[str, Any]]] = {}
        for name, overrides in settings.items():
            for seed in seeds:
                res, wall = run_worker(Path(__file__), ["--worker", json.dumps({"overrides": overrides, "seed": seed})],
                                       env, root, 3600, f"{name} seed {seed}")
                runs.setdefault(name, []).append({"seed": seed, "wall_s": round(wall, 1), **res})
                m = res["model"]
                print(f"{name}, seed {seed}: one-step {m['one_step_rel_l2']:.4f}, @10 {m['rollout_rel_l2_10']:.4f}, "
                      f"@50 {m['rollout_rel_l2_50']:.4f}, LSD {m['spectrum_lsd']:.3f} ({wall:.0f} s)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    persistence = next(iter(runs.values()))[0]["persistence"]
    rows = []
    for name, rs in runs.items():
        def ms(key: str, rs: list[dict[str, Any]] = rs) -> str:
            vals = [r["model"][key] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.3f} ± {sd:.3f}"
        below = sum(r["model"]["rollout_rel_l2_10"] < persistence["rollout_rel_l2_10"] for r in rs)
        rows.append([name, ms("one_step_rel_l2"), ms("rollout_rel_l2_10"), ms("rollout_rel_l2_50"),
                     ms("spectrum_lsd"), f"{below} of {len(rs)}"])
    rows.append(["persistence", *(f"{persistence[k]:.3f}" for k in METRICS), "–"])
    print(f"\nIFactFormer-m on the default synthetic turbulence, seeds {seeds} (mean ± std):")
    print(table(["setting", "one-step rel. L2", "rel. L2 @10", "rel. L2 @50", "spectrum LSD",
                 "below persistence @10"], rows, "l" + "r" * 5))
    path = write_json("turbulence_noise", {"machine": machine(), "seeds": seeds, "settings": settings,
                                           "runs": runs, "persistence": persistence})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
