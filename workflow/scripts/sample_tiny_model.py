"""A grid of the tiny base model's samples for class-level prompts."""

import sys

from continual_lora.gpus import holding_gpu
from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_output
from continual_lora.models.tiny import sample_grid

# The GPU this job holds alone (continual_lora.gpus), before anything touches CUDA.
with holding_gpu():
    with atomic_output(snakemake.output[0]) as out_png:
        sample_grid(snakemake.input[0], snakemake.params.prompts, out_png)
