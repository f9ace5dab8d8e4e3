"""Heatmaps, first-task curves and plasticity/forgetting scatters of an experiment."""

import sys

import pandas as pd

from continual_lora.aggregation import read_scores
from continual_lora.checkpoint import atomic_directory
from continual_lora.reporting import score_figures

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

with atomic_directory(snakemake.output[0]) as out_dir:
    written = score_figures(
        read_scores(list(snakemake.input.scores)),
        pd.read_csv(snakemake.input.per_run, dtype={"run": str}),
        snakemake.params.methods,
        out_dir,
    )
print("\n".join(path.name for path in written))
