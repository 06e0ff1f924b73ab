"""Issue 14, findings 1 and 2 at unit level: DVC's own hash for a folder without DVC running, which stages a
run with overrides must not ``dvc commit``, the Prefect cache after a run with other params, the resolved
params artifact, and ``dvc repro`` refusing a profile that dvc.lock would not record."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def _dvc(root: Path, *args: str) -> None:
    dvc = str(Path(sys.executable).with_name("dvc"))
    proc = subprocess.run([dvc, *args], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dvc_md5_is_the_hash_dvc_records(tmp_path, monkeypatch):
    """``dvc add`` of a folder (nested files, a file .dvcignore leaves out) records what tracking.dvc_md5
    computed before DVC ran; the old lineage hash (store.content_hash) was not that value."""
    from tasks import store, tracking

    root = tmp_path / "repo"
    folder = root / "data" / "processed" / "x"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.parquet").write_bytes(b"\x00abc" * 100)
    (folder / "sub" / "schema.json").write_text('{"n": 1}')
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "m.pyc").write_bytes(b"ignored by .dvcignore")
    _dvc(root, "init", "--no-scm", "-q")
    shutil.copy2(REPO / ".dvcignore", root / ".dvcignore")
    monkeypatch.setenv("FORMERFLOW_ROOT", str(root))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    before = tracking.dvc_md5(folder)
    file_md5 = tracking.dvc_md5(folder / "a.parquet")
    _dvc(root, "add", "-q", "data/processed/x")
    recorded = yaml.safe_load((root / "data/processed/x.dvc").read_text())["outs"][0]
    assert before == recorded["md5"] and before.endswith(".dir")
    assert recorded["nfiles"] == 2  # the .pyc was left out, by DVC and by dvc_md5
    assert tracking.dvc_cache_path(before, root).is_file()  # where DVC keeps it: lineage checks this
    assert file_md5 == store.file_md5(folder / "a.parquet")
    assert store.content_hash(folder) != before  # the lineage tags were of this hash before issue 14
    assert tracking.dvc_md5(root / "nothing") == "missing"


@pytest.fixture
def base(project):
    """The project's params.yaml alone as a dict, with a dvc.yaml beside it."""
    from tasks.params import load_params

    shutil.copy2(REPO / "dvc.yaml", project / "dvc.yaml")
    return load_params(profiles=[], overrides=[]).model_dump(mode="json")


def test_uncommitted_stages_are_the_overridden_one_and_those_after_it(project, base):
    from tasks.lineage import uncommitted_stages
    from tasks.params import load_params, tracked_params

    assert tracked_params("preprocess", "netflow") == ["preprocess.netflow", "ingest.netflow.spec"]
    domains = ["netflow", "eeg"]
    assert uncommitted_stages(base, base, domains) == {}
    run = load_params(overrides=["train.netflow.epochs=1"]).model_dump(mode="json")
    out = uncommitted_stages(run, base, domains)
    assert list(out) == ["train@netflow", "compress@netflow", "evaluate@netflow", "register@netflow"]
    assert out["train@netflow"] == "train.netflow.epochs: params.yaml 2, this run 1"
    assert out["register@netflow"] == "after train@netflow"
    # ingest's spec is a param of preprocess too: a changed ingest leaves the whole domain uncommitted
    run = load_params(overrides=["ingest.eeg.synthetic.n_subjects=3"]).model_dump(mode="json")
    assert list(uncommitted_stages(run, base, domains)) == [f"{s}@eeg" for s in
                                                            ("ingest", "preprocess", "train", "compress",
                                                             "evaluate", "register")]
    run = load_params(profiles=["paper"]).model_dump(mode="json")  # a profile, as --profile or FORMERFLOW_PROFILE
    assert "ingest@netflow" in uncommitted_stages(run, base, domains)
    # a domain params.yaml's pipeline.domains does not list has no stage in dvc.yaml's foreach
    only = {**base, "pipeline": {**base["pipeline"], "domains": ["eeg"]}}
    assert "not a stage of dvc.yaml" in uncommitted_stages(only, only, ["netflow"])["ingest@netflow"]


def test_outputs_written_under_other_params_bypass_the_cache(project):
    """default -> --set train.netflow.epochs=1 -> default: the third run's cache key is the first run's, but the
    outputs on disk are the second run's, so train (and what follows) must run again, not be cache hits."""
    from flows.pipeline import _output_hashes, _output_record, _params_key, outputs_changed
    from tasks import store
    from tasks.params import load_params

    default = load_params().model_dump(mode="json")
    override = load_params(overrides=["train.netflow.epochs=1"]).model_dump(mode="json")
    for stage in ("ingest", "train", "compress"):  # as _run records them after the override run
        store.atomic_write_json(_output_record(stage, "netflow"), {"params": _params_key(stage, "netflow", override),
                                                                   "outputs": _output_hashes(stage, "netflow")})
    assert not outputs_changed("ingest", "netflow", default)
    assert outputs_changed("train", "netflow", default) and outputs_changed("compress", "netflow", default)
    assert not outputs_changed("train", "netflow", override)
    store.atomic_write_json(_output_record("ingest", "netflow"), {"data/raw/netflow": "abc"})  # an older record
    assert outputs_changed("ingest", "netflow", default)


def test_resolved_params_are_an_artifact_and_their_hash_a_tag(project):
    from tasks import tracking
    from tasks.params import load_params
    from tasks.params_base import params_hash

    src = "https://user:s3cret@example.com/flows.csv"
    params = load_params(overrides=[f"ingest.netflow.source={src}", "train.netflow.epochs=1"])
    with tracking.start_run("netflow", "train") as run:
        digest = tracking.log_resolved_params(run, params.model_dump(mode="json"))
    c = tracking.client()
    tags = c.get_run(run.run_id).data.tags
    assert tags["params.hash"] == digest and tags["git.dirty"] in ("true", "false", "unknown")
    local = Path(c.download_artifacts(run.run_id, tracking.RESOLVED_PARAMS, str(project / "dl")))
    text = local.read_text()
    assert "s3cret" not in text
    stored = yaml.safe_load(text)
    assert stored["train"]["netflow"]["epochs"] == 1 and params_hash(stored) == digest


def test_dvc_repro_refuses_params_dvc_lock_would_not_record(project, base, monkeypatch, capsys):
    """Under dvc repro ($DVC_STAGE) a profile from $FORMERFLOW_PROFILE would run train on other params than
    the ones dvc.lock then records: refused, naming the key, before anything runs."""
    from tasks.__main__ import main

    monkeypatch.setenv("DVC_STAGE", "train@netflow")
    monkeypatch.setenv("FORMERFLOW_PROFILE", "paper")
    assert main(["train", "netflow"]) == 2
    err = capsys.readouterr().err
    assert "dvc repro runs train@netflow but dvc.lock would record params.yaml's values" in err
    assert re.search(r"train\.netflow\.[\w.]+: params\.yaml .+, this run ", err)
    assert not (project / "artifacts").exists()


def test_parse_target():
    from tasks.lineage import parse_target

    assert parse_target("netflow") == ("netflow", "champion", None)
    assert parse_target("eeg@candidate") == ("eeg", "candidate", None)
    assert parse_target("finance/3") == ("finance", None, "3")
    with pytest.raises(ValueError, match="expected <domain>"):
        parse_target("netflow@")
