"""Score one checkpoint's samples of the general prompts against the base model's."""

import sys

from continual_lora.gpus import holding_gpu
from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.models.loading import resolve_device
from continual_lora.retention import retention_metrics, score_retention

# The GPU this job holds alone (continual_lora.gpus), before anything touches CUDA.
with holding_gpu():
    params = snakemake.params.scoring
    # retention.metrics, or the experiment's metrics that can score retention.
    names = retention_metrics(params["metrics"])
    score_retention(
        samples_dir=snakemake.input.samples,
        base_dir=snakemake.input.base_samples,
        metrics={name: params["metrics"][name] for name in names},
        method=params["method"],
        run=params["run"],
        after_task=params["after_task"],
        out_csv=snakemake.output[0],
        device=str(resolve_device(params["device"])),
    )
