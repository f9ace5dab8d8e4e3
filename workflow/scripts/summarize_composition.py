"""An experiment's composition scores per pair and concept, and the grid of its
concept pairs as each method's final model draws them."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_directory, atomic_output
from continual_lora.composition import composition_table, read_composition
from continual_lora.reporting import composition_grid_figures

table = composition_table(read_composition(list(snakemake.input.scores)), snakemake.params.methods)
with atomic_output(snakemake.output.table) as tmp:
    table.to_csv(tmp, index=False)
final_samples = dict(zip(snakemake.params.methods, snakemake.input.samples, strict=True))
with atomic_directory(snakemake.output.figures) as out_dir:
    written = composition_grid_figures(final_samples, snakemake.input.base, out_dir)
print(table.to_string())
print("\n".join(path.name for path in written))
