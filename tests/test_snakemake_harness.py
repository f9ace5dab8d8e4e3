"""snakemake_harness.py reads what Snakemake prints as Snakemake 9.27 prints it: the
"Job stats:" table and the job blocks of a dry run (on sample text, no Snakemake run)."""

from __future__ import annotations

import pytest
from snakemake_harness import dry_run_jobs, job_counts

STATS = """Building DAG of jobs...
Job stats:
job                            count
---------------------------  -------
prepare_concept                    2
a_rule_with_a_long_name_2          1
total                              3

[Wed Dec  2 08:21:47 2026]
rule prepare_concept:
    output: results/nano/data/striped_house
    jobid: 5
    reason: Missing output files: results/nano/data/striped_house
    wildcards: experiment=nano, concept=striped_house
    resources: tmpdir=/tmp
[Wed Dec  2 08:21:47 2026]
localrule prepare_concept:
    input: results/a, results/b
    output: results/nano/data/checkered_flower
    jobid: 7
    wildcards: experiment=nano, concept=checkered_flower
    resources: tmpdir=/tmp, gpu=1
[Wed Dec  2 08:21:47 2026]
rule a_rule_with_a_long_name_2:
    input: results/nano/data/striped_house
    jobid: 0
Job stats:
job                            count
---------------------------  -------
prepare_concept                    2
a_rule_with_a_long_name_2          1
total                              3

This was a dry-run (flag -n). The order of jobs does not reflect the order of execution.
"""


def test_job_counts_reads_the_table_once_and_checks_its_total():
    assert job_counts(STATS) == {"prepare_concept": 2, "a_rule_with_a_long_name_2": 1}
    assert job_counts("Building DAG of jobs...\nNothing to be done (all requested files are present and up to date).\n") == {}
    for broken in (STATS.replace("total                              3", "total                              4"),
                   STATS.replace("prepare_concept                    2", "prepare concept                    2"),
                   "Building DAG of jobs...\nWorkflowError: something else\n"):  # fmt: skip
        with pytest.raises(ValueError):
            job_counts(broken)


def test_dry_run_jobs_reads_every_job_block_and_checks_them_against_the_table():
    jobs = dry_run_jobs(STATS)
    assert [(job.rule, job.local) for job in jobs] == [
        ("prepare_concept", False), ("prepare_concept", True), ("a_rule_with_a_long_name_2", False)
    ]  # fmt: skip
    assert jobs[1].wildcards == {"experiment": "nano", "concept": "checkered_flower"}
    assert jobs[1].resources == {"tmpdir": "/tmp", "gpu": "1"} and jobs[0].resources == {"tmpdir": "/tmp"}
    assert jobs[1].paths("input") == ["results/a", "results/b"] and jobs[0].paths("input") == []
    assert jobs[0].fields["reason"] == "Missing output files: results/nano/data/striped_house"
    with pytest.raises(ValueError, match="lists the jobs"):
        dry_run_jobs(STATS.replace("localrule prepare_concept:", "localrule other:"))
