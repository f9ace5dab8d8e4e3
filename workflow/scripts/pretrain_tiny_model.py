"""Build and pretrain the embedded tiny model on generic synthetic class images, or copy
the one an earlier run pretrained with the same settings and code from the cache."""

import sys

from continual_lora.gpus import holding_gpu
from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_directory
from continual_lora.models.embedded import build_embedded_model
from continual_lora.models.tiny import TinyModelSettings

# The GPU this job holds alone (continual_lora.gpus), before anything touches CUDA.
with holding_gpu():
    with atomic_directory(snakemake.output[0]) as out_dir:
        build_embedded_model(out_dir, TinyModelSettings(**snakemake.params.settings))
