"""Heatmaps, first-task curves and plasticity/forgetting scatters of an experiment."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import pandas as pd

from continual_lora.aggregation import read_scores
from continual_lora.atomic import atomic_directory
from continual_lora.reporting import score_figures

with atomic_directory(snakemake.output[0]) as out_dir:
    written = score_figures(
        read_scores(list(snakemake.input.scores)),
        pd.read_csv(snakemake.input.per_run, dtype={"run": str}),
        snakemake.params.methods,
        out_dir,
    )
print("\n".join(path.name for path in written))
