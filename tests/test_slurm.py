"""profiles/slurm on a real SLURM cluster: a single node on this machine (see
slurm_cluster.py) runs part of the micro config through the profile; every job goes
through sbatch, the GPU rules get the node's (fake) GPU, and the results equal a local
run's.

The cluster needs Linux and root, and installs Debian's SLURM packages with apt-get
when they are missing; elsewhere the tests skip. ``pytest -m "not slurm"`` deselects
them.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from snakemake_harness import REPO, dry_run_jobs, finish_snakemake, run_snakemake, start_snakemake

pytestmark = pytest.mark.slurm

MICRO = Path(__file__).parent / "configs" / "micro.yaml"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
# A hung poll or a job that never starts must fail the test, not hang CI.
RUN_TIMEOUT = 900
# One experiment and one method of the micro config: every rule still runs, and the
# task chain (task 2 trained from task 1's handoff) is there. A job through SLURM
# costs two Snakemake start-ups besides its own work (the plugin's job step, then
# srun), 12-18 s in all on this project's 2-core machine, and the GPU rules queue for
# the one GPU, so the whole micro config (74 jobs) took over 15 minutes there; this
# is 17 jobs.
EXPERIMENT, METHOD = "micro_objects", "ortho_init"


@pytest.fixture(scope="module")
def configfile(tmp_path_factory) -> Path:
    config = yaml.safe_load(MICRO.read_text())
    config["experiments"] = {EXPERIMENT: config["experiments"][EXPERIMENT]}
    config["methods"] = [METHOD]
    # The paper's protocol alone: the micro run covers retention and composition.
    config["retention"], config["composition"] = {"enabled": False}, {"enabled": False}
    path = tmp_path_factory.mktemp("config") / "micro_slurm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def planned_jobs(configfile: Path, workdir: Path) -> list[dict]:
    """Every job of a run, from a dry run: rule, the comment the plugin gives its
    SLURM job (rule and wildcard values), whether the submitting Snakemake does it
    itself, and whether it asks for a GPU."""
    output = run_snakemake(workdir, configfile, "--dry-run", cores=1, gpu=None, timeout=RUN_TIMEOUT)
    jobs = []
    for job in dry_run_jobs(output):
        wildcards = list(job.wildcards.values())
        jobs.append(
            {
                "rule": job.rule,
                "wildcards": tuple(wildcards),
                "comment": f"rule_{job.rule}" + (f"_wildcards_{'_'.join(wildcards)}" if wildcards else ""),
                # A job without outputs (the target rule `all`) has nothing to run.
                "local": job.local or "output" not in job.fields,
                "gpu": job.resources.get("gpu") == "1",
            }
        )
    return jobs


@pytest.fixture(scope="module")
def planned(configfile, tmp_path_factory) -> list[dict]:
    return planned_jobs(configfile, tmp_path_factory.mktemp("dry_run"))


def profile_groups() -> dict[str, str]:
    """rule -> the group the profile puts it in."""
    return dict(item.split("=", 1) for item in yaml.safe_load(PROFILE.read_text())["groups"])


def expected_submissions(planned: list[dict]) -> Counter:
    """The SLURM jobs the profile should make of the planned jobs, by comment: one per
    job of a rule outside the groups, named by rule and wildcards, and one per group
    instance (a checkpoint's sampling and its scoring), which the plugin names
    ``rule_{group}_{its rules, sorted}``."""
    groups = profile_groups()
    remote = [job for job in planned if not job["local"]]
    expected = Counter(job["comment"] for job in remote if job["rule"] not in groups)
    instances: dict[tuple, set[str]] = {}
    for job in remote:
        if job["rule"] in groups:
            instances.setdefault((groups[job["rule"]], job["wildcards"]), set()).add(job["rule"])
    expected.update(f"rule_{group}_{'_'.join(sorted(rules))}" for (group, _), rules in instances.items())
    return expected


def first_attempt(request) -> int:
    """A profile resource (a number, or an expression of ``attempt``) on the first attempt."""
    return int(eval(str(request), {"attempt": 1}))


def largest_request(name: str) -> int:
    """The largest first-attempt value of a resource in the profile."""
    profile = yaml.safe_load(PROFILE.read_text())
    blocks = [profile["default-resources"], *profile["set-resources"].values()]
    return max(first_attempt(block[name]) for block in blocks if name in block)


@pytest.fixture(scope="module")
def cluster_possible():
    reason = slurm_cluster.unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(cluster_possible, tmp_path_factory):
    slurm_cluster.install_packages()
    # Two (fake) GPUs, and room for two GPU jobs of the profile's size beside as many
    # one-CPU jobs as the machine has cores: a job here is mostly two Snakemake
    # start-ups and the plugin's polls, so the second GPU lets the task chain and the
    # base model's evaluation wait side by side rather than one after the other.
    gpus = 2
    cpus = (os.cpu_count() or 1) + gpus * largest_request("cpus_per_task")
    memory_mb = max(slurm_cluster.machine_memory_mb(), gpus * largest_request("mem_mb"))
    root = tmp_path_factory.mktemp("slurm")
    with slurm_cluster.LocalCluster(root, cpus=cpus, memory_mb=memory_mb, gpus=gpus) as running:
        yield running


def profile_for_the_test_cluster(path: Path) -> Path:
    """The repository's profile with what a user sets for a cluster (its partition; no
    account, as a cluster without slurmdbd has none) and two test-only changes: the
    plugin keeps every job's log, and polls 5 s after a finish, not 60. (It adds 10 s
    to the pause per poll that finds nothing finished, so polls come 5, 20, 45 s
    after a finish: the second one just after a job of this test, 8-18 s, ends.)"""
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"]["slurm_partition"] = slurm_cluster.PARTITION
    del profile["default-resources"]["slurm_account"]
    profile["slurm-init-seconds-before-status-checks"] = 5
    profile["slurm-keep-successful-logs"] = True
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def local_process(cluster_possible, configfile, tmp_path_factory):
    """The local reference run, started first and left to run beside the cluster's
    set-up and the SLURM run, which spend most of their time waiting."""
    workdir = tmp_path_factory.mktemp("micro_local")
    log = workdir.parent / f"{workdir.name}.log"
    process = start_snakemake(workdir, configfile, log=log)
    yield workdir, process, log
    if process.poll() is None:
        process.terminate()
        process.wait()


@pytest.fixture(scope="module")
def slurm_run(local_process, cluster, configfile, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("micro_slurm")
    profile = profile_for_the_test_cluster(tmp_path_factory.mktemp("profile") / "slurm")
    start = time.monotonic()
    try:
        output = run_snakemake(
            workdir, configfile, "--profile", str(profile), "--workflow-profile", "none",
            cores=None, gpu=None, timeout=RUN_TIMEOUT,
        )  # fmt: skip
    except (AssertionError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"{error}\n{cluster.logs()}")
    print(f"\nmicro run through profiles/slurm: {time.monotonic() - start:.0f} s")
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    return {"workdir": workdir, "jobs": [job for job in cluster.jobs() if job["name"] == run_id]}


@pytest.fixture(scope="module")
def local_run(local_process):
    workdir, process, log = local_process
    finish_snakemake(process, log, timeout=RUN_TIMEOUT)
    return workdir


def test_every_job_went_through_sbatch_once_and_completed(slurm_run, planned, tmp_path):
    remote = [job for job in planned if not job["local"]]
    assert {job["rule"] for job in planned if job["local"]} == {"all"}
    # The cut-down config still runs every rule that the whole micro config runs, but
    # retention's and composition's, which it turns off (configfile above).
    micro_rules = {job["rule"] for job in planned_jobs(MICRO, tmp_path) if not job["local"]}
    micro_rules = {rule for rule in micro_rules if "retention" not in rule and "composition" not in rule}
    assert {job["rule"] for job in remote} == micro_rules

    jobs = slurm_run["jobs"]
    # One SLURM job per Snakemake job outside the groups and one per checkpoint's
    # sampling-and-scoring pair, named in the comment the plugin writes; none failed,
    # none was resubmitted.
    expected = expected_submissions(planned)
    assert Counter(job["comment"] for job in jobs) == expected
    pairs = sum(n for comment, n in expected.items() if comment.endswith("_generate_samples_score_samples"))
    assert pairs == sum(job["rule"] == "score_samples" for job in remote) == 2
    assert {job["state"] for job in jobs} == {"COMPLETED"}
    # The plugin's own record: one sbatch log per SLURM job id.
    logs = (slurm_run["workdir"] / ".snakemake" / "slurm_logs").rglob("*.log")
    assert sorted(log.stem for log in logs) == sorted(job["id"] for job in jobs)


def test_the_gpu_rules_and_only_they_were_given_the_gpu(slurm_run, planned):
    remote = [job for job in planned if not job["local"]]
    gpu_rules = {job["rule"] for job in remote if job["gpu"]}
    assert {"pretrain_tiny_model", "train_task", "generate_samples", "score_samples"} <= gpu_rules
    # So a group asks for one GPU (the groups of retention and composition, off here,
    # are checked on the micro config's graph in test_beyond_paper.py).
    assert {rule for rule in profile_groups() if rule in {job["rule"] for job in remote}} <= gpu_rules
    assert {"generate_samples", "score_samples"} <= set(profile_groups())
    wants_gpu = {job["comment"]: job["gpu"] for job in remote}
    for job in slurm_run["jobs"]:
        grouped = job["comment"].startswith("rule_evaluate_")
        assert (job["tres"] == "gres:gpu:1") == (grouped or wants_gpu[job["comment"]]), job


def test_a_group_asks_for_the_sum_of_its_jobs_times(slurm_run):
    profile = yaml.safe_load(PROFILE.read_text())["set-resources"]
    minutes = {rule: first_attempt(profile[rule]["runtime"]) for rule in profile_groups()}
    sums = {
        "rule_evaluate_generate_samples_score_samples": minutes["generate_samples"] + minutes["score_samples"],
        "rule_evaluate_generate_base_samples_score_base_samples": minutes["generate_base_samples"]
        + minutes["score_base_samples"],
    }
    grouped = [job for job in slurm_run["jobs"] if job["comment"] in sums]
    assert len(grouped) == 3
    for job in grouped:
        hours, rest = divmod(sums[job["comment"]], 60)
        assert job["time"] == f"{hours:02d}:{rest:02d}:00", job


def test_the_slurm_run_gives_what_a_local_run_gives(slurm_run, local_run):
    import pandas as pd

    from continual_lora.checkpoint import load_tensors

    slurm_results, local_results = slurm_run["workdir"] / "results", local_run / "results"

    def tables(results: Path) -> list[Path]:
        return sorted(p.relative_to(results) for p in results.rglob("*.csv") if "benchmarks" not in p.parts)

    # scores.csv of the base model and of each task; summary, per-run and matrix tables
    assert tables(slurm_results) == tables(local_results)
    assert sum(p.name == "scores.csv" for p in tables(local_results)) == 3
    assert Path(EXPERIMENT, "tables", "summary.csv") in tables(local_results)
    for table in tables(local_results):
        slurm_table = pd.read_csv(slurm_results / table, keep_default_na=False)
        local_table = pd.read_csv(local_results / table, keep_default_na=False)
        pd.testing.assert_frame_equal(slurm_table, local_table, check_exact=True, obj=str(table))

    handoffs = sorted(p.relative_to(local_results) for p in local_results.rglob("handoff.safetensors"))
    assert len(handoffs) == 2
    for handoff in handoffs:
        slurm_tensors = load_tensors(slurm_results / handoff).tensors
        local_tensors = load_tensors(local_results / handoff).tensors
        assert slurm_tensors.keys() == local_tensors.keys()
        for key, tensor in local_tensors.items():
            assert (slurm_tensors[key] == tensor).all(), f"{handoff}: {key}"
