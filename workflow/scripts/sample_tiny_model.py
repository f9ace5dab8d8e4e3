"""A grid of the tiny base model's samples for class-level prompts."""

import sys

from continual_lora.checkpoint import atomic_output
from continual_lora.models.tiny import sample_grid

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

with atomic_output(snakemake.output[0]) as out_png:
    sample_grid(snakemake.input[0], snakemake.params.prompts, out_png)
