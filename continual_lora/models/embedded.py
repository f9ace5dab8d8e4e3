"""The embedded default's model: the tiny model (``continual_lora.models.tiny``)
pretrained on the synthetic world's generic class images, with every rare token and
style name in its vocabulary, taken from the cache of pretrained models where an
earlier run made the same one (``continual_lora.models.model_cache``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

from continual_lora.data import synthetic
from continual_lora.data.sources import RARE_TOKENS
from continual_lora.models.model_cache import cached_build, model_key
from continual_lora.models.tiny import TinyModelSettings, pretrain_tiny_model

# This module and what it imports make the model: their code is part of its key.
_MAKERS = (__name__,)


def vocabulary_words() -> list[str]:
    """Words the tokenizer keeps whole although the corpus never uses them."""
    return [*RARE_TOKENS, *(style.name for style in synthetic.style_concepts(synthetic.MAX_STYLE_CONCEPTS, 0))]


def build_embedded_model(out_dir: str | Path, settings: TinyModelSettings, log: Callable[[str], None] = print) -> bool:
    """The pretrained tiny model in ``out_dir``; True where it came from the cache."""
    words = vocabulary_words()

    def pretrain(folder: Path) -> None:
        examples = synthetic.pretraining_examples(
            settings.num_examples,
            settings.seed,
            settings.resolution,
            patterned_fraction=settings.patterned_fraction,
            pattern_scale=settings.pattern_scale,
            named_ground_fraction=settings.named_ground_fraction,
        )
        pretrain_tiny_model(examples, folder, settings, extra_words=words, log=log)

    key = model_key("tiny", {"settings": asdict(settings), "extra_words": words}, _MAKERS)
    return cached_build(key, out_dir, pretrain, log=log)
