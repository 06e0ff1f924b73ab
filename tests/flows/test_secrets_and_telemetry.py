"""Nothing secret is written down, and nothing phones home, when the stages run as a user runs them.

* A source URL with credentials (``user:password@``, a presigned ``?X-Amz-Signature=``) is
  ingested from a local HTTP server through the command line, with MLflow tracking on: the
  secrets appear in no file of the project (mlflow.db, the manifest, data/raw, ...) and in
  nothing the command printed, also when the source is missing and the command fails.
* Telemetry: the stage runs in a process whose environment has none of the switches
  (DO_NOT_TRACK, ...) nor any CI marker, with a guard (``sitecustomize``) that records every
  DNS lookup or connection to a host that is not this machine: there is none. ``import flows``
  leaves Prefect's analytics off, and ``dvc`` in a fresh clone finds analytics off in
  ``.dvc/config``.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tasks.domains.netflow.synthetic import generate
from tests.conftest import REPO

pytestmark = pytest.mark.slow

PASSWORD, SIGNATURE, CREDENTIAL = "hunter2pw", "c0ffee5ignature", "AKIAEXAMPLEKEY"
SECRETS = (PASSWORD, SIGNATURE, CREDENTIAL)

# The switches a user's shell does not have (make and the tests set them): removed for these children.
SWITCHES = ("DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "PREFECT_SERVER_ANALYTICS_ENABLED", "DVC_NO_ANALYTICS",
            "HF_HUB_DISABLE_TELEMETRY")
# Variables that make MLflow or Prefect switch telemetry off by themselves (CI detection, pytest detection):
# removed, so the child behaves as on a user's machine.
CI_MARKERS = ("CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "JENKINS_URL", "TRAVIS",
              "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "BITBUCKET_COMMIT", "CODEBUILD_BUILD_ARN", "CODEBUILD_BUILD_ID",
              "BUILDKITE", "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "DRONE", "SEMAPHORE", "APPVEYOR", "BUDDY",
              "CI_NAME", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID")


@pytest.fixture
def http_source(tmp_path):
    """A local HTTP server with one NF-v2 CSV; yields its base URL ``http://127.0.0.1:<port>``."""
    folder = tmp_path / "served"
    generate(folder, n_flows=1500, seed=5)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the server's access log is not under test
        pass


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks", *args], cwd=project, capture_output=True, text=True,
                          timeout=300)


def _files_with_secrets(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {s}" for s in SECRETS if s.encode() in data]
    return hits


def test_credentials_in_a_source_url_are_never_written_down(project, http_source):
    url = (f"http://reader:{PASSWORD}@{http_source}/part-0000.csv"
           f"?X-Amz-Signature={SIGNATURE}&X-Amz-Credential={CREDENTIAL}")
    out = _cli(project, "ingest", "netflow", "--set", f"ingest.netflow.source={url}")
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = (project / "data/raw/netflow/manifest.json").read_text()
    assert f'"source": "http://{http_source}/part-0000.csv"' in manifest  # where it came from, still said
    assert (project / "mlflow.db").exists()
    assert _files_with_secrets(project) == []
    assert not [s for s in SECRETS if s in out.stdout + out.stderr]

    # A failing run's message names the source without its secrets too.
    missing = url.replace("part-0000.csv", "nope.csv")
    out = _cli(project, "ingest", "netflow", "--set", f"ingest.netflow.source={missing}")
    assert out.returncode == 1 and f"http://{http_source}/nope.csv" in out.stderr, out.stderr[-3000:]
    assert not [s for s in SECRETS if s in out.stdout + out.stderr]
    out = _cli(project, "params", "--set", f"ingest.netflow.source={url}")
    assert out.returncode == 0 and f"http://{http_source}/part-0000.csv" in out.stdout
    assert not [s for s in SECRETS if s in out.stdout]
    assert _files_with_secrets(project) == []


# ----------------------------------------------------------------------------- telemetry
_GUARD = '''
import os, socket

_LOG = os.environ["NETGUARD_LOG"]
_LOCAL = {None, "", "localhost", "0.0.0.0", "::1", socket.gethostname()}


def _local(host):
    host = host.decode() if isinstance(host, bytes) else host
    return host in _LOCAL or str(host).startswith("127.")


def _refuse(what):
    with open(_LOG, "a") as fh:
        fh.write(f"{os.getpid()} {what}\\n")
    raise OSError(f"network guard: {what}")


_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    if not _local(host):
        _refuse(f"lookup {host}")
    return _getaddrinfo(host, *args, **kwargs)


_connect = socket.socket.connect


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect {address[0]}")
    return _connect(self, address)


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
'''


@pytest.fixture
def bare_env(tmp_path):
    """The environment of a user's shell: no telemetry switch, no CI marker, and the network guard loaded."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_GUARD)
    log = tmp_path / "network.log"
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES and k not in CI_MARKERS}
    env.update(NETGUARD_LOG=str(log), PYTHONPATH=os.pathsep.join([str(guard), str(REPO)]))
    return env, log


def test_a_tracked_stage_makes_no_outside_network_call(project, bare_env):
    env, log = bare_env
    out = subprocess.run([sys.executable, "-m", "tasks", "ingest", "netflow"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (project / "mlflow.db").exists()  # MLflow ran (its telemetry is what used to call out)
    assert not log.exists(), log.read_text()


def test_importing_flows_switches_prefect_analytics_off(bare_env):
    env, log = bare_env
    code = ("import flows.pipeline\n"
            "from prefect._internal.analytics.enabled import is_telemetry_enabled\n"
            "from prefect.settings import get_current_settings\n"
            "print(is_telemetry_enabled(), get_current_settings().server.analytics_enabled)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "False"]
    assert not log.exists(), log.read_text()


def test_dvc_in_a_fresh_clone_has_analytics_off(tmp_path, bare_env):
    env, _ = bare_env
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    clone = tmp_path / "clone"
    (clone / ".dvc").mkdir(parents=True)
    shutil.copy(REPO / ".dvc" / "config", clone / ".dvc" / "config")  # what git checks out; no config.local
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    out = subprocess.run([dvc, "status", "-v"], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "Analytics is disabled" in text and "'daemon', 'analytics'" not in text
