"""An S3-compatible object store (moto's standalone server, a real process on a free port) as DVC's remote
and as a netflow source (README "Scale out").

* ``dvc push`` to an ``s3://`` remote and ``dvc pull`` into a workspace without the outputs and without
  DVC's cache bring back the netflow outputs of a ``dvc repro`` byte for byte; the objects are in the bucket.
* ``ingest.netflow.source=s3://bucket/prefix/*.csv`` is read through fsspec (s3fs) and gives the same
  Parquet as the same files read locally; a missing key or bucket and refused credentials fail with an
  error that names the URL; credentials in an ``s3://`` URL are refused.
* Credentials come from the environment only: the server checks signatures (moto's IAM authentication is
  switched on, with a user and key made on the server), and the secret key appears in no file of the
  project (manifest, mlflow.db, dvc config) and in nothing the commands printed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import polars as pl
import pytest
import yaml

from tasks import store
from tasks.domains.netflow.synthetic import generate
from tests.conftest import write_params
from tests.flows.test_dvc import _dvc, dvc_repo  # noqa: F401  (dvc_repo: the git + DVC repository fixture)
from tests.servers import moto_s3

pytestmark = [pytest.mark.slow, pytest.mark.scaleout]

SOURCE_BUCKET, DVC_BUCKET = "formerflow-flows", "formerflow-dvc"


def _reader_key(endpoint: str) -> dict[str, str]:
    """Switch the server's authentication on and make a user with an S3 policy; its key, as env variables.

    moto checks no credentials by default (any key passes); ``/moto-api/reset-auth`` lets the next
    three requests through unsigned (the user, its key, its policy) and checks every request after them,
    so a wrong secret is refused exactly as by a real store.
    """
    import boto3

    assert httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"3", timeout=10).status_code == 200
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")
    iam.create_user(UserName="formerflow")
    key = iam.create_access_key(UserName="formerflow")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="formerflow", PolicyName="s3", PolicyDocument=json.dumps(policy))
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """One moto S3 server for the module, authentication on; yields the client environment."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as env:
        yield {**env, **_reader_key(env["AWS_ENDPOINT_URL"])}


def _fresh_s3fs() -> None:
    """Forget cached s3fs instances: they keep the endpoint and credentials they were made with."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """The server's endpoint and key in this test's environment (and its child processes'), nothing else."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):  # no key of the machine's user is read
        monkeypatch.setenv(name, str(tmp_path / "no-aws-files"))
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    _fresh_s3fs()
    yield s3_server
    _fresh_s3fs()


def _fs():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def _files_containing(root: Path, secret: str) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks", *args], capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------- netflow ingest from s3://
def _ingest(source: str):
    from tasks.domains.netflow.ingest import ingest
    from tasks.params import load_params

    return ingest(load_params(overrides=[f"ingest.netflow.source={source}", "ingest.netflow.retry_delay_s=0.01"]))


def test_netflow_ingest_from_s3_matches_the_local_files(project, s3, monkeypatch):
    secret = s3["AWS_SECRET_ACCESS_KEY"]
    files = generate(project / "incoming", n_flows=1500, seed=11, n_files=2)
    fs = _fs()
    fs.mkdir(SOURCE_BUCKET)
    for f in files:
        fs.put(str(f), f"{SOURCE_BUCKET}/nf-v2/{f.name}")

    expected_hash = _ingest(f"{project / 'incoming'}/*.csv")["outputs"]["flows"]
    expected = pl.read_parquet(project / "data/raw/netflow/flows.parquet")

    url = f"s3://{SOURCE_BUCKET}/nf-v2/*.csv"
    out = _cli("ingest", "netflow", "--set", f"ingest.netflow.source={url}")  # MLflow tracking on, as a user runs it
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = store.read_json(project / "data/raw/netflow/manifest.json")
    assert manifest["source"] == url
    assert manifest["files"] == [f"s3://{SOURCE_BUCKET}/nf-v2/{f.name}" for f in files]
    assert all(fp.get("ETag") for fp in manifest["fingerprint"]), manifest["fingerprint"]  # the remote identity
    assert manifest["rows"] == 1500 and manifest["outputs"]["flows"] == expected_hash
    assert pl.read_parquet(project / "data/raw/netflow/flows.parquet").equals(expected)
    assert (project / "mlflow.db").exists()
    assert _files_containing(project, secret) == []
    assert secret not in out.stdout + out.stderr

    # A wrong secret: the store refuses (moto checks the signature), the message names the URL and where
    # credentials come from, never the secret; the previous outputs stay.
    before = store.content_hash(project / "data/raw/netflow")
    wrong = secret[::-1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    _fresh_s3fs()
    with pytest.raises(PermissionError) as refused:
        _ingest(url)
    message = store.redact(f"error in ingest netflow: {refused.value}")  # what the command line prints
    assert f"{url}: access refused" in message and "AWS_SECRET_ACCESS_KEY" in message, message
    assert wrong not in message and secret not in message
    assert store.content_hash(project / "data/raw/netflow") == before
    assert _files_containing(project, secret) == [] and _files_containing(project, wrong) == []


@pytest.mark.parametrize(("source", "message"), [
    (f"s3://{SOURCE_BUCKET}/nf-v2/missing.csv", f"no such file: s3://{SOURCE_BUCKET}/nf-v2/missing.csv"),
    (f"s3://{SOURCE_BUCKET}/nothing-here/*.csv", f"'s3://{SOURCE_BUCKET}/nothing-here/*.csv' matches no file"),
    ("s3://formerflow-no-such-bucket/flows.csv", "no such file: s3://formerflow-no-such-bucket/flows.csv"),
    ("s3://formerflow-no-such-bucket/*.csv", "'s3://formerflow-no-such-bucket/*.csv' matches no file"),
])
def test_a_missing_s3_source_is_named(project, s3, source, message):
    fs = _fs()
    if not fs.exists(SOURCE_BUCKET):
        fs.mkdir(SOURCE_BUCKET)
    with pytest.raises(FileNotFoundError) as err:
        _ingest(source)
    assert message in str(err.value)
    assert not (project / "data/raw/netflow").exists()


def test_credentials_in_an_s3_url_are_refused(project, s3):
    key, secret = s3["AWS_ACCESS_KEY_ID"], s3["AWS_SECRET_ACCESS_KEY"]
    source = f"s3://{key}:{secret}@{SOURCE_BUCKET}/nf-v2/*.csv"
    assert store.redact_url(source) == f"s3://{SOURCE_BUCKET}/nf-v2/*.csv"
    # AWS secrets hold "/" and "+": the "/" ends a URL's host part, yet no piece of the secret is kept.
    assert store.redact("read s3://AKIAEXAMPLE:ab/c+d@bkt/me@x.csv: no") == "read s3://bkt/me@x.csv: no"
    with pytest.raises(ValueError, match="credentials written into the URL are refused") as err:
        _ingest(source)
    assert f"s3://{SOURCE_BUCKET}/nf-v2/*.csv" in str(err.value) and "AWS_ACCESS_KEY_ID" in str(err.value)
    assert secret not in str(err.value) and key not in str(err.value)
    with pytest.raises(ValueError, match="credentials written into the URL"):
        store.fetch_to_cache(f"s3://{key}:{secret}@{SOURCE_BUCKET}/x.csv", project / "cache")


# ----------------------------------------------------------------------------- DVC remote on s3://
def _outs(lock: dict, stages: list[str]) -> dict[str, str]:
    """``{path: md5}`` of the outputs of ``stages`` in a dvc.lock."""
    return {o["path"]: o["md5"] for s in stages for o in lock["stages"][s]["outs"]}


def test_dvc_push_and_pull_round_trip_a_run_through_s3(dvc_repo, s3):  # noqa: F811  (the imported fixture)
    write_params(dvc_repo, {"pipeline": {"domains": ["netflow"]}})
    stages = ["ingest@netflow", "preprocess@netflow"]
    _dvc(dvc_repo, "repro", "preprocess@netflow")  # ingest and preprocess: the netflow data of a run
    outs = _outs(yaml.safe_load((dvc_repo / "dvc.lock").read_text()), stages)
    assert {"data/raw/netflow", "data/processed/netflow"} <= set(outs), outs
    before = {path: store.content_hash(dvc_repo / path) for path in outs}

    # The remote's URL is shared (.dvc/config, committed); the endpoint is this machine's (.dvc/config.local);
    # the key is read from the environment by DVC's s3 client, as by s3fs.
    _fs().mkdir(DVC_BUCKET)
    _dvc(dvc_repo, "remote", "add", "-d", "objects", f"s3://{DVC_BUCKET}/cache")
    _dvc(dvc_repo, "remote", "modify", "--local", "objects", "endpointurl", s3["AWS_ENDPOINT_URL"])
    pushed = _dvc(dvc_repo, "push", *stages)  # this run's stages (the others have not run)
    assert "pushed" in pushed, pushed

    stored = {p.split(f"{DVC_BUCKET}/cache/", 1)[1] for p in _fs().find(f"{DVC_BUCKET}/cache")}
    for path, md5 in outs.items():  # each output (a folder: its .dir listing) is an object of the bucket
        assert f"files/md5/{md5[:2]}/{md5[2:]}" in stored, (path, md5, sorted(stored)[:10])
    assert len(stored) > len(outs)  # and the files inside the folders

    for path in outs:
        shutil.rmtree(dvc_repo / path)
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    pulled = _dvc(dvc_repo, "pull", *stages)
    assert {path: store.content_hash(dvc_repo / path) for path in outs} == before, pulled
    assert "up to date" in _dvc(dvc_repo, "status", *stages).lower()

    assert s3["AWS_ENDPOINT_URL"] not in (dvc_repo / ".dvc" / "config").read_text()  # machine-specific: local
    secret = s3["AWS_SECRET_ACCESS_KEY"]
    assert _files_containing(dvc_repo, secret) == []
    assert secret not in pushed + pulled
