"""Intel Neural Compressor against formerflow: INC's int8 autotune beside the variant formerflow serves.

For each domain (finance, netflow) this runs ingest -> preprocess -> train -> compress -> evaluate
(``bench/compression.py``'s worker: the ``make run`` defaults, without MLflow) in a throw-away
project root, or reads an existing project (``--root``). Then, in one worker process per domain:

* the teacher (``artifacts/<domain>/teacher``) is exported with INC's ``export`` (``torch.export``,
  batch and, for text, sequence length dynamic) and tuned with INC 3.x ``autotune``: its default
  int8 tuning space on a CPU without IPEX, the PT2E X86 quantizer, static (``StaticQuantConfig``)
  then dynamic (``DynamicQuantConfig``), each ``act_sym`` x ``act_algo`` (8 configs), stopping at
  the first one within the budget. The budget is formerflow's (``compress.<domain>.budget``, an
  absolute drop of ``register.<domain>.primary_metric``); INC 3.x only has a relative
  ``tolerable_loss``, so it gets ``budget / baseline`` (INC's test ``result >= baseline *
  (1 - loss)`` is then ``result >= baseline - budget``). ``eval_fn`` is that primary metric on the
  validation items of formerflow's pruning search (``CompressContext.val_items``: the validation
  split, at most ``compress.<domain>.prune.max_val_items``); static calibration runs on
  ``--calib-items`` training items (default 256, evenly spread: a cap that keeps a static trial of the
  text encoder to seconds; the whole finance training split is 450 sentences).
* the tuned model, the teacher and the variant formerflow's evaluate chose
  (``reports/<domain>/metrics.json`` ``choice``) are measured in that same process: primary metric
  on the test split (and on the validation items), size on disk, batch-1 latency with
  ``tasks.measure.latency_ms`` (``evaluate.<domain>`` batch size and repeats), and the time to make
  them (INC: the ``autotune`` call; formerflow: ``compress.json`` ``seconds``).

One Markdown table; JSON (every trial INC ran) in ``bench/results/external_inc.json``.

    .venv/bin/python -m pip install -e '.[bench]'                 # INC is a benchmark dependency only
    .venv/bin/python bench/external_inc.py                         # finance and netflow: stages, then INC
    .venv/bin/python bench/external_inc.py --domain netflow --root .   # an existing project's artifacts

INC's PT2E path returns a graph in "QDQ" form (fake quantization: quantize/dequantize nodes around
float ops, float weights); INC says to ``torch.compile`` it for speed. The table measures it as
returned (what ``autotune`` hands back); ``--compile`` adds the tuned model and the teacher compiled by
Inductor (minutes per domain on 2 cores; faster/smaller stay against the eager teacher).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import fmt, make_root, quiet_env, run_worker, table, write_json  # noqa: E402
from bench.compression import STAGES  # noqa: E402
from bench.compression import WORKER as STAGES_WORKER  # noqa: E402

DOMAINS = ("finance", "netflow")
INC_VERSION = "3.10"
"""The version this benchmark was written and run against (``neural-compressor-pt``; pyproject's ``bench`` extra)."""
WORKER = '''
import json, sys
from bench._common import answer
from bench.external_inc import tune_domain
answer(tune_domain(sys.argv[1], json.loads(sys.argv[2])))
'''
TUNED_KEYS = ("w_dtype", "w_granularity", "act_dtype", "act_granularity", "act_sym", "act_algo")
"""The fields of an INC int8 config that the table's note names (the JSON keeps the whole config)."""
HEADERS = ["domain", "model", "how", "metric", "test", "Δ teacher", "val", "size KB", "smaller",
           "latency ms (b=1)", "faster", "make s", "note"]


# ----------------------------------------------------------------------------- pure helpers (no INC, no torch)
def tolerable_loss(budget: float, baseline: float) -> float:
    """INC 3.x's relative ``tolerable_loss`` that equals an absolute drop of ``budget`` from ``baseline``.

    INC accepts a trial when ``result >= baseline * (1 - tolerable_loss)``; with ``budget / baseline``
    that is ``result >= baseline - budget``, formerflow's rule for a higher-is-better metric.

    Raises:
        ValueError: when the baseline is not positive (no relative loss can express the budget).
    """
    if not baseline > 0:
        raise ValueError(f"baseline {baseline} must be positive to turn the absolute budget {budget} "
                         "into a relative loss")
    return budget / baseline


def summarize_trials(trials: list[dict[str, Any]], baseline: float, loss: float,
                     chosen: dict[str, Any] | None) -> dict[str, Any]:
    """What INC's tuning did: trials run, which passed, which one it returned, whether that was the first pass.

    Args:
        trials: One dict per trial, in order, with ``result`` (the eval_fn value) and ``config`` (its dict).
        baseline: The float model's eval_fn value (INC's baseline).
        loss: The relative tolerable loss INC ran with.
        chosen: The config dict of the model autotune returned (None when it returned none).
    """
    target = baseline * (1 - loss)
    passed = [i for i, t in enumerate(trials, 1) if t["result"] >= target]
    chosen_at = next((i for i, t in enumerate(trials, 1) if chosen is not None and t["config"] == chosen), None)
    return {"n_trials": len(trials), "target": target, "passed": passed, "chosen_trial": chosen_at,
            "first_pass": passed[0] if passed else None,
            "stopped_at_first_pass": bool(passed) and chosen_at == passed[0] == len(trials)}


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows of one domain's worker result: the teacher, formerflow's chosen variant, INC (and compiled).

    Speed-up and size ratio are against the teacher measured in the same process; ``note`` says when a
    model is slower than the teacher at batch 1 or outside the budget on the test split.
    """
    models = result["models"]
    teacher = models["teacher"]
    primary, budget = result["primary"], result["budget"]
    rows = []
    for name, m in models.items():
        faster = teacher["latency_ms"] / m["latency_ms"] if m.get("latency_ms") else None
        smaller = teacher["bytes"] / m["bytes"] if m.get("bytes") else None
        delta = m["test"] - teacher["test"] if m.get("test") is not None else None
        notes = list(m.get("notes", []))
        if name != "teacher" and faster is not None and faster < 1:
            notes.append("slower than the teacher at b=1")
        if name != "teacher" and delta is not None and delta < -budget:
            notes.append(f"outside the budget ({budget}) on test")
        rows.append({"domain": result["domain"], "model": name, "how": m["how"], "primary": primary,
                     "test": m.get("test"), "delta": delta, "val": m.get("val"), "bytes": m.get("bytes"),
                     "smaller": smaller, "latency_ms": m.get("latency_ms"), "faster": faster,
                     "seconds": m.get("seconds"), "note": "; ".join(notes)})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of :func:`rows_of` rows."""
    return table(HEADERS, [[r["domain"], r["model"], r["how"], r["primary"], fmt(r["test"], 4), fmt(r["delta"], 4),
                            fmt(r["val"], 4), fmt((r["bytes"] or 0) / 1024, 0) if r["bytes"] else "-",
                            fmt(r["smaller"]), fmt(r["latency_ms"], 3), fmt(r["faster"]), fmt(r["seconds"], 1),
                            r["note"]] for r in rows], align="llll" + "r" * 8 + "l")


def tuning_lines(result: dict[str, Any]) -> list[str]:
    """One line per domain on INC's tuning: trials, what passed, what it returned, any trial that raised."""
    inc, t = result["inc"], result["inc"]["tuning"]
    chosen, err = inc["config"], inc.get("error")
    parts = [f"{result['domain']}: INC ran {t['n_trials']} of {inc['space']} configs (baseline {inc['baseline']:.4f}, "
             f"target >= {t['target']:.4f} on {inc['val_items']} val items)",
             "passed: " + (", ".join(map(str, t["passed"])) or "none")]
    if chosen:
        params = chosen.get("params", {})
        short = ", ".join(f"{k}={params[k]}" for k in TUNED_KEYS if k in params)
        parts.append(f"returned trial {t['chosen_trial']} ({chosen.get('name')}: {short})")
        parts.append("stopped at the first passing config" if t["stopped_at_first_pass"] else
                     "no trial passed: the best one" if not t["passed"] else "did not stop at the first pass")
    else:
        parts.append("returned no model")
    if err:
        parts.append(f"trial {err['trial']} raised ({(err.get('config') or {}).get('name')}): {err['error'][:300]}")
    return ["; ".join(parts)]


# ----------------------------------------------------------------------------- the worker (imports INC)
def _config_dict(config: Any) -> dict[str, Any]:
    """``{"name": "static_quant" | "pt2e_dynamic_quant" | ..., "params": {...}}`` of one INC config."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {"name": getattr(config, "name", None), "params": d}


def tune_domain(domain: str, opts: dict[str, Any]) -> dict[str, Any]:
    """INC autotune on one domain's teacher, and the three (or four) models measured in this process.

    Runs with ``FORMERFLOW_ROOT`` at a project whose stages ran (teacher, compressed variants, reports).

    Args:
        domain: ``finance`` or ``netflow`` (any classification domain with a validation split works).
        opts: ``profile``, ``overrides``, ``calib_items``, ``calib_batch``, ``max_val_items`` (None: the
            pruning search's cap), ``compile`` (also measure the tuned model under ``torch.compile``).

    Returns:
        A JSON-serialisable dict: per-model measurements, INC's trials and chosen config, timings.
    """
    import numpy as np
    import torch
    from neural_compressor.common.base_tuning import ConfigSet
    from neural_compressor.torch.export import export
    from neural_compressor.torch.quantization import (
        DynamicQuantConfig,
        StaticQuantConfig,
        TuningConfig,
        autotune,
        quantize,
    )
    from neural_compressor.torch.quantization.autotune import _deepcopy_warp
    from neural_compressor.torch.utils import WEIGHT_NAME
    from safetensors.torch import save_file

    from tasks import domains, store
    from tasks.compress import CompressContext, Subset, load_any
    from tasks.evaluate import classification_metrics
    from tasks.loop import predict, probabilities
    from tasks.measure import latency_ms, size_on_disk
    from tasks.params import load_params

    params = load_params(profiles=[p for p in [opts.get("profile")] if p], overrides=opts.get("overrides", []))
    dom = domains.get(domain)
    paths = store.domain_paths(domain)
    info = dom.task_info(params, dom.load_schema())
    reg, cp, ev = (params.section(s, domain) for s in ("register", "compress", "evaluate"))
    if not reg.higher_is_better:
        raise ValueError(f"{domain}: INC's tuning criterion needs a higher-is-better metric ({reg.primary_metric})")
    task, primary, budget = info.task, reg.primary_metric, cp.budget
    threshold = info.threshold if info.threshold is not None else 0.5
    report = store.read_json(paths.reports / "metrics.json")
    made = store.read_json(paths.reports / "compress.json")["methods"]
    variant = report["choice"]["variant"]

    teacher, meta = load_any(paths.teacher)
    ctx = CompressContext(domain, params, teacher, meta["key"])
    val = ctx.val_items()
    if opts.get("max_val_items") and len(val) > opts["max_val_items"]:
        val = Subset(val, np.linspace(0, len(val) - 1, opts["max_val_items"]).round().astype(np.int64))
    test = dom.load_split("test", task)
    train = ctx.splits["train"]
    calib_idx = np.linspace(0, len(train) - 1, min(opts["calib_items"], len(train))).round().astype(np.int64)

    class Graph(torch.nn.Module):
        """An exported graph behind a plain module: ``eval()`` on a ``torch.export`` graph raises, and
        ``predict`` / ``latency_ms`` call it (the graph was exported, and stays, in eval mode)."""

        def __init__(self, graph: torch.nn.Module) -> None:
            super().__init__()
            self.graph = graph

        def train(self, mode: bool = True) -> Graph:
            self.training = mode  # not passed on to the graph
            return self

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.graph(*inputs)

    def plain(model: torch.nn.Module) -> torch.nn.Module:
        return Graph(model) if isinstance(model, torch.fx.GraphModule) else model

    def metric(model, data) -> float:
        # The evaluate stage's own metric code on the model's logits (predict: batches of 1024, inference mode).
        probs = probabilities(predict(plain(model), data, 1024), task)
        return classification_metrics(np.asarray(data.labels), probs, task, info.class_names,
                                      threshold=threshold)[primary]

    # ---- INC: export (dynamic batch and, for text, length), then autotune over its int8 space
    ex_inputs, _ = val.batch(np.arange(2))  # two real items: a size-1 dim would be specialised by torch.export
    dynamic = tuple({i: torch.export.Dim.AUTO for i in range(t.dim())} for t in ex_inputs)
    t0 = time.perf_counter()
    float_graph = export(teacher, ex_inputs, dynamic_shapes=dynamic)
    export_s = time.perf_counter() - t0
    teacher_val = metric(teacher, val)
    loss = tolerable_loss(budget, teacher_val)
    space = [c for kind, c in (("static", StaticQuantConfig.get_config_set_for_tuning()),
                               ("dynamic", DynamicQuantConfig.get_config_set_for_tuning()))
             if opts.get("space", "int8") in ("int8", kind)]
    expanded = ConfigSet.generate_config_list(space)  # INC's own expansion and order (what autotune will try)
    evals: list[dict[str, Any]] = []

    def eval_fn(model) -> float:
        t = time.perf_counter()
        value = metric(model, val)
        qconfig = getattr(model, "qconfig", None)  # the PT2E entries set it on the quantized graph
        config = _config_dict(next(iter(qconfig.values()))) if isinstance(qconfig, dict) and qconfig else None
        evals.append({"result": value, "config": config, "eval_s": round(time.perf_counter() - t, 2)})
        return value

    def calibrate(model) -> None:
        with torch.no_grad():
            for start in range(0, len(calib_idx), opts["calib_batch"]):
                inputs, _ = train.batch(calib_idx[start:start + opts["calib_batch"]])
                model(*inputs)

    tune = TuningConfig(config_set=space, tolerable_loss=loss)
    error = None
    t0 = time.perf_counter()
    try:
        qmodel = autotune(float_graph, tune_config=tune, eval_fn=eval_fn, run_fn=calibrate,
                          example_inputs=ex_inputs)
    except Exception as exc:  # a trial that raises ends INC's tuning (autotune has no per-trial guard): reported
        trials = evals[1:]
        crashed = _config_dict(expanded[len(trials)]) if len(trials) < len(expanded) else None
        chain, cause = [], exc
        while cause is not None and len(chain) < 4:  # torch's pass manager wraps the real error: keep the causes
            chain.append(f"{type(cause).__name__}: {cause}".strip())
            cause = cause.__cause__
        error = {"trial": len(trials) + 1, "config": crashed, "error": " <- ".join(reversed(chain))[:2000]}
        print(f"{domain}: INC autotune raised in trial {len(trials) + 1}: {error['error'][:300]}", flush=True)
        qmodel = None
        if trials:
            # What autotune does when no trial passed: quantize again with the best config tried.
            best = max(range(len(trials)), key=lambda i: trials[i]["result"])
            qmodel = quantize(_deepcopy_warp(float_graph), quant_config=expanded[best], run_fn=calibrate,
                              example_inputs=ex_inputs, inplace=True)
    autotune_s = time.perf_counter() - t0
    baseline, trials = evals[0]["result"], evals[1:]
    qconfig = (getattr(qmodel, "qconfig", {}) or {}) if qmodel is not None else {}
    chosen = _config_dict(next(iter(qconfig.values()))) if qconfig else None
    tuning = summarize_trials(trials, baseline, loss, chosen)
    inc: dict[str, Any] = {"version": _inc_version(), "space": len(expanded), "baseline": baseline,
                           "tolerable_loss": loss, "config": chosen, "tuning": tuning, "trials": trials,
                           "error": error, "export_s": export_s, "autotune_s": autotune_s, "val_items": len(val),
                           "calib_items": len(calib_idx)}
    variant_model = teacher if variant == "teacher" else load_any(paths.compressed / variant)[0]
    variant_folder = paths.teacher if variant == "teacher" else paths.compressed / variant
    models: dict[str, dict[str, Any]] = {
        "teacher": {"how": "float32 (formerflow's trained teacher)", "test": metric(teacher, test), "val": teacher_val,
                    "bytes": size_on_disk(paths.teacher / "model.safetensors"), "seconds": 0.0},
        f"formerflow: {variant}": {"how": report["models"][variant].get("kind", variant) if variant != "teacher"
                                   else "the teacher itself", "test": metric(variant_model, test),
                                   "val": metric(variant_model, val),
                                   "bytes": size_on_disk(variant_folder / "model.safetensors"),
                                   "seconds": made.get(variant, {}).get("seconds")},
    }
    inputs = teacher.example_inputs(ev.latency_batch_size)
    for name, model in (("teacher", teacher), (f"formerflow: {variant}", variant_model)):
        models[name]["latency_ms"] = latency_ms(model, inputs, ev.latency_repeats)["per_item_ms"]
    recorded = report["models"]
    for name, key in (("teacher", "teacher"), (f"formerflow: {variant}", variant)):
        models[name]["evaluate_test"] = recorded[key].get(primary)
        models[name]["evaluate_latency_ms"] = recorded[key].get("latency_ms")
    base = {"domain": domain, "primary": primary, "budget": budget, "variant": variant,
            "choice_reason": report["choice"].get("reason"), "models": models, "inc": inc, "n_test": len(test),
            "latency_repeats": ev.latency_repeats, "latency_batch_size": ev.latency_batch_size,
            "threads": torch.get_num_threads()}
    if qmodel is None:
        models["INC autotune"] = {"how": "INC int8 (PT2E)", "test": None, "val": None, "bytes": None,
                                  "seconds": autotune_s, "latency_ms": None,
                                  "notes": [f"failed in trial {error['trial']}: {error['error'][:120]}"]}
        return base

    # ---- sizes: INC's own save (torch.export.save of the quantized program) and a plain state dict
    out = Path(opts["out"]) / domain
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    qmodel.save(example_inputs=ex_inputs, output_dir=str(out / "inc"))
    inc_bytes = size_on_disk(out / "inc" / WEIGHT_NAME)
    state = {k: v.detach().contiguous() for k, v in qmodel.state_dict().items()}
    save_file(state, str(out / "state_dict.safetensors"))
    state_bytes = size_on_disk(out / "state_dict.safetensors")

    # ---- the tuned model on the test split, its batch-1 latency right after the other two
    notes = [f"autotune raised in trial {error['trial']}: best completed trial re-quantized"] if error else []
    models["INC autotune"] = {
        "how": f"INC {chosen['name'] if chosen else '?'} int8 (PT2E, QDQ graph)", "test": metric(qmodel, test),
        "val": next((t["result"] for t in reversed(trials) if t["config"] == chosen), None), "bytes": inc_bytes,
        "seconds": autotune_s, "latency_ms": latency_ms(plain(qmodel), inputs, ev.latency_repeats)["per_item_ms"],
        "notes": notes}
    # The exported float graph before quantization: what the export alone costs at batch 1, apart from the QDQ nodes.
    inc["float_graph_latency_ms"] = latency_ms(plain(float_graph), inputs, ev.latency_repeats)["per_item_ms"]
    inc.update(bytes_inc_save=inc_bytes, bytes_state_dict=state_bytes)
    if opts.get("compile"):
        # INC's advice for its QDQ graph; the teacher is compiled too, so the pair is like for like. Not with
        # Inductor's freezing (the X86 recipe): on torch 2.13 / torchao 0.18 that fails in torchao's qlinear
        # post-op fusion pass (AssertionError) on the netflow model.
        for name, model in (("teacher", teacher), ("INC autotune", qmodel)):
            t0 = time.perf_counter()
            compiled = torch.compile(plain(model))
            with torch.inference_mode():
                compiled(*inputs)  # the compilation itself, timed apart from the latency
            compile_s = time.perf_counter() - t0
            models[f"{name} + torch.compile"] = {
                "how": "the same model compiled by Inductor", "test": None, "val": None,
                "bytes": models[name]["bytes"], "seconds": models[name]["seconds"] + compile_s,
                "latency_ms": latency_ms(compiled, inputs, ev.latency_repeats)["per_item_ms"],
                "notes": [f"compile {compile_s:.0f} s; metric not re-measured"]}
    return base


def _inc_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("neural-compressor-pt", "neural-compressor"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return "unknown"


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domain", action="append", choices=DOMAINS, help="domain (repeatable; default both)")
    ap.add_argument("--profile", default="", help="params profile")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--root", type=Path, help="use this project's artifacts and reports instead of running the stages")
    ap.add_argument("--calib-items", type=int, default=256, help="training items for static calibration (default 256)")
    ap.add_argument("--calib-batch", type=int, default=32)
    ap.add_argument("--max-val-items", type=int, default=None,
                    help="cap of INC's validation items (default: compress.<domain>.prune.max_val_items)")
    ap.add_argument("--space", choices=("int8", "static", "dynamic"), default="int8",
                    help="INC's int8 tuning space: static then dynamic (default), or one of them")
    ap.add_argument("--compile", action="store_true", help="also time the tuned model and the teacher under torch.compile")
    ap.add_argument("--keep", action="store_true", help="keep the throw-away root")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per worker process (default 3600)")
    args = ap.parse_args(argv)
    domains = args.domain or list(DOMAINS)
    root = args.root.resolve() if args.root else make_root("external-inc")
    opts = {"profile": args.profile, "overrides": args.overrides, "calib_items": args.calib_items,
            "calib_batch": args.calib_batch, "max_val_items": args.max_val_items, "compile": args.compile,
            "space": args.space,
            "out": str(root / "inc-models")}
    results, rows, walls = [], [], {}
    try:
        for domain in domains:
            if args.root is None:
                script = root / "stages_worker.py"
                script.write_text(STAGES_WORKER.format(stages=STAGES))
                _, walls[f"{domain} stages"] = run_worker(script, [domain, args.profile, *args.overrides],
                                                          quiet_env(root), root, args.timeout, f"{domain} stages")
                print(f"{domain}: ingest .. evaluate in {walls[f'{domain} stages']:.0f} s", flush=True)
            script = root / "inc_worker.py"
            script.write_text(WORKER)
            result, walls[f"{domain} INC"] = run_worker(script, [domain, json.dumps(opts)], quiet_env(root), root,
                                                        args.timeout, f"{domain} INC")
            print(f"{domain}: INC worker in {walls[f'{domain} INC']:.0f} s", flush=True)
            results.append(result)
            rows += rows_of(result)
    finally:
        if args.root is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(render(rows))
    print()
    for result in results:
        print("\n".join(tuning_lines(result)))
    path = write_json("external_inc", {"rows": rows, "results": results, "walls_s": walls, "profile": args.profile,
                                       "overrides": args.overrides, "options": {k: v for k, v in opts.items()
                                                                                if k != "out"}})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
