"""``pipeline.task_runner: dask``: the stages and the fits inside them on a real local Dask cluster (2 workers).

What fans out (README "Scale out"): the domains' stages (Prefect tasks through prefect-dask), and inside a
stage the independent fits (:mod:`tasks.fanout`): the EEG protocol's models x seeds x folds and the
compression variants. Each is the same function as with threads, so the results agree.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from tasks import tracking
from tasks.fanout import fan_out
from tasks.params import load_params
from tests.conftest import setup_project

pytestmark = [pytest.mark.slow, pytest.mark.scaleout]


def whoami(i: int) -> tuple[int, int]:
    """A fan-out item: its own index and the process that ran it."""
    return i, os.getpid()


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    from flows.runners import local_cluster_kwargs

    with LocalCluster(**local_cluster_kwargs(2)) as c:
        yield c


def test_fits_fan_out_to_the_workers_and_come_back_in_order(cluster, tmp_path):
    from tasks.domains.eeg.runner import run_protocol

    settings = SimpleNamespace(task_runner="dask", address=cluster.scheduler_address)
    out = fan_out(whoami, [(i,) for i in range(8)], settings, progress=False)
    assert [i for i, _ in out] == list(range(8))
    assert os.getpid() not in {pid for _, pid in out}  # ran in the workers, not here

    # The EEG protocol's fits on the cluster equal the same fits in this process (same seeds, same folds).
    rng = np.random.default_rng(0)
    n_chans, n_times = 4, 128
    labels = np.tile([0, 1], 12)
    subjects = np.repeat(["s1", "s2"], 12)
    x = rng.standard_normal((24, n_chans, n_times)).astype(np.float32) + labels[:, None, None] * 0.5
    schema = {"channels": [f"C{i}" for i in range(n_chans)], "n_times": n_times, "sfreq": 64.0,
              "classes": ["left", "right"]}
    over = {"train": {"eeg": {"protocol": {"models": ["eegnet", "shallowconvnet"], "seeds": [0, 1], "epochs": 2,
                                           "name": "co", "ea_ablation": False}}}}
    from tests.conftest import write_params

    write_params(tmp_path, over)
    params = load_params(tmp_path / "params.yaml")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # as each of the 2 workers (flows.runners)
    try:
        here, _ = run_protocol(params, x, subjects, labels, None, schema, progress=False)
    finally:
        torch.set_num_threads(threads)
    on_dask = params.model_copy(update={"pipeline": params.pipeline.model_copy(
        update={"task_runner": "dask", "address": cluster.scheduler_address})})
    there, info = run_protocol(on_dask, x, subjects, labels, None, schema, progress=False)
    from tasks.domains.eeg.protocol import protocol_folds

    n_test = sum(len(f.test) for f in protocol_folds(subjects, labels, "co"))
    assert len(here["y"]) == len(there["y"]) == 2 * 2 * n_test  # models x seeds x test trials
    for key in ("model", "seed", "fold", "index", "y"):
        assert list(here[key]) == list(there[key])
    # Same seeds, batches and thread count: the same numbers, bit for bit.
    np.testing.assert_array_equal(here["p0"], there["p0"])
    assert set(info["seconds"]) == {"eegnet", "shallowconvnet"}


def test_pipeline_runs_its_domains_and_fits_on_dask(tmp_path, monkeypatch, prefect_harness):
    from flows.pipeline import pipeline

    setup_project(tmp_path / "proj", monkeypatch, {
        "pipeline": {"task_runner": "dask", "workers": 2},
        "compress": {d: {"methods": ["distill", "int8", "distill+int8_eager"]} for d in ("netflow", "eeg")}})
    results = pipeline(domains=["netflow", "eeg"])
    c = tracking.client()
    for domain in ("netflow", "eeg"):
        assert results[domain]["register"]["version"] == "1"
        assert set(results[domain]["compress"]["methods"]) == {"teacher", "distill", "int8", "distill+int8_eager"}
        assert str(c.get_model_version_by_alias(f"formerflow-{domain}", "champion").version) == "1"
        runs = c.search_runs([c.get_experiment_by_name(tracking.experiment_name(domain)).experiment_id])
        workers = {r.data.tags["worker"] for r in runs if r.info.run_name != "pipeline"}
        # Every stage of a domain ran in one Dask worker process, not in the flow's.
        assert workers and all(not w.endswith(f":{os.getpid()}") for w in workers)
    # The EEG protocol's fits (2 models x 1 seed x 2 subjects' folds) all came back, in order.
    import polars as pl

    pred = pl.read_parquet(tmp_path / "proj/artifacts/eeg/baselines/protocol.parquet")
    assert sorted(pred["model"].unique().to_list()) == ["dbconformer", "dbconformer-noEA", "eegnet"]
