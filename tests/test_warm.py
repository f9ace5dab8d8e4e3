"""Warm job starts (continual_lora.warm): a job's script runs in a fork of the warm
server as it would in its own process, with its exit status, and dies with its job."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from continual_lora import warm

# A job script as the workflow's are: hand over first, then do the work.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from continual_lora.warm import hand_over
    hand_over()
    sys.stderr = sys.stdout = open("job.log", "w", buffering=1)
    import torch
    info = {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "job_variable": os.environ.get("JOB_VARIABLE"),
        "argv": sys.argv[1:],
        "torch_threads": torch.get_num_threads(),
        "torch_preloaded": "warm" if os.environ.get("CONTINUAL_LORA_WARM_FORK") else "cold",
    }
    # Some arithmetic a job does: seeded weights, a convolution, its gradient.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 3)
    out = conv(torch.randn(2, 4, 16, 16)).pow(2).sum()
    out.backward()
    info["numbers"] = [out.item(), conv.weight.grad.sum().item(), torch.rand(1).item()]
    # Written whole, then renamed: the test that waits for it must never read half of it.
    with open("info.json.part", "w") as handle:
        json.dump(info, handle)
    os.replace("info.json.part", "info.json")
    if "--sleep" in sys.argv:
        time.sleep(60)
    if "--fail" in sys.argv:
        raise RuntimeError("the job failed")
    sys.exit(3)
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A warm server whose parent is this test process: its socket and its log."""
    folder = tmp_path_factory.mktemp("warm")
    address = str(folder / "warm.sock")
    log = folder / "server.log"
    process = subprocess.Popen([sys.executable, "-m", "continual_lora.warm", address, str(os.getpid()), str(log)])
    deadline = time.time() + 120
    while not (log.exists() and "preloaded" in log.read_text()):
        assert process.poll() is None and time.time() < deadline, "the warm server did not come up"
        time.sleep(0.1)
    yield address, log
    process.kill()
    process.wait()


def run_job(workdir: Path, address: str | None, *args: str, wait: bool = True):
    workdir.mkdir(exist_ok=True)
    script = workdir / "job.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, JOB_VARIABLE="from the job", OMP_NUM_THREADS="2")
    env.pop(warm.ENV, None)
    if address is not None:
        env[warm.ENV] = address
    command = [sys.executable, str(script), *args]
    if not wait:
        return subprocess.Popen(command, cwd=workdir, env=env)
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)


def test_a_job_runs_in_a_fork_as_in_its_own_process(server, tmp_path):
    address, log = server
    warm_run = run_job(tmp_path / "warm", address, "--flag")
    cold_run = run_job(tmp_path / "cold", None, "--flag")
    warm_info = json.loads((tmp_path / "warm" / "info.json").read_text())
    cold_info = json.loads((tmp_path / "cold" / "info.json").read_text())

    assert warm_run.returncode == cold_run.returncode == 3
    assert warm_info["torch_preloaded"] == "warm" and cold_info["torch_preloaded"] == "cold"
    assert warm_info["cwd"] == str(tmp_path / "warm")
    for key in ("job_variable", "argv", "torch_threads", "numbers"):
        assert warm_info[key] == cold_info[key], key
    assert warm_info["torch_threads"] == 2
    assert "exit 3" in log.read_text()


def test_a_failing_job_fails_with_its_traceback_in_its_log(server, tmp_path):
    address, _ = server
    for name, where in (("warm", address), ("cold", None)):
        result = run_job(tmp_path / name, where, "--fail")
        assert result.returncode == 1, name
        assert "RuntimeError: the job failed" in (tmp_path / name / "job.log").read_text(), name


def test_killing_a_job_kills_its_fork(server, tmp_path):
    address, log = server
    job = run_job(tmp_path / "job", address, "--sleep", wait=False)
    info_file = tmp_path / "job" / "info.json"
    deadline = time.time() + 60
    while not info_file.exists():
        assert time.time() < deadline, "the job did not start"
        time.sleep(0.05)
    fork = json.loads(info_file.read_text())["pid"]
    assert fork != job.pid
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.time() + 5
    while f"job {fork}: exit" not in log.read_text():
        assert time.time() < deadline, "the fork outlived its job"
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(fork, 0)


def test_without_a_server_the_job_runs_itself(tmp_path):
    result = run_job(tmp_path / "job", str(tmp_path / "absent.sock"))
    assert result.returncode == 3
    assert json.loads((tmp_path / "job" / "info.json").read_text())["torch_preloaded"] == "cold"


SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
HEAVY = ("torch", "diffusers", "transformers", "peft", "pandas", "matplotlib")


def before_hand_over(script: Path) -> str | None:
    """The script's top-level code up to its ``hand_over()`` call; None without one."""
    tree = ast.parse(script.read_text())
    for index, node in enumerate(tree.body):
        call = node.value if isinstance(node, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "hand_over":
            return ast.unparse(ast.Module(body=tree.body[:index], type_ignores=[]))
    return None


def test_the_workflow_scripts_import_no_heavy_library_before_handing_over():
    """What a script imports before it hands over runs in every job's own process:
    a library imported there costs each job its import (seconds for torch), which
    the warm fork exists to save."""
    prefixes = {path.name: before_hand_over(path) for path in sorted(SCRIPTS.glob("*.py"))}
    prefixes = {name: code for name, code in prefixes.items() if code is not None}
    assert len(prefixes) >= 10, sorted(prefixes)
    for name, code in prefixes.items():
        probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert result.stdout.split() == [], f"{name} imports {result.stdout.split()} before hand_over()"
