from __future__ import annotations

import pytest

from continual_lora.data.sources import make_source
from continual_lora.models.tiny import TinyModelSettings, build_tiny_pipeline, build_tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny SD-format model, randomly initialised (no pretraining), saved as a
    diffusers folder: the real classes at the smallest size, built in about a second."""
    root = tmp_path_factory.mktemp("tiny_model")
    tokenizer = build_tokenizer(["a photo of a ball", "image of a house"], root / "tokenizer", extra_words=["sks", "zwz"])
    pipeline = build_tiny_pipeline(TinyModelSettings(resolution=32), tokenizer)
    pipeline.save_pretrained(root / "model")
    return root / "model"


@pytest.fixture(scope="session")
def object_concepts_dir(tmp_path_factory):
    """Two synthetic object concepts, prepared at 32 px."""
    root = tmp_path_factory.mktemp("concepts")
    source = make_source("objects", {"source": "synthetic", "seed": 0, "resolution": 32, "n_reference": 2})
    concepts = source.concepts(2)
    for concept in concepts:
        source.prepare(concept, root / concept.name)
    return [root / concept.name for concept in concepts]
