"""A local MLflow tracking server on PostgreSQL with served artifacts: start, stop, status.

The scale-out path of formerflow's tracking (docs/operations.md, "Scale out"): MLflow's own ``mlflow server`` with a
PostgreSQL backend store (runs, metrics, the model registry) and ``--serve-artifacts``, so clients read and
write artifacts through the server over HTTP (``mlflow-artifacts:/`` locations) and the server stores them in
``--artifacts`` (a local folder, or an object store such as ``s3://bucket/prefix``). Point formerflow at it with
``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>``; nothing else changes.

Usage::

    python tools/mlflow_server.py start  [--data .mlflow-server] [--port 5000] [--artifacts s3://bucket/mlflow]
    python tools/mlflow_server.py status [--data .mlflow-server]
    python tools/mlflow_server.py stop   [--data .mlflow-server]
    python tools/mlflow_server.py start --foreground      # stops both servers on Ctrl-C (``make mlflow-server``)

``start`` creates a PostgreSQL cluster the first time (``initdb`` into ``<data>/postgres``, or ``--pgdata``),
starts it on 127.0.0.1 only (a free port the first time, the same one after), creates the ``mlflow`` database,
starts ``mlflow server`` and waits until it answers. The folder keeps the cluster, the logs (``mlflow.log``,
``postgres.log``) and ``server.json`` (ports, process id, URIs), so ``start`` after ``stop`` finds the same runs.

PostgreSQL refuses to run as root. Run as root (CI, containers), the cluster belongs to an unprivileged system
user (``--pg-user``; default ``postgres`` when it exists, else a ``formerflow`` system user that is created with
``useradd``) and ``initdb`` / ``pg_ctl`` run through ``runuser -u <user> --``. That user must be able to reach
the cluster's folder: a folder under a private home (``/root``, pytest's 0700 temp folders) is refused with the
folder named; give ``--pgdata`` a folder it can reach (``/var/tmp/formerflow-pg``).

Credentials come only from the environment and are never printed: the database password is ``$PGPASSWORD``
when set (libpq's own variable; the server inherits it), else a random one written to ``<data>/pgpass``
(libpq's password file, mode 0600, handed to the server as ``PGPASSFILE``), never on a command line. The object
store's credentials are the usual ``AWS_*`` variables (and ``MLFLOW_S3_ENDPOINT_URL`` for an S3-compatible
endpoint) in the environment of ``start``; the server inherits them. Printed URLs go through
:func:`tasks.store.redact`.

A team runs PostgreSQL as a managed service instead: ``mlflow server --backend-store-uri
postgresql+psycopg://<user>@<host>/<db> --artifacts-destination s3://<bucket>/<prefix> --host 0.0.0.0``
(see MLflow's "tracking server" docs); this tool is the same command with a throw-away local cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from tasks.store import redact  # noqa: E402 (after the path above)

DB_NAME = "mlflow"
DB_USER = "mlflow"
STATE = "server.json"
PASSFILE = "pgpass"
FALLBACK_USER = "formerflow"


class ServerError(RuntimeError):
    """The servers cannot be started or stopped; the message says why and names the file, folder or process."""


@dataclass
class State:
    """What ``start`` records in ``<data>/server.json`` for ``status`` and ``stop`` (no credentials)."""

    pgdata: str
    pg_port: int
    pg_user: str | None
    host: str
    port: int
    artifacts: str
    mlflow_pid: int | None = None

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def backend_uri(self) -> str:
        """The backend store URI: no password in it (libpq reads ``PGPASSWORD`` or ``PGPASSFILE``)."""
        return f"postgresql+psycopg://{DB_USER}@127.0.0.1:{self.pg_port}/{DB_NAME}"


# ----------------------------------------------------------------------------- helpers
def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL program: on PATH, else the newest ``/usr/lib/postgresql/<v>/bin``."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    raise ServerError(f"{name} not found on PATH nor in /usr/lib/postgresql/*/bin: install the PostgreSQL server "
                      "binaries (Debian: apt-get install postgresql)")


def is_root() -> bool:
    return os.geteuid() == 0


def pg_user(requested: str | None) -> str | None:
    """The unprivileged user that runs PostgreSQL when we are root (created if needed); None when we are not."""
    if not is_root():
        return None
    name = requested or ("postgres" if _user_exists("postgres") else FALLBACK_USER)
    if not _user_exists(name):
        proc = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                              capture_output=True, text=True)
        if proc.returncode != 0 and not _user_exists(name):
            raise ServerError(f"cannot create the system user {name!r} to run PostgreSQL (it refuses root): "
                              f"useradd: {proc.stderr.strip()}; name an existing user with --pg-user")
    return name


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def as_user(user: str | None, cmd: list[str]) -> list[str]:
    """``cmd`` run as ``user`` (through ``runuser``), or as it is when ``user`` is None."""
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


def run(cmd: list[str], what: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run ``cmd``; raise :class:`ServerError` with its output (redacted) when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise ServerError(f"{what} failed ({proc.returncode}): {redact((proc.stdout + proc.stderr).strip())[-2000:]}")
    return proc.stdout


def check_reachable(folder: Path, user: str | None) -> None:
    """Fail, naming the first folder on the way, when ``user`` cannot write ``folder`` (a private parent)."""
    if user is None or subprocess.run(as_user(user, ["test", "-w", str(folder), "-a", "-x", str(folder)])).returncode == 0:
        return
    blocked = folder
    for parent in reversed(folder.parents):
        if subprocess.run(as_user(user, ["test", "-x", str(parent)])).returncode != 0:
            blocked = parent
            break
    raise ServerError(f"{folder}: the PostgreSQL user {user!r} cannot reach this folder ({blocked} is closed to it); "
                      f"PostgreSQL refuses to run as root, so its cluster must lie where {user!r} can go: pass "
                      "--pgdata with a folder such as /var/tmp/formerflow-pg")


def read_state(data: Path) -> State | None:
    path = data / STATE
    if not path.is_file():
        return None
    try:
        return State(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ServerError(f"{path} is not a state file of this tool ({exc}); remove it to start afresh") from exc


def write_state(data: Path, state: State) -> None:
    tmp = data / f".{STATE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(state), indent=1))
    tmp.replace(data / STATE)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie (our own child, not yet reaped) is not alive
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def healthy(uri: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as resp:  # noqa: S310 (our own http URL)
            return resp.status == 200
    except OSError:
        return False


# ----------------------------------------------------------------------------- PostgreSQL
def cluster_dir(pgdata: Path) -> Path:
    return pgdata / "cluster"


def pg_running(state: State) -> bool:
    cluster = cluster_dir(Path(state.pgdata))
    if not (cluster / "postmaster.pid").exists():
        return False
    proc = subprocess.run(as_user(state.pg_user, [pg_bin("pg_ctl"), "status", "-D", str(cluster)]),
                          capture_output=True, text=True)
    return proc.returncode == 0


def password_env(data: Path) -> dict[str, str]:
    """The environment that gives libpq (psycopg, the server) the database password: PGPASSWORD, or PGPASSFILE."""
    if os.environ.get("PGPASSWORD"):
        return {}
    return {"PGPASSFILE": str((data / PASSFILE).resolve())}


def init_cluster(data: Path, state: State) -> None:
    """``initdb`` a new cluster (scram-sha-256 password auth, TCP on 127.0.0.1 only) unless one exists."""
    pgdata = Path(state.pgdata)
    cluster = cluster_dir(pgdata)
    if (cluster / "PG_VERSION").is_file():
        return
    password = os.environ.get("PGPASSWORD") or secrets.token_urlsafe(24)
    if not os.environ.get("PGPASSWORD"):
        passfile = data / PASSFILE
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # libpq ignores a wider mode
        with os.fdopen(fd, "w") as fh:
            fh.write(f"127.0.0.1:*:*:{DB_USER}:{password}\n")
    pwfile = pgdata / ".initdb-pw"  # read by initdb as the PostgreSQL user, removed right after
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    try:
        if state.pg_user is not None:
            shutil.chown(pwfile, state.pg_user)
        run(as_user(state.pg_user, [pg_bin("initdb"), "-D", str(cluster), "-U", DB_USER, f"--pwfile={pwfile}",
                                    "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                                    "--no-locale", "--no-instructions"]), f"initdb -D {cluster}")
    finally:
        pwfile.unlink(missing_ok=True)
    # TCP on loopback only, no Unix socket (its default folder /var/run/postgresql may not exist or be writable).
    with open(cluster / "postgresql.conf", "a") as fh:
        fh.write("\n# tools/mlflow_server.py\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")


def start_postgres(data: Path, state: State) -> None:
    """Start the cluster on ``state.pg_port`` (waits until it accepts connections) and create the database."""
    cluster = cluster_dir(Path(state.pgdata))
    if not pg_running(state):
        log = Path(state.pgdata) / "postgres.log"
        run(as_user(state.pg_user, [pg_bin("pg_ctl"), "start", "-D", str(cluster), "-l", str(log), "-w", "-t", "60",
                                    "-o", f"-p {state.pg_port}"]),
            f"pg_ctl start -D {cluster} (log: {log})")
    try:
        import psycopg  # lazy: the scale extra's driver (the server's too), needed only here
    except ImportError as exc:
        raise ServerError("psycopg, the PostgreSQL driver of the MLflow server's backend store, is not installed: "
                          "install the scale extra (python tools/install.py '.[dev,scale]')") from exc

    env_before = {k: os.environ.get(k) for k in ("PGPASSFILE",)}
    os.environ.update(password_env(data))
    try:
        with psycopg.connect(host="127.0.0.1", port=state.pg_port, user=DB_USER, dbname="postgres",
                             autocommit=True, connect_timeout=10) as con:
            if con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
                con.execute(f"CREATE DATABASE {DB_NAME}")
    except psycopg.Error as exc:
        raise ServerError(f"cannot connect to PostgreSQL on 127.0.0.1:{state.pg_port} as {DB_USER} "
                          f"(cluster {cluster}): {exc}") from exc
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def stop_postgres(state: State) -> None:
    cluster = cluster_dir(Path(state.pgdata))
    if pg_running(state):
        run(as_user(state.pg_user, [pg_bin("pg_ctl"), "stop", "-D", str(cluster), "-m", "fast", "-w", "-t", "60"]),
            f"pg_ctl stop -D {cluster}")


# ----------------------------------------------------------------------------- mlflow server
def start_mlflow(data: Path, state: State, workers: int, timeout: float) -> subprocess.Popen:
    """Start ``mlflow server`` in its own session (logs in ``<data>/mlflow.log``) and wait for ``/health``."""
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--backend-store-uri", state.backend_uri,
           "--serve-artifacts", "--artifacts-destination", state.artifacts, "--host", state.host,
           "--port", str(state.port), "--workers", str(workers)]
    # MLflow 3's job runner (huey consumers for GenAI judges and trace roll-ups) is off unless asked for: formerflow
    # runs no server-side jobs, and its processes cost start-up time and memory.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, **password_env(data),
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    log = data / "mlflow.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data,
                                start_new_session=True)  # its workers die with it (stop kills the group)
    state.mlflow_pid = proc.pid
    write_state(data, state)
    deadline = time.monotonic() + timeout
    while not healthy(state.tracking_uri):
        if proc.poll() is not None:
            raise ServerError(f"mlflow server exited ({proc.returncode}) before {state.tracking_uri} answered; "
                              f"its log {log}:\n{redact(log.read_text(errors='replace')[-3000:])}")
        if time.monotonic() > deadline:
            stop_mlflow(state)
            raise ServerError(f"mlflow server did not answer on {state.tracking_uri} within {timeout:.0f} s; "
                              f"its log {log}:\n{redact(log.read_text(errors='replace')[-3000:])}")
        time.sleep(0.5)
    return proc


def stop_mlflow(state: State, timeout: float = 20) -> None:
    """Terminate the server's process group (the server and its uvicorn workers), killing it after ``timeout``."""
    pid = state.mlflow_pid
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- commands
def start(args: argparse.Namespace) -> State:
    """Start PostgreSQL (creating the cluster the first time) and the MLflow server; returns the state."""
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    old = read_state(data)
    if old is not None and alive(old.mlflow_pid) and healthy(old.tracking_uri):
        print(f"already running: MLFLOW_TRACKING_URI={old.tracking_uri}")
        return old
    user = pg_user(args.pg_user) if old is None else old.pg_user
    pgdata = Path(args.pgdata).resolve() if args.pgdata else Path(old.pgdata) if old else data / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    if user is not None and pgdata.stat().st_uid == 0:
        shutil.chown(pgdata, user)  # PostgreSQL writes its cluster and log here as that user
    check_reachable(pgdata, user)
    artifacts = args.artifacts or (old.artifacts if old else str(data / "artifacts"))
    if "://" not in artifacts:
        artifacts = str(Path(artifacts).resolve())
    state = State(pgdata=str(pgdata), pg_port=args.pg_port or (old.pg_port if old else free_port()), pg_user=user,
                  host=args.host, port=args.port or (old.port if old else 5000), artifacts=artifacts)
    write_state(data, state)
    init_cluster(data, state)
    start_postgres(data, state)
    try:
        start_mlflow(data, state, args.workers, args.timeout)
    except BaseException:
        stop_postgres(state)
        raise
    print(f"MLflow server on {state.tracking_uri} (PostgreSQL on 127.0.0.1:{state.pg_port}, "
          f"artifacts in {redact(state.artifacts)}); logs in {data}")
    print(f"export MLFLOW_TRACKING_URI={state.tracking_uri}")
    return state


def stop(args: argparse.Namespace) -> None:
    data = Path(args.data).resolve()
    state = read_state(data)
    if state is None:
        print(f"nothing to stop: no {data / STATE}")
        return
    stop_mlflow(state)
    stop_postgres(state)
    state.mlflow_pid = None
    write_state(data, state)
    print(f"stopped the MLflow server on {state.tracking_uri} and PostgreSQL on 127.0.0.1:{state.pg_port}")


def status(args: argparse.Namespace) -> int:
    """Print what runs; 0 when both servers answer, 1 otherwise."""
    data = Path(args.data).resolve()
    state = read_state(data)
    if state is None:
        print(f"not started: no {data / STATE}")
        return 1
    pg = pg_running(state)
    ml = alive(state.mlflow_pid) and healthy(state.tracking_uri)
    print(f"postgres 127.0.0.1:{state.pg_port} ({state.pgdata}): {'running' if pg else 'stopped'}")
    print(f"mlflow   {state.tracking_uri} (artifacts {redact(state.artifacts)}): {'running' if ml else 'stopped'}")
    return 0 if pg and ml else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/mlflow_server.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--data", default=".mlflow-server",
                        help="folder of the state, logs, password file (and cluster) (default .mlflow-server)")
    parser.add_argument("--port", type=int, help="the MLflow server's port (default 5000, or the last start's)")
    parser.add_argument("--host", default="127.0.0.1", help="interface the MLflow server binds (default 127.0.0.1)")
    parser.add_argument("--artifacts", help="where the server stores artifacts: a folder or s3://bucket/prefix "
                                            "(default <data>/artifacts)")
    parser.add_argument("--pgdata", help="folder of the PostgreSQL cluster (default <data>/postgres)")
    parser.add_argument("--pg-port", type=int, default=0, help="PostgreSQL's port (default: a free one, then kept)")
    parser.add_argument("--pg-user", help="when root: the system user that runs PostgreSQL (default postgres, "
                                          f"else {FALLBACK_USER}, created)")
    parser.add_argument("--workers", type=int, default=2, help="MLflow server worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the server (default 120)")
    parser.add_argument("--foreground", action="store_true", help="start, then wait; Ctrl-C or SIGTERM stops both")
    args = parser.parse_args(argv)
    try:
        if args.command == "stop":
            stop(args)
            return 0
        if args.command == "status":
            return status(args)
        state = start(args)
        if args.foreground:
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            try:
                while alive(state.mlflow_pid):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            finally:
                stop(args)
        return 0
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
