"""Sign conflicts and norm ratios between the task updates of one run, per method."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_directory
from continual_lora.reporting import sign_conflict_figures

# Each input file is the task adapter of the [method, task] the params label it with.
by_task = {}
for (method, task), path in zip(snakemake.params.labels["task_loras"], snakemake.input.task_loras, strict=True):
    by_task.setdefault(method, {})[task] = path
task_loras = {method: [paths[task] for task in sorted(paths)] for method, paths in by_task.items()}
with atomic_directory(snakemake.output[0]) as out_dir:
    written = sign_conflict_figures(task_loras, out_dir)
print("\n".join(path.name for path in written))
