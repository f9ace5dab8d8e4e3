"""A grid of the tiny base model's samples for class-level prompts."""

import sys

from continual_lora.models.tiny import sample_grid

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

sample_grid(snakemake.input[0], snakemake.params.prompts, snakemake.output[0])
