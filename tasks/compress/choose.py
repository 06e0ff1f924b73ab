"""Which variant to serve: the Pareto table of teacher and compressed variants, and the choice within a budget.

Runs in the evaluate stage, on what it measured in one process for every variant: the
primary metric on the test split, batch-1 latency, batched throughput, size on disk.

The choice (:func:`choose`): among the teacher and the variants whose primary metric is
within ``budget`` of the teacher's (an absolute drop when higher is better, a relative rise
when lower is better) and that are **not slower than the teacher at batch 1**, the best on
``objective`` (latency, throughput or size); when none beats the teacher on it, the teacher.
A variant slower than its teacher is reported, never served.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tasks.params_base import NESTED_TOKEN
from tasks.plotting import pyplot, save_png, wrap_title

OBJECTIVES = {"latency": ("latency_ms", False), "throughput": ("throughput_per_s", True), "size": ("bytes", False)}
"""objective -> (metric key, higher is better)."""


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def within_budget(value: float, teacher: float, budget: float, higher_is_better: bool) -> bool:
    """An absolute drop of at most ``budget`` (higher is better), else a relative rise of at most ``budget``."""
    if not (_finite(value) and _finite(teacher)):
        return False
    if higher_is_better:
        return value >= teacher - budget - 1e-12
    return value <= teacher * (1 + budget) + 1e-12


def dominated(rows: dict[str, dict[str, Any]], primary: str, higher_is_better: bool) -> set[str]:
    """Rows another row beats or ties on the metric, latency and size, and beats on at least one of them."""
    def better(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, bool]:
        sign = 1 if higher_is_better else -1
        pairs = [(sign * a[primary], sign * b[primary]), (-a["latency_ms"], -b["latency_ms"]),
                 (-a["bytes"], -b["bytes"])]
        return all(x >= y for x, y in pairs), any(x > y for x, y in pairs)

    usable = {n: r for n, r in rows.items() if all(_finite(r.get(k)) for k in (primary, "latency_ms", "bytes"))}
    out = set()
    for name, row in usable.items():
        for other, orow in usable.items():
            if other != name:
                ge, gt = better(orow, row)
                if ge and gt:
                    out.add(name)
                    break
    return out


def choose(rows: dict[str, dict[str, Any]], *, primary: str, higher_is_better: bool, budget: float,
           objective: str) -> dict[str, Any]:
    """The variant to serve (see the module docstring). ``rows`` holds ``teacher`` and the compressed variants.

    Returns:
        ``{"variant", "reason", "eligible": [...], "rejected": {name: why}}``.

    Raises:
        ValueError: The teacher was not evaluated, or the objective's measurement is missing for it.
    """
    if "teacher" not in rows:
        raise ValueError("the teacher was not evaluated: nothing to compare the variants with")
    key, more_is_better = OBJECTIVES[objective]
    teacher = rows["teacher"]
    if not _finite(teacher.get(primary)):
        return {"variant": "teacher", "reason": f"the teacher has no {primary} to hold the variants to: served as is",
                "objective": objective, "budget": budget, "primary": primary, "eligible": ["teacher"],
                "rejected": {n: f"no {primary} on the teacher" for n in rows if n != "teacher"}}
    if not _finite(teacher.get(key)):
        raise ValueError(f"objective {objective!r} needs {key!r}, which this domain's evaluation does not measure")
    eligible, rejected = ["teacher"], {}
    for name, row in rows.items():
        if name == "teacher":
            continue
        if not within_budget(row.get(primary), teacher[primary], budget, higher_is_better):
            rejected[name] = f"{primary} {row.get(primary)} outside the budget of {budget} (teacher {teacher[primary]:.4f})"
        elif not (_finite(row.get("latency_ms")) and row["latency_ms"] <= teacher["latency_ms"]):
            rejected[name] = (f"slower than the teacher at batch 1 ({row.get('latency_ms', float('nan')):.3f} > "
                              f"{teacher['latency_ms']:.3f} ms)")
        elif not _finite(row.get(key)):
            rejected[name] = f"no {key} measured"
        else:
            eligible.append(name)
    sign = 1 if more_is_better else -1
    best = max(eligible, key=lambda n: (sign * rows[n][key], n == "teacher"))
    if best == "teacher":
        reason = "no variant within the budget beats the teacher on " + objective
    else:
        reason = (f"best {objective} within the budget: {key} {rows[best][key]:.4g} vs teacher {teacher[key]:.4g}; "
                  f"{primary} {rows[best][primary]:.4f} vs {teacher[primary]:.4f}")
    return {"variant": best, "reason": reason, "objective": objective, "budget": budget, "primary": primary,
            "eligible": eligible, "rejected": rejected}


# ============================================================================ report
def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if _finite(value) else "–"


def pareto_markdown(rows: dict[str, dict[str, Any]], choice: dict[str, Any], primary: str,
                    higher_is_better: bool, compress_rows: dict[str, dict[str, Any]]) -> str:
    """The Pareto table: each variant's metric, size, latency, throughput, parameters and cost, against the teacher."""
    teacher = rows["teacher"]
    worse = dominated(rows, primary, higher_is_better)
    lines = [f"Chosen: **{choice['variant']}** ({choice['reason']}). Budget {choice['budget']} on {primary} "
             f"({'drop' if higher_is_better else 'relative rise'}); objective: {choice['objective']}. "
             "Variants measured in one process on this machine; *dominated* = another is at least as good on "
             f"{primary}, latency and size and better on one.", "",
             f"| variant | {primary} | Δ vs teacher | size (KB) | smaller | latency ms (b=1) | faster | "
             "throughput/s | params | make (s) | Pareto | chosen |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, r in rows.items():
        delta = (r[primary] - teacher[primary] if _finite(r.get(primary)) and _finite(teacher.get(primary))
                 else float("nan"))
        smaller = teacher["bytes"] / r["bytes"] if _finite(r.get("bytes")) and r["bytes"] else float("nan")
        faster = teacher["latency_ms"] / r["latency_ms"] if _finite(r.get("latency_ms")) and r["latency_ms"] else float("nan")
        c = compress_rows.get(name, {})
        params = r.get("parameters") or c.get("parameters")
        lines.append(
            f"| {name} | {_fmt(r.get(primary), '.4f')} | {_fmt(delta, '+.4f')} | {_fmt(r.get('bytes', 0) / 1024, ',.0f')} "
            f"| {_fmt(smaller, '.2f')}x | {_fmt(r.get('latency_ms'), '.3f')} | {_fmt(faster, '.2f')}x | "
            f"{_fmt(r.get('throughput_per_s'), ',.0f')} | {_fmt(params, ',')} | {_fmt(c.get('seconds'), '.1f')} | "
            f"{'dominated' if name in worse else 'yes'} | {'**chosen**' if name == choice['variant'] else ''} |")
    if choice["rejected"]:
        lines += ["", "Not eligible: " + "; ".join(f"{n}: {why}" for n, why in choice["rejected"].items()) + "."]
    return "\n".join(lines)


def _nested_pairs(rows: dict[str, dict[str, Any]]) -> list[tuple[float, str, str | None]]:
    """``(width, nested variant, independent variant or None)`` for every uniform nested width, widest first."""
    pairs = []
    for name in rows:
        m = NESTED_TOKEN.match(name)
        if m and m.group("width"):
            indep = f"indep-w{m.group('width')}"
            pairs.append((float(m.group("width")), name, indep if indep in rows else None))
    return sorted(pairs, reverse=True)


def method_sections(rows: dict[str, dict[str, Any]], primary: str, higher_is_better: bool,
                    compress_rows: dict[str, dict[str, Any]]) -> str:
    """What the Pareto table cannot say on its own: MatFormer's nested sub-models beside students distilled
    independently at the same widths (the paper's claim: one nested training matches or beats separate ones), and
    low-rank factorisation before and after its distillation fine-tune (SVD alone loses at low rank)."""
    out = []
    pairs = _nested_pairs(rows)
    if pairs:
        sign = 1 if higher_is_better else -1
        lines = ["### Nested widths (MatFormer) against independently distilled students", "",
                 "One MatFormer fine-tune of the teacher gives every width (`nested-w*`, sliced from one set of "
                 "weights); each `indep-w*` is the same slice of the teacher distilled on its own for as many epochs. "
                 f"*nested better* = the nested sub-model's {primary} is at least the independent one's.", "",
                 f"| FFN width | params | nested {primary} | independent {primary} | nested − independent | "
                 "nested better | latency ms (nested) |", "|---:|---:|---:|---:|---:|---|---:|"]
        wins = n = 0
        for width, name, indep in pairs:
            r, c = rows[name], compress_rows.get(name, {})
            params = r.get("parameters") or c.get("parameters")
            ind = rows[indep].get(primary) if indep else None
            diff = r.get(primary) - ind if _finite(ind) and _finite(r.get(primary)) else float("nan")
            better = "–" if not _finite(diff) else ("yes" if sign * diff >= -1e-12 else "no")
            if _finite(diff):
                n += 1
                wins += better == "yes"
            lines.append(f"| {width:g} | {_fmt(params, ',')} | {_fmt(r.get(primary), '.4f')} | {_fmt(ind, '.4f')} | "
                         f"{_fmt(diff, '+.4f')} | {better} | {_fmt(r.get('latency_ms'), '.3f')} |")
        mixes = [n_ for n_ in rows if (m := NESTED_TOKEN.match(n_)) and m.group("mix")]
        for name in mixes:
            r = rows[name]
            blocks = (compress_rows.get(name, {}).get("nested_blocks") or "")
            lines.append(f"| mix {blocks} | {_fmt(r.get('parameters') or compress_rows.get(name, {}).get('parameters'), ',')}"
                         f" | {_fmt(r.get(primary), '.4f')} | – | – | – | {_fmt(r.get('latency_ms'), '.3f')} |")
        if n:
            lines += ["", f"Nested matches or beats the independent student at {wins} of {n} widths."]
        out.append("\n".join(lines))
    lowrank = [n_ for n_ in rows if n_.split("+")[0] == "lowrank" and "lowrank_val_loss" in compress_rows.get(n_, {})]
    if lowrank:
        lines = ["### Low-rank factorisation: before and after fine-tuning", "",
                 "Validation loss of the teacher, of the SVD-factorised model (ranks chosen on validation) before "
                 "any training, and after its distillation fine-tune.", "",
                 "| variant | layers factorised | params before → after | val loss teacher | after SVD | "
                 f"after fine-tune | test {primary} |", "|---|---|---|---:|---:|---:|---:|"]
        for name in lowrank:
            c = compress_rows[name]
            losses = list(c.get("lowrank_val_loss") or []) + [float("nan")] * 3
            layers = c.get("lowrank_layers")
            layers = f"{layers[0]} of {layers[1]}" if isinstance(layers, list | tuple) and len(layers) == 2 else "–"
            before_after = c.get("lowrank_params")
            before_after = (f"{before_after[0]:,} → {before_after[1]:,}"
                            if isinstance(before_after, list | tuple) and len(before_after) == 2 else "–")
            lines.append(f"| {name} | {layers} | {before_after} | {_fmt(losses[0], '.4f')} | {_fmt(losses[1], '.4f')} | "
                         f"{_fmt(losses[2], '.4f')} | {_fmt(rows[name].get(primary), '.4f')} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def nested_plot(rows: dict[str, dict[str, Any]], compress_rows: dict[str, dict[str, Any]], primary: str,
                higher_is_better: bool, plots_dir: Path, domain: str) -> list[str]:
    """``compress_nested.png``: the metric against parameters, nested sub-models beside independent students."""
    pairs = _nested_pairs(rows)
    if not pairs:
        return []

    def point(name: str | None) -> tuple[float, float] | None:
        if name is None:
            return None
        params = rows[name].get("parameters") or compress_rows.get(name, {}).get("parameters")
        return (params, rows[name][primary]) if _finite(params) and _finite(rows[name].get(primary)) else None

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, idx, style in (("nested (one MatFormer fine-tune)", 1, "o-"), ("independent students", 2, "s--")):
        pts = [p for p in (point(pair[idx]) for pair in pairs) if p is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, alpha=0.85)
    mixes = [point(n) for n in rows if (m := NESTED_TOKEN.match(n)) and m.group("mix")]
    mixes = [p for p in mixes if p is not None]
    if mixes:
        ax.scatter([p[0] for p in mixes], [p[1] for p in mixes], marker="^", color="tab:green", label="Mix'n'Match",
                   zorder=3)
    if _finite(rows["teacher"].get(primary)):
        ax.axhline(rows["teacher"][primary], color="grey", lw=1, ls=":", label="teacher")
    ax.set_xlabel("parameters")
    ax.set_ylabel(primary + (" (higher is better)" if higher_is_better else " (lower is better)"))
    ax.set_title(wrap_title(f"{domain}: nested widths vs independently distilled students", fig, 9), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, plots_dir / "compress_nested.png")
    return ["compress_nested.png"]


def pareto_plots(rows: dict[str, dict[str, Any]], choice: dict[str, Any], primary: str, higher_is_better: bool,
                 plots_dir: Path, domain: str) -> list[str]:
    """``compress_latency.png`` and ``compress_size.png``: the metric against latency and against size."""
    worse = dominated(rows, primary, higher_is_better)
    plt = pyplot()
    files = []
    for key, label, name in (("latency_ms", "batch-1 latency (ms)", "compress_latency.png"),
                             ("bytes", "size on disk (KB)", "compress_size.png")):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for variant, r in rows.items():
            if not (_finite(r.get(key)) and _finite(r.get(primary))):
                continue
            x = r[key] / 1024 if key == "bytes" else r[key]
            face = "none" if variant in worse else ("tab:red" if variant == choice["variant"] else "tab:blue")
            ax.scatter([x], [r[primary]], s=70 if variant == choice["variant"] else 40, facecolors=face,
                       edgecolors="tab:red" if variant == choice["variant"] else "tab:blue", zorder=3)
            ax.annotate(variant, (x, r[primary]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.12)  # room for the variant names written beside the right- and top-most points
        ax.set_xlabel(label + " (log)")
        ax.set_ylabel(primary + (" (higher is better)" if higher_is_better else " (lower is better)"))
        ax.set_title(wrap_title(f"{domain}: {primary} vs {label.split(' (')[0]} (hollow = dominated, red = chosen)",
                                fig, 9), fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save_png(fig, plots_dir / name)
        files.append(name)
    return files
