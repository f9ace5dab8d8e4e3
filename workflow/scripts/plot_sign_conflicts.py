"""Sign conflicts and norm ratios between the task updates of one run, per method."""

import sys

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_directory
from continual_lora.reporting import sign_conflict_figures

# The input's task adapters in (method, task) order, as the params label them.
task_loras = {}
for (method, _), path in zip(snakemake.params.labels["task_loras"], snakemake.input.task_loras, strict=True):
    task_loras.setdefault(method, []).append(path)
with atomic_directory(snakemake.output[0]) as out_dir:
    written = sign_conflict_figures(task_loras, out_dir)
print("\n".join(path.name for path in written))
