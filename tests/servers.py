"""Real servers for the scale-out tests (README "Scale out"): free ports, readiness, clean stops.

Each server is the engine's own program started as a process (no mock, no in-process fake): the
tests talk to it over HTTP exactly as a user's machines would.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server or worker process, killing it if it does not exit in 20 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Wait until ``url`` answers (any status below 500); fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}) before {url} answered:\n"
                               + log.read_text()[-4000:])
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in {timeout:.0f} s:\n" + log.read_text()[-4000:])
        time.sleep(0.5)


@contextlib.contextmanager
def moto_s3(folder: Path) -> Iterator[dict[str, str]]:
    """moto's standalone S3-compatible server (``moto_server``) on a free local port.

    Yields the environment a client needs (endpoint and throw-away credentials, as a user's would come from
    the environment): ``AWS_ENDPOINT_URL`` (boto3/s3fs/polars), ``MLFLOW_S3_ENDPOINT_URL`` (MLflow),
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_DEFAULT_REGION``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url, proc, log, timeout=60)
        yield {"AWS_ENDPOINT_URL": url, "MLFLOW_S3_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        stop(proc)
