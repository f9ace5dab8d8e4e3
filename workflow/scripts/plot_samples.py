"""Sample grids, per template: after the last task, and right after each task (tasks x methods)."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_directory
from continual_lora.reporting import right_after_figures, sample_grid_figures

grid = snakemake.params.grid
final_samples = dict(zip(grid["methods"], snakemake.input.samples, strict=True))
n_tasks = grid["n_tasks"]
right_after = {
    method: snakemake.input.right_after[i * n_tasks : (i + 1) * n_tasks] for i, method in enumerate(grid["methods"])
}
concept_dirs = dict(zip(grid["concepts"], snakemake.input.concepts, strict=True))
with atomic_directory(snakemake.output[0]) as out_dir:
    written = sample_grid_figures(final_samples, snakemake.input.base, grid["templates"], out_dir)
    written += right_after_figures(right_after, snakemake.input.base, concept_dirs, grid["templates"], out_dir)
print("\n".join(path.name for path in written))
