"""A throwaway single-node SLURM cluster on localhost, for tests.

munged, slurmctld and slurmd come from Debian's packages and run in the foreground as
children of the test process, so that they can be stopped by their PIDs; everything
they write lives in one temporary folder. The one file outside it is the symlink
/etc/slurm/slurm.conf: the executor plugin drops every SLURM_* variable before its
inner ``srun``, so a SLURM_CONF pointing elsewhere would not reach the job steps.

The node's fake GPUs are character devices that every Linux has (``/dev/null``,
``/dev/zero``, ...): SLURM accounts for each like a real GPU, so a job that asks for
``--gpus=1`` waits for one and is given it, while the code in the job runs on the CPU.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
DAEMONS = {"munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd"}
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scancel", "scontrol")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "debug"
# One device file per fake GPU (gres.conf binds each GPU to a file of its own).
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full")


def _installed() -> bool:
    return all(Path(path).exists() for path in DAEMONS.values()) and all(shutil.which(c) for c in CLIENTS)


def unavailable_reason() -> str | None:
    """Why this machine cannot host the cluster, or None when it can (maybe after an
    apt-get install, which only a root user with apt gets)."""
    if not sys.platform.startswith("linux"):
        return f"a local SLURM cluster needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd and writing /etc/slurm/slurm.conf needs root"
    if not _installed() and not shutil.which("apt-get"):
        return f"SLURM is not installed and there is no apt-get to install {' '.join(PACKAGES)}"
    if SLURM_CONF.exists() and not SLURM_CONF.is_symlink():
        return f"{SLURM_CONF} belongs to a real SLURM installation; not touching it"
    return None


def install_packages() -> None:
    """apt-get install the Debian packages when they are missing.

    A policy-rc.d that refuses every start is put in place for the install (when the
    system has none), so that the packages' own services (munge, slurmd) do not start
    system-wide: those would not be this test's to stop."""
    if _installed():
        return
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:  # most often stale package lists on a fresh image
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
            result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    finally:
        if own_policy:
            policy.unlink()


def machine_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """The cluster, started by ``start()`` and stopped by ``stop()`` (or as a context
    manager). ``cpus`` and ``memory_mb`` are what the node declares: SLURM rejects a
    job that asks for more than any node has, so the test sizes the node to the
    profile's largest request; ``config_overrides`` keeps slurmd from draining a node
    that declares more than the machine has, and memory is not a consumable here, so
    the declaration admits jobs without promising anything."""

    def __init__(self, root: Path, *, cpus: int, memory_mb: int, gpus: int = 1):
        self.root = Path(root)
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus
        self.node = socket.gethostname().split(".")[0]
        self.processes: dict[str, subprocess.Popen] = {}
        self._made_etc_slurm = False

    # -- set-up -------------------------------------------------------------------
    def _write_config(self) -> Path:
        root = self.root
        for sub in ("munge", "state", "spool", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "munge").chmod(0o700)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        conf = root / "slurm.conf"
        conf.write_text(
            "\n".join(
                [
                    "ClusterName=pytest",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
                    f"StateSaveLocation={root / 'state'}",
                    f"SlurmdSpoolDir={root / 'spool'}",
                    f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                    "SlurmctldDebug=info",
                    "SlurmdDebug=info",
                    # No cgroups in a container: plain process tracking, no binding.
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    # No slurmdbd: the profile's squeue polling is what is tested.
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    # --gpus needs cons_tres; cores, not memory, are the consumable.
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    # While the GPU job at the head of the queue waits for the GPU,
                    # only the backfill pass starts the one-CPU jobs behind it: every
                    # second, not every 30.
                    "SchedulerParameters=bf_interval=1",
                    "GresTypes=gpu",
                    "SlurmdParameters=config_overrides",
                    "ReturnToService=2",
                    # Finished jobs stay in squeue for an hour: the plugin's squeue
                    # polling sees their final state, and the test counts them.
                    "MinJobAge=3600",
                    "KillWait=5",
                    "InactiveLimit=0",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory={self.memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        if self.gpus > len(FAKE_GPU_FILES):
            raise ValueError(f"at most {len(FAKE_GPU_FILES)} fake GPUs, one per device file in FAKE_GPU_FILES")
        lines = [f"NodeName={self.node} Name=gpu File={file}" for file in FAKE_GPU_FILES[: self.gpus]]
        (root / "gres.conf").write_text("\n".join(["AutoDetect=off", *lines, ""]))
        return conf

    def _link_config(self, conf: Path) -> None:
        if not SLURM_CONF.parent.exists():
            SLURM_CONF.parent.mkdir(parents=True)
            self._made_etc_slurm = True
        if SLURM_CONF.is_symlink():  # left behind by an earlier, killed test run
            SLURM_CONF.unlink()
        SLURM_CONF.symlink_to(conf)

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.processes[name] = subprocess.Popen(
            [DAEMONS[name], *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

    def start(self, timeout: float = 60) -> LocalCluster:
        conf = self._write_config()
        self._link_config(conf)
        munge = self.root / "munge"
        try:
            # --force: munged distrusts the world-writable /tmp above its folder.
            self._spawn(
                "munged", "--foreground", "--force", f"--key-file={munge / 'munge.key'}",
                f"--socket={munge / 'munge.socket'}", f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}",
            )  # fmt: skip
            self._wait(lambda: (munge / "munge.socket").exists(), timeout, "munged's socket")
            # -i: ignore any saved state, this cluster is new every time.
            self._spawn("slurmctld", "-D", "-i", "-f", str(conf))
            self._wait(lambda: self._run("scontrol", "ping").returncode == 0, timeout, "slurmctld to answer")
            self._spawn("slurmd", "-D", "-f", str(conf), "-N", self.node)
            self._wait(self._node_idle, timeout, f"node {self.node} to be idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _node_idle(self) -> bool:
        result = self._run("sinfo", "--noheader", "--Node", "--format=%T")
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [name for name, p in self.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"timed out after {timeout:.0f} s"
                raise RuntimeError(f"waiting for {what}: {why}\n{self.logs()}")
            time.sleep(0.5)

    @staticmethod
    def _run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    # -- use ------------------------------------------------------------------------
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge): its id, name,
        comment (where the plugin writes rule and wildcards), state, TRES per job
        (where --gpus shows) and time limit (HH:MM:SS)."""
        result = self._run("scontrol", "--oneliner", "show", "job")
        result.check_returncode()
        keys = {
            "id": "JobId", "name": "JobName", "comment": "Comment", "state": "JobState",
            "tres": "TresPerJob", "time": "TimeLimit",
        }  # fmt: skip
        jobs = []
        for line in result.stdout.splitlines():
            if line.startswith("JobId="):
                values = {key: re.search(rf"(?:^| ){field}=(\S*)", line) for key, field in keys.items()}
                jobs.append({key: match.group(1) if match else "" for key, match in values.items()})
        return jobs

    def logs(self, lines: int = 30) -> str:
        texts = []
        for path in sorted((self.root / "log").glob("*")) + sorted((self.root / "munge").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            texts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(texts)

    # -- tear-down ------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel what still runs, then stop the daemons by PID, newest first."""
        # Running jobs' slurmstepd processes are not slurmd's children: scancel them.
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            try:
                active = [job["id"] for job in self.jobs() if job["state"] in ("PENDING", "RUNNING", "CONFIGURING")]
                if active:
                    self._run("scancel", *active)
                    time.sleep(2)
            except (subprocess.SubprocessError, OSError):
                pass  # the daemons must go down regardless
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        if SLURM_CONF.is_symlink() and SLURM_CONF.resolve() == (self.root / "slurm.conf").resolve():
            SLURM_CONF.unlink()
        if self._made_etc_slurm and not any(SLURM_CONF.parent.iterdir()):
            SLURM_CONF.parent.rmdir()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
