"""Boot Prefect's ephemeral API server while ``python -m flows.pipeline`` imports the rest of the program.

With no ``PREFECT_API_URL``, Prefect starts its API on the first flow call: a uvicorn subprocess that
imports the server and creates or migrates its database (about 15 s on a fresh ``PREFECT_HOME`` on the
2-core VM), after this process has spent about as long importing torch, MLflow and the stages. Started
from a thread at the top of :mod:`flows.pipeline` (only when it runs as a program), the server boots on
the other core during those imports; :func:`wait` joins it before the flow runs, because Prefect marks the
server running as soon as it launches the process and would otherwise talk to it before it answers.
It is Prefect's own server object (``SubprocessASGIServer``, one per process), so the flow then finds it
started and stops it at exit as it always does. Anything going wrong here is left to Prefect: it starts the
server itself on the first flow call, as without this module.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

_thread: threading.Thread | None = None
_server: Any = None  # Prefect's SubprocessASGIServer, once this module launched it


def _boot() -> None:
    try:
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED  # lazy: boot thread

        if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            return  # a configured server, or no ephemeral one: nothing to boot
        from prefect.server.api.server import SubprocessASGIServer  # lazy: only when booting

        global _server
        _server = SubprocessASGIServer()
        _server.start()
    except Exception:  # noqa: BLE001 - Prefect starts (and reports) it on the first flow call instead
        return


def start() -> None:
    """Start booting the ephemeral API server in the background (once)."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_boot, name="prefect-api-boot", daemon=True)
        _thread.start()
        # A program that ends before the flow (--help, a refused lock, an error) must not leave the server
        # process behind: let the boot finish, then stop it (Prefect's stop is idempotent).
        atexit.register(_stop)


def _stop() -> None:
    if _thread is not None:
        _thread.join(timeout=120)
    if _server is not None:
        _server.stop()


def wait() -> None:
    """Wait until the background boot (if any) has finished: the server answers, or Prefect will start it."""
    if _thread is not None:
        _thread.join()
