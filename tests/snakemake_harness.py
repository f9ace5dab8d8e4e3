"""The one way the tests and benchmarks/cpu_suite.py run the repository's Snakefile,
and read what Snakemake prints: the "Job stats:" table and the job blocks of a dry run.

    output = run_snakemake(workdir, configfile, "--dry-run")
    job_counts(output)["train_task"]
    [job.wildcards for job in dry_run_jobs(output) if job.rule == "train_task"]

The benchmarks import it with tests/ on sys.path, as they do dataset_fixtures.py.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
# The tests' jobs run on the CPU, where the README's one-GPU limit (--resources gpu=1)
# would only make the model jobs wait for each other: two at a time, one per core of
# this project's 2-core machine, as --cores 2 allows (a third of a micro run's time
# saved). test_gpus.py and the tests that pass gpu= themselves check the limit.
GPU_SLOTS = 2
# Characters of output a failure message ends with.
TAIL = 6000


class SnakemakeFailed(AssertionError):
    """Snakemake exited other than expected (raised, not asserted: `python -O` keeps it)."""


def snakemake_command(
    workdir: Path, configfile: Path | None, *args: str, cores: int | None = 2, gpu: int | None = GPU_SLOTS
) -> list[str]:
    """``python -m snakemake`` on the repository's Snakefile in ``workdir``.

    ``args`` (targets, flags) come before the fixed options: ``--resources`` takes
    every word after it, so it stays last. ``configfile=None`` leaves the Snakefile's
    embedded default (config.yaml in ``workdir``); ``cores`` or ``gpu`` None leaves
    that option out (a profile sets them, or the command needs none)."""
    command = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(SNAKEFILE), "--directory", str(workdir)]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    if cores is not None:
        command += ["--cores", str(cores)]
    if gpu is not None:
        command += ["--resources", f"gpu={gpu}"]
    return command


def check_exit(returncode: int, output: str, command: list[str], ok: bool = True) -> str:
    """``output`` if Snakemake exited as expected (0 when ``ok``, else not 0); otherwise
    SnakemakeFailed naming the command, with the tail of the output."""
    if (returncode == 0) != ok:
        expected = "0" if ok else "an error"
        raise SnakemakeFailed(
            f"snakemake exited {returncode}, expected {expected}: {shlex.join(map(str, command))}\n"
            f"--- last {TAIL} characters of its output ---\n{output[-TAIL:]}"
        )
    return output


def run_snakemake(
    workdir: Path,
    configfile: Path | None,
    *args: str,
    ok: bool = True,
    cores: int | None = 2,
    gpu: int | None = GPU_SLOTS,
    timeout: float | None = None,
) -> str:
    """Run Snakemake (see snakemake_command) and return its output, stdout and stderr in
    the order printed; SnakemakeFailed if it exits 0 where ``ok`` is False or otherwise."""
    command = snakemake_command(workdir, configfile, *args, cores=cores, gpu=gpu)
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return check_exit(result.returncode, result.stdout, command, ok)


def start_snakemake(
    workdir: Path,
    configfile: Path | None,
    *args: str,
    log: Path,
    cores: int | None = 2,
    gpu: int | None = GPU_SLOTS,
    **popen,
) -> subprocess.Popen:
    """Start Snakemake in the background, its output (stdout and stderr) into ``log``;
    ``popen`` goes to subprocess.Popen. Check the end with finish_snakemake."""
    command = snakemake_command(workdir, configfile, *args, cores=cores, gpu=gpu)
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **popen)


def finish_snakemake(process: subprocess.Popen, log: Path, ok: bool = True, timeout: float | None = None) -> str:
    """Wait for a start_snakemake process; its output, checked as run_snakemake checks."""
    returncode = process.wait(timeout=timeout)
    return check_exit(returncode, Path(log).read_text(errors="replace"), process.args, ok)


# --------------------------------------------------------------------------- what a dry run prints


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule, from the first "Job stats:" table of Snakemake's output (a dry run
    prints it twice); {} when Snakemake says "Nothing to be done".

    Snakemake 9.27's table, ended by a blank line:

        job                      count
        ---------------------  -------
        prepare_concept              2
        total                       18

    Every row is read, whatever the rule's name; the last, ``total``, is checked against
    the sum of the others and left out. Output with neither the table nor "Nothing to be
    done", or a table that reads otherwise, is a ValueError: a change of layout fails
    here rather than leaving a count out."""
    if "Job stats:" not in output:
        if "Nothing to be done" in output:
            return {}
        raise ValueError(f"no 'Job stats:' table and not 'Nothing to be done' in:\n{output[-TAIL:]}")
    lines = output.split("Job stats:", 1)[1].splitlines()[1:]
    end = lines.index("") if "" in lines else len(lines)
    header, rule, *rows = lines[:end]
    if header.split() != ["job", "count"] or set(rule) != {"-", " "}:
        raise ValueError(f"a 'Job stats:' table with an unexpected header: {header!r}, {rule!r}")
    counts = {}
    for row in rows:
        match = re.fullmatch(r"(\S+)\s+(\d+)", row)
        if match is None or match[1] in counts:
            raise ValueError(f"a 'Job stats:' row that is not one rule and its count: {row!r}")
        counts[match[1]] = int(match[2])
    if not counts or list(counts)[-1] != "total":
        raise ValueError(f"a 'Job stats:' table without its total row: {rows!r}")
    total = counts.pop("total")
    if total != sum(counts.values()):
        raise ValueError(f"a 'Job stats:' table whose rows add up to {sum(counts.values())}, not its total {total}")
    return counts


@dataclass(frozen=True)
class Job:
    """One job as Snakemake prints it: ``rule name:`` (``localrule``, ``checkpoint``)
    and its indented ``field: value`` lines (input, output, wildcards, resources...)."""

    rule: str
    local: bool
    fields: dict[str, str]

    def paths(self, field: str) -> list[str]:
        """A list field (input, output) as its paths; [] when the job has none."""
        return self.fields[field].split(", ") if field in self.fields else []

    def settings(self, field: str) -> dict[str, str]:
        """A ``name=value, ...`` field (wildcards, resources), in the printed order."""
        return dict(item.split("=", 1) for item in self.paths(field) if "=" in item)

    @property
    def wildcards(self) -> dict[str, str]:
        return self.settings("wildcards")

    @property
    def resources(self) -> dict[str, str]:
        return self.settings("resources")


JOB_BLOCK = re.compile(r"^(local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n?)+)", re.M)


def dry_run_jobs(output: str) -> list[Job]:
    """Every job a dry run lists, in its order. Where the output has a "Job stats:"
    table, the jobs found are checked against it, rule by rule."""
    jobs = []
    for match in JOB_BLOCK.finditer(output):
        lines = match[3].splitlines()
        fields = dict(line.strip().split(": ", 1) for line in lines if ": " in line)
        jobs.append(Job(rule=match[2], local=bool(match[1]), fields=fields))
    if "Job stats:" in output:
        found, listed = Counter(job.rule for job in jobs), job_counts(output)
        if found != Counter(listed):
            raise ValueError(f"the dry run lists the jobs {dict(found)}, but its 'Job stats:' table {listed}")
    return jobs
