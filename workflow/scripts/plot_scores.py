"""Heatmaps, first-task curves and plasticity/forgetting scatters of an experiment."""

import sys

import pandas as pd

from continual_lora.aggregation import read_scores
from continual_lora.reporting import score_figures

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

written = score_figures(
    read_scores(list(snakemake.input.scores)),
    pd.read_csv(snakemake.input.per_run, dtype={"run": str}),
    snakemake.params.methods,
    snakemake.output[0],
)
print("\n".join(map(str, written)))
