"""Score one model's samples of the concept pairs against each concept's references."""

import sys

from continual_lora.gpus import holding_gpu
from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.composition import composition_metrics, score_composition
from continual_lora.models.loading import resolve_device

# The GPU this job holds alone (continual_lora.gpus), before anything touches CUDA.
with holding_gpu():
    params = snakemake.params.scoring
    names = composition_metrics(params["metrics"])
    score_composition(
        samples_dir=snakemake.input.samples,
        concept_dirs=dict(zip(params["concepts"], snakemake.input.concepts, strict=True)),
        metrics={name: params["metrics"][name] for name in names},
        method=params["method"],
        run=params["run"],
        out_csv=snakemake.output[0],
        device=str(resolve_device(params["device"])),
    )
