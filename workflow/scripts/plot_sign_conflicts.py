"""Sign conflicts and norm ratios between the task updates of one run, per method."""

import sys

from continual_lora.checkpoint import atomic_directory
from continual_lora.reporting import sign_conflict_figures

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

task_loras = {
    method: [snakemake.input[f"{method}_task{t}"] for t in range(1, snakemake.params.n_tasks + 1)]
    for method in snakemake.params.methods
}
with atomic_directory(snakemake.output[0]) as out_dir:
    written = sign_conflict_figures(task_loras, out_dir)
print("\n".join(path.name for path in written))
