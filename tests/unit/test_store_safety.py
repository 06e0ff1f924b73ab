"""tasks/store.py under failure: fsync, recovery after kill -9, the per-domain lock, redaction, the fault hook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tasks import store
from tests.conftest import REPO


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- fsync
def test_atomic_dir_fsyncs_every_file_and_the_folders_before_and_after_the_swap(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):  # the real fsync, and which path it flushed
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(store.os, "fsync", recording_fsync)
    target = tmp_path / "out"
    with store.atomic_dir(target) as d:
        (d / "sub").mkdir()
        (d / "a.bin").write_bytes(b"a" * 10)
        (d / "sub" / "b.bin").write_bytes(b"b")
        tmp_name = d.name
    tmp_files = {str(tmp_path / tmp_name / "a.bin"), str(tmp_path / tmp_name / "sub" / "b.bin")}
    assert tmp_files <= set(synced)  # each file flushed before the rename made it visible
    assert str(tmp_path / tmp_name) in synced  # the new folder's entries
    assert synced[-1] == str(tmp_path)  # and the parent after the rename
    synced.clear()
    store.atomic_write_json(tmp_path / "m.json", {"x": 1})
    assert synced[-1] == str(tmp_path)  # a single file's rename is flushed too
    synced.clear()
    with store.atomic_path(tmp_path / "c.parquet") as tmp:
        tmp.write_bytes(b"c")
    assert synced[-1] == str(tmp_path) and any(s.endswith(".tmp.parquet") for s in synced)


# ----------------------------------------------------------------------------- recovery
def test_recover_renames_the_old_folder_back_when_the_swap_was_cut(tmp_path):
    dead = _dead_pid()
    target = tmp_path / "netflow"
    old = tmp_path / f".netflow.old-{dead}-5"
    old.mkdir()
    (old / "flows.parquet").write_text("previous")
    half = tmp_path / f".netflow.{dead}-7_0.tmp"  # the new folder that was never renamed in
    half.mkdir()
    (half / "flows.parquet").write_text("new")
    other = tmp_path / f".eeg.old-{dead}-5"  # another target's leftovers are not touched
    other.mkdir()
    actions = store.recover(target)
    assert (target / "flows.parquet").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "netflow"]
    assert actions[0] == f"restored {target} from {old.name}" and len(actions) == 2
    assert store.recover(target) == []  # nothing left to do


def test_recover_removes_leftovers_of_dead_writers_only(tmp_path):
    dead = _dead_pid()
    target = tmp_path / "metrics.json"
    target.write_text("{}")
    stale = [tmp_path / f".metrics.json.{dead}-abc_1.tmp",  # atomic_write_bytes
             tmp_path / f".metrics.json.old-{dead}-9",  # a swap killed before the old folder was removed
             tmp_path / ".metrics.json.k2j3h4g5.tmp"]  # an older version's mkdtemp name (no pid)
    for p in stale:
        p.write_text("x")
    live = tmp_path / f".metrics.json.{os.getpid()}-1_2.tmp"  # a writer still running
    live.write_text("x")
    store.recover(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "metrics.json"])
    # recover_tree finds targets in sub-folders (checkpoints/<domain>/<key>/last.pt)
    ckpt = tmp_path / "ckpt" / "abc"
    ckpt.mkdir(parents=True)
    (ckpt / "last.pt").write_text("epoch 1")
    (ckpt / f".last.pt.{dead}-3_4.tmp.pt").write_text("half of epoch 2")
    assert store.recover_tree(tmp_path / "ckpt") == [f"removed {ckpt / f'.last.pt.{dead}-3_4.tmp.pt'}"]
    assert [p.name for p in ckpt.iterdir()] == ["last.pt"]


def test_a_killed_child_not_yet_reaped_counts_as_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert store.process_alive(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while store.process_alive(proc.pid) and time.monotonic() < deadline:  # a zombie until waited for
        time.sleep(0.05)
    assert not store.process_alive(proc.pid)
    proc.wait()


def test_concurrent_writers_of_one_file_get_their_own_temporary_names(tmp_path):
    """Two trainings checkpointing into one folder (before: a fixed last.tmp, and one of them died)."""
    target = tmp_path / "last.pt"
    names, barrier, errors = [], threading.Barrier(2), []

    def write(text: str) -> None:
        try:
            with store.atomic_path(target) as tmp:
                names.append(tmp.name)
                tmp.write_text(text)
                barrier.wait(timeout=10)  # both temporaries exist at once
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(names)) == 2
    assert target.read_text() in ("one", "two") and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# ----------------------------------------------------------------------------- locks
_HOLD = """
import sys, time
from pathlib import Path
from tasks import store
with store.lock("netflow", what="train netflow", root=Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(store.LockHeldError) as err, store.lock("netflow", what="ingest netflow", root=tmp_path):
            pass
        msg = str(err.value)
        assert f"pid {holder.pid}" in msg and "(train netflow, since" in msg and "cannot ingest netflow" in msg
        assert str(tmp_path / ".locks" / "netflow.lock") in msg
        with store.lock("eeg", what="ingest eeg", root=tmp_path):  # another domain is not blocked
            pass
    finally:
        holder.kill()  # kill -9: the OS releases the lock with the process
        holder.wait()
    with store.lock("netflow", what="ingest netflow", root=tmp_path):
        pass


def test_lock_with_a_timeout_waits_for_the_holder(tmp_path):
    started, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold():
        with store.lock("eeg", what="train eeg", root=tmp_path):
            started.set()
            release.wait(10)
        released.set()

    t = threading.Thread(target=hold)
    t.start()
    started.wait(10)
    with pytest.raises(store.LockHeldError, match="after waiting 0.1 s"), \
            store.lock("eeg", what="ingest eeg", root=tmp_path, timeout_s=0.1, poll_s=0.02):
        pass
    threading.Timer(0.3, release.set).start()
    with store.lock("eeg", what="ingest eeg", root=tmp_path, timeout_s=10, poll_s=0.02):
        assert released.is_set()  # it got the lock only once the holder let go
    t.join()


def test_a_stage_is_refused_while_its_domain_is_locked(project):
    from tasks.params import load_params
    from tasks.stages import run_stage

    params = load_params()
    with store.lock("netflow", what="test holder", root=project):
        with pytest.raises(store.LockHeldError, match=rf"pid {os.getpid()} .*\(test holder"):
            run_stage("ingest", "netflow", params, track=False)
        assert not (project / "data").exists()  # refused before anything was written
        cli = subprocess.run([sys.executable, "-m", "tasks", "ingest", "netflow", "--no-track"], cwd=project,
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 1 and f"held by pid {os.getpid()}" in cli.stderr and "Traceback" not in cli.stderr
    assert run_stage("ingest", "netflow", params, track=False)["rows"] > 0  # free again


# ----------------------------------------------------------------------------- fault hook
_FAULT = """
from tasks import store
for name in ("a", "b", "b", "b"):
    print(name, flush=True)
    store.fault_point("p", name)
"""


@pytest.mark.parametrize(("spec", "printed", "killed"), [
    ("p@b#2", "a b b", True),  # the second time at p for b
    ("p", "a", True),  # the first time at p
    ("q", "a b b b", False),  # another point
    ("p@c", "a b b b", False),  # another target
])
def test_fault_point_kills_where_the_variable_says(spec, printed, killed):
    proc = subprocess.run([sys.executable, "-c", _FAULT], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, store.FAULT_ENV: spec})
    assert proc.stdout.split() == printed.split()
    assert proc.returncode == (-signal.SIGKILL if killed else 0)


# ----------------------------------------------------------------------------- redaction
@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:pa55@host.example:8443/a/b.csv?X-Amz-Signature=abc&X-Amz-Credential=k#frag",
     "https://host.example:8443/a/b.csv"),
    ("s3://bucket/key.parquet?versionId=3", "s3://bucket/key.parquet"),
    ("zip://inner.csv::https://tok@host/x.zip?sig=1", "zip://inner.csv::https://host/x.zip"),
    ("file:///data/x.csv", "file:///data/x.csv"),
    ("data/flows-?.csv", "data/flows-?.csv"),  # a plain path: ? is a glob character
    ("synthetic", "synthetic"),
])
def test_redact_url(url, shown):
    assert store.redact_url(url) == shown


def test_redact_walks_messages_and_manifests():
    secret = "https://u:SECRET@h/p.csv?sig=SECRET2"
    manifest = {"source": secret, "files": [secret, "data/raw/x.csv"], "n": 3, "fp": ({"url": secret},)}
    out = store.redact(manifest)
    assert "SECRET" not in repr(out) and out["files"][1] == "data/raw/x.csv" and out["n"] == 3
    assert store.redact(f"reading {secret}: failed (see {secret}).") == "reading https://h/p.csv: failed (see https://h/p.csv)."


def test_source_fingerprint_records_the_url_redacted_and_the_content(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("x,y\n1,2\n")
    fp = store.source_fingerprint(str(f))
    assert fp["md5"] == store.file_md5(f) and fp["size"] == "8"
    import fsspec

    with fsspec.open("memory://bucket/a.csv", "wb") as fh:
        fh.write(b"remote")
    assert store.source_fingerprint("memory://bucket/a.csv")["url"] == "memory://bucket/a.csv"
    assert store.redact_url("memory://u:SECRET@bucket/a.csv") == "memory://bucket/a.csv"


def test_tracking_logs_params_and_tags_redacted(project):
    from tasks import tracking

    with tracking.start_run("netflow", "ingest", tags={"note": "from https://u:SECRET@h/x?sig=SECRET"}) as run:
        run.log_params({"source": "https://u:SECRET@h/x.csv?sig=SECRET"})
        run.set_tags({"where": "s3://b/k?X-Amz-Signature=SECRET"})
    data = tracking.client().get_run(run.run_id).data
    assert data.params["source"] == "https://h/x.csv"
    assert data.tags["note"] == "from https://h/x" and data.tags["where"] == "s3://b/k"
    assert b"SECRET" not in (project / "mlflow.db").read_bytes()
