"""Warm job starts: the workflow's jobs run in forks of one process that has imported
torch, diffusers, peft and transformers once, instead of importing them again each.

Why: a job of the embedded default computes for a few seconds, and a fresh Python
spends 3.5 to 7 s importing those libraries (diffusers alone imports torch._dynamo
and peft). Snakemake starts every ``script:`` job as its own process, so the
default's 124 training, generation and scoring jobs spent some 8 minutes of CPU on
imports. Snakemake offers nothing for this (locally, its groups are one process per
job too).

How: where the workflow runs its jobs locally in its own Python (config key
``warm_starts``, ``workflow/rules/common.smk``), it starts ``serve`` before the
first job and names its socket in the environment. Each job's script calls
``hand_over`` first: its process sends the script's path, working directory,
environment and ``sys.argv``/``sys.path`` to the server, which forks; the fork runs
the script exactly as Python would (the Snakemake preamble included) and its exit
status becomes the job's. A job whose process is killed takes its fork with it. The
server shares Snakemake's process group, so what signals the group reaches the forks
as it reaches jobs, and it ends with the Snakemake process that started it. Without
a server (a cluster node, a conda environment, a test that runs a script itself)
``hand_over`` returns and the script runs in its own process as before.

A fork computes what a fresh process computes: the server only imports, so no
random number has been drawn, and each fork sets torch's threads from the job's
``OMP_NUM_THREADS``, as a fresh torch reads it (tests/test_warm.py compares seeded
arithmetic and draws in a fork and in a fresh process).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path

ENV = "CONTINUAL_LORA_WARM_SOCKET"
SOCKET_NAME = "warm.sock"
# Set in a fork while it runs a script, so that the script's own hand_over returns.
_INSIDE = "CONTINUAL_LORA_WARM_FORK"
# What a job imports that is worth importing once (each is optional: a module that
# is missing is simply imported later by the job that needs it).
PRELOAD = (
    "torch",
    "numpy",
    "PIL.Image",
    "safetensors.torch",
    "diffusers",
    "peft",
    "transformers",
    "snakemake.logging",
    "snakemake.iocontainers",
    "continual_lora.training",
    "continual_lora.generation",
    "continual_lora.evaluation",
    "continual_lora.export",
    "continual_lora.audit",
    "continual_lora.models.tiny",
    "continual_lora.scoring",
    "continual_lora.methods",
    "pandas",
    "matplotlib.pyplot",
)


def _send(sock: socket.socket, payload: dict) -> None:
    data = json.dumps(payload).encode()
    sock.sendall(struct.pack("!I", len(data)) + data)


def _receive(sock: socket.socket) -> dict | None:
    header = _read_exactly(sock, 4)
    if header is None:
        return None
    data = _read_exactly(sock, struct.unpack("!I", header)[0])
    return None if data is None else json.loads(data)


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks = b""
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return chunks


# --------------------------------------------------------------------------- the job's side


def hand_over() -> None:
    """Run this process's script in a fork of the warm server and exit with its status;
    return, doing nothing, where there is no server or this already is the fork.

    The script is the file Python was started with (``sys.argv[0]``): for a Snakemake
    job, its copy with the preamble that defines ``snakemake``, whose ``__file__`` names
    the workflow's script instead."""
    address = os.environ.get(ENV)
    if not address or os.environ.get(_INSIDE):
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except OSError:
        return  # the server is gone or not up yet: this process runs the job itself
    _send(
        sock,
        {
            "script": os.path.abspath(sys.argv[0]),
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "argv": sys.argv,
            "path": sys.path,
        },
    )
    reply = _receive(sock)
    if reply is None:
        sys.exit("the warm job server ended before the job did; rerun, or set warm_starts: false")
    sys.exit(reply["status"])


# --------------------------------------------------------------------------- the server's side


def _preload(log) -> None:
    import importlib

    started = time.perf_counter()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as error:
            log(f"not preloaded: {name} ({error})")
    if "matplotlib" in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    log(f"preloaded in {time.perf_counter() - started:.1f} s")


def _run_in_fork(request: dict) -> int:
    """In the fork: become the job's process and run its script; its exit status."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[_INSIDE] = "1"
    sys.argv = list(request["argv"])
    sys.path[:] = request["path"]
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    import runpy

    try:
        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def serve(address: str, parent: int, log_file: str | None = None) -> None:
    """Accept jobs on the UNIX socket ``address`` until process ``parent`` has ended
    and no job runs; each job in a fork of this process."""
    log_handle = open(log_file, "a", buffering=1) if log_file else sys.stderr

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=log_handle)

    # In Snakemake's process group, so that whatever signals the group (a Ctrl-C, a
    # kill of the group) reaches the forks as it reaches jobs; the server itself outlives
    # a Ctrl-C until Snakemake has cleaned up and ended.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Path(address).unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound before the imports: a job that starts meanwhile waits for them in the queue.
    listener.bind(address)
    listener.listen(64)
    _preload(log)
    running: dict[int, socket.socket] = {}  # fork pid -> its job's connection
    try:
        while _alive(parent) or running:
            readable, _, _ = select.select([listener, *running.values()], [], [], 0.2)
            for sock in readable:
                if sock is listener:
                    if _alive(parent):
                        _accept(listener, running, log)
                    continue
                if not sock.recv(1, socket.MSG_PEEK):
                    # The job's process ended (Snakemake killed it): so does its fork.
                    pid = next(p for p, s in running.items() if s is sock)
                    os.kill(pid, signal.SIGKILL)
            _reap(running, log)
    finally:
        listener.close()
        Path(address).unlink(missing_ok=True)
        if Path(address).name == SOCKET_NAME:
            try:
                Path(address).parent.rmdir()
            except OSError:
                pass
        log("stopped")


def _alive(parent: int) -> bool:
    """Whether the process that started this server still runs: when it ends, this
    process is handed to another parent (a PID alone could be reused)."""
    return os.getppid() == parent


def _accept(listener: socket.socket, running: dict, log) -> None:
    conn, _ = listener.accept()
    request = _receive(conn)
    if request is None:
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        listener.close()
        for other in running.values():
            other.close()
        status = 1
        try:
            status = _run_in_fork(request)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    running[pid] = conn
    log(f"job {pid}: {Path(request['script']).name}")


def _reap(running: dict, log) -> None:
    for pid in list(running):
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if not done:
            continue
        conn = running.pop(pid)
        status = os.waitstatus_to_exitcode(wait_status)
        log(f"job {pid}: exit {status}")
        try:
            _send(conn, {"status": status if status >= 0 else 1})
        except OSError:
            pass  # the job's process is gone already
        conn.close()


def start(log_file: str) -> None:
    """Start a server for this process's jobs, in its process group, logging to
    ``log_file``, and name its socket in the environment the jobs inherit."""
    import subprocess
    import tempfile

    # A short private folder: a UNIX socket's path may not exceed about 100 characters.
    address = os.path.join(tempfile.mkdtemp(prefix="continual-lora-"), SOCKET_NAME)
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    # The package this module is in, wherever Snakemake found it.
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    # What a fork prints before its script has opened the job's log lands in the server's.
    with open(log_file, "a") as log:
        subprocess.Popen(
            [sys.executable, "-m", "continual_lora.warm", address, str(os.getpid()), os.path.abspath(log_file)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    os.environ[ENV] = address
    # Until the socket is bound, a job connecting would run cold; wait a little for it.
    for _ in range(50):
        if Path(address).exists():
            break
        time.sleep(0.02)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
