"""Check every task of one run against its method's formula; fail if one is off."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.audit import audit_run

# Each input is one file per task, in task order.
tasks = list(zip(snakemake.input.handoffs, snakemake.input.init_loras, snakemake.input.task_loras, strict=True))
audit_run(snakemake.wildcards.method, tasks, snakemake.output[0], snakemake.params.method_settings, log=print)
