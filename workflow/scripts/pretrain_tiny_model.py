"""Build and pretrain the embedded tiny model on generic synthetic class images."""

import sys

from continual_lora.gpus import holding_gpu
from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from dataclasses import asdict

from continual_lora.atomic import atomic_directory
from continual_lora.data import synthetic
from continual_lora.data.sources import RARE_TOKENS
from continual_lora.models.model_cache import cached_build, model_key
from continual_lora.models.tiny import TinyModelSettings, pretrain_tiny_model

# The GPU this job holds alone (continual_lora.gpus), before anything touches CUDA.
with holding_gpu():
    settings = TinyModelSettings(**snakemake.params.settings)
    style_names = [style.name for style in synthetic.style_concepts(synthetic.MAX_STYLE_CONCEPTS, 0)]
    extra_words = [*RARE_TOKENS, *style_names]

    def pretrain(out_dir):
        examples = synthetic.pretraining_examples(settings.num_examples, settings.seed, settings.resolution)
        pretrain_tiny_model(examples, out_dir, settings, extra_words=extra_words)

    key = model_key("tiny", {"settings": asdict(settings), "extra_words": extra_words})
    with atomic_directory(snakemake.output[0]) as out_dir:
        cached_build(key, out_dir, pretrain)
