"""Training throughput (trials/s) and parameter count of the EEG models at the reference input size.

DBConformer (Wang et al. 2026) against EEG Conformer (Song et al. 2022), plus EEGNet and
ShallowConvNet for scale, on BNCI2014001-sized trials: 22 channels x 1001 samples (4 s at
250 Hz), 2 classes. Each model trains for ``--steps`` AdamW steps on random trials (the
speed of a step does not depend on the data) after ``--warmup`` untimed steps; inference
throughput is timed the same way in eval mode. CUDA (bf16 autocast) is used when present.

Run it: ``python bench/eeg_train.py`` (``--batch 32 --steps 20 --threads 0`` by default; 0 =
torch's default thread count). Prints one table and writes ``bench/results/eeg_train.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402
from _common import machine, table, write_json  # noqa: E402

import models  # noqa: E402

MODELS = ["eeg/dbconformer", "eeg/eegconformer", "eeg/eegnet", "eeg/shallowconvnet"]
REFERENCE = {"n_chans": 22, "n_times": 1001, "sfreq": 250.0, "n_outputs": 2}


def measure(key: str, batch: int, steps: int, warmup: int, device: str) -> dict:
    torch.manual_seed(0)
    model = models.build(key, REFERENCE).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, REFERENCE["n_chans"], REFERENCE["n_times"], device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                else torch.autocast("cpu", enabled=False))

    def step() -> None:
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
    infer_s = time.perf_counter() - t0
    return {"model": key, "parameters": n_params, "train_trials_per_s": steps * batch / train_s,
            "infer_trials_per_s": steps * batch / infer_s, "train_step_ms": train_s / steps * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for key in args.models:
        print(f"[eeg_train] {key} ...", file=sys.stderr, flush=True)
        rows.append(measure(key, args.batch, args.steps, args.warmup, device))
    ref = {r["model"]: r for r in rows}
    base = ref.get("eeg/eegconformer")
    headers = ["model", "parameters", "params vs EEG Conformer", "train trials/s", "inference trials/s",
               "train step ms"]
    body = [[r["model"], r["parameters"],
             f"{base['parameters'] / r['parameters']:.2f}x fewer" if base else "-",
             r["train_trials_per_s"], r["infer_trials_per_s"], r["train_step_ms"]] for r in rows]
    title = (f"## EEG models at 22 x 1001 (BNCI2014001), batch {args.batch}, {args.steps} steps, "
             f"{device}, {torch.get_num_threads()} threads")
    print(f"\n{title}\n\n{table(headers, body)}\n")
    path = write_json("eeg_train", {"machine": machine(), "args": vars(args), "device": device, "rows": rows})
    print(f"[eeg_train] wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
