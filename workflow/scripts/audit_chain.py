"""Check every task of one run against its method's formula; fail if one is off."""

import sys

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.audit import audit_run

n_tasks = len(snakemake.input) // 3
tasks = [
    (snakemake.input[f"handoff{t}"], snakemake.input[f"init_lora{t}"], snakemake.input[f"task_lora{t}"])
    for t in range(1, n_tasks + 1)
]
audit_run(snakemake.wildcards.method, tasks, snakemake.output[0], log=print)
