"""Issue 14, findings 1 and 2 end to end, on a git + DVC copy of the repository with real Prefect, MLflow and
DVC: a flow run with ``--set`` does not ``dvc commit`` the stages the override produced (``dvc status`` reports
them), every run stores its resolved params, the version's data tags are the md5s of dvc.lock, and
``formerflow lineage`` / ``formerflow status`` print the chain and the state."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_params
from tests.flows.test_dvc import _dvc, dvc_repo  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow
LATER = ["train@netflow", "compress@netflow", "evaluate@netflow", "register@netflow"]


def test_override_run_is_not_committed_and_lineage_matches_dvc_lock(dvc_repo, prefect_harness, capsys):  # noqa: F811
    from flows.pipeline import pipeline
    from tasks import tracking
    from tasks.__main__ import main
    from tasks.params_base import params_hash

    write_params(dvc_repo, {"pipeline": {"domains": ["netflow"]}})
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run([*git, "commit", "-qam", "netflow only"], cwd=dvc_repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=dvc_repo, capture_output=True, text=True).stdout.strip()

    pipeline(overrides=["train.netflow.epochs=1"], refresh_cache=True)
    out = capsys.readouterr().out
    assert "NOT committed" in out and "train@netflow (train.netflow.epochs: params.yaml 2, this run 1)" in out

    # Finding 1: dvc status does not call outputs of epochs=1 up to date; the stages before train are recorded.
    status = _dvc(dvc_repo, "status")
    assert "up to date" not in status.lower(), status
    stale = json.loads(_dvc(dvc_repo, "status", "--json"))
    assert sorted(stale) == sorted(LATER), stale
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())["stages"]
    assert sorted(lock) == ["ingest@netflow", "preprocess@netflow"]
    assert json.loads((dvc_repo / "reports/netflow/train.json").read_text())["epochs_run"] == 1

    # Every run holds its resolved params (with the override) and their hash.
    c = tracking.client()
    exp = c.get_experiment_by_name("formerflow-netflow")
    runs = c.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(["pipeline", "ingest", "preprocess", *[
        t.split("@")[0] for t in LATER]])
    for r in runs:
        local = c.download_artifacts(r.info.run_id, tracking.RESOLVED_PARAMS, str(dvc_repo / ".tmp" / r.info.run_id))
        stored = yaml.safe_load(Path(local).read_text())
        assert stored["train"]["netflow"]["epochs"] == 1
        assert r.data.tags["params.hash"] == params_hash(stored), r.info.run_name
    assert len({r.data.tags["params.hash"] for r in runs}) == 1

    # Finding 2: the version's data tags are the md5s dvc.lock records, and the DVC cache holds them.
    outs = {o["path"]: o["md5"] for s in lock.values() for o in s["outs"]}
    mv = c.get_model_version_by_alias("formerflow-netflow", "champion")
    assert mv.tags["data.processed.md5"] == outs["data/processed/netflow"]
    assert mv.tags["data.raw.md5"] == outs["data/raw/netflow"]
    train = next(r for r in runs if r.info.run_name == "train")
    assert train.data.tags["input.processed.md5"] == outs["data/processed/netflow"]
    preprocess = next(r for r in runs if r.info.run_name == "preprocess")
    assert preprocess.data.tags["output.data/processed/netflow.md5"] == outs["data/processed/netflow"]

    assert main(["lineage", "netflow"]) == 0
    text = capsys.readouterr().out
    print(text)
    register_run = next(r for r in runs if r.info.run_name == "register")
    parent = next(r for r in runs if r.info.run_name == "pipeline")
    assert "formerflow-netflow v1 @candidate, @champion" in text
    assert f"run        {register_run.info.run_id} (register, FINISHED" in text
    assert f"in pipeline run {parent.info.run_id}" in text
    assert f"hash {mv.tags['params.hash']}, artifact " in text and "params.resolved.yaml" in text
    assert (f"processed  data/processed/netflow md5 {outs['data/processed/netflow']} (dvc.lock: same; "
            "DVC cache: has it)") in text
    assert f"raw        data/raw/netflow md5 {outs['data/raw/netflow']} (dvc.lock: same" in text
    assert "source     source synthetic" in text
    assert f"code       git {head} (dirty: no)" in text
    assert main(["lineage", "netflow/7"]) == 1
    assert "formerflow-netflow has no version 7" in capsys.readouterr().err

    assert main(["status"]) == 0
    text = capsys.readouterr().out
    print(text)
    assert "netflow\n  dvc        4 stale: " + ", ".join(LATER) in text
    assert "train@netflow: not recorded in dvc.lock" in text
    value = tracking.version_metrics(mv)["balanced_accuracy"]  # a metric of the version's run, not a tag
    assert f"  champion   v1 ({mv.tags['model']}) balanced_accuracy {value:.4f}" in text
    assert "  candidate  v1 (" in text and "  last run   20" in text
    assert "eeg" not in text  # pipeline.domains lists netflow only

