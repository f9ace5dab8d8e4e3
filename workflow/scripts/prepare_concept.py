"""Prepare one concept's images and concept.json in the shared layout."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.atomic import atomic_directory
from continual_lora.data.concepts import Concept
from continual_lora.data.sources import make_source

concept = Concept(**snakemake.params.concept)
with atomic_directory(snakemake.output[0]) as out_dir:
    make_source(concept.domain, snakemake.params.dataset).prepare(concept, out_dir)
print(f"prepared {concept.name} ({concept.domain}): prompt {concept.prompt!r}")
