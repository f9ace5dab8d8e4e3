"""An experiment's retention across tasks: the table of its curves, their figures, and
the grid of the general prompts as each method's final model draws them."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_directory, atomic_output
from continual_lora.reporting import retention_figures, retention_grid_figures
from continual_lora.retention import read_retention, retention_curves

curves = retention_curves(read_retention(list(snakemake.input.scores)))
with atomic_output(snakemake.output.table) as tmp:
    curves.to_csv(tmp, index=False)
with atomic_directory(snakemake.output.figures) as out_dir:
    written = retention_figures(curves, snakemake.params.methods, out_dir)
    final_samples = dict(zip(snakemake.params.methods, snakemake.input.samples, strict=True))
    written += retention_grid_figures(final_samples, snakemake.input.base, out_dir)
print(curves.to_string())
print("\n".join(path.name for path in written))
