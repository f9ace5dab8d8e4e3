"""Sample grids after the last task: tasks x methods, per template."""

import sys

from continual_lora.reporting import sample_grid_figures

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

final_samples = {method: snakemake.input[method] for method in snakemake.params.methods}
written = sample_grid_figures(final_samples, snakemake.input.base, snakemake.params.templates, snakemake.output[0])
print("\n".join(map(str, written)))
