"""CLIP-T: how well each sample matches its prompt, in CLIP's image-text space.

The prompt is the evaluation prompt with the concept's rare token taken out: CLIP
never saw "sks", so the text side names what a faithful sample should show. For
objects "a photo of sks ball" becomes "a photo of ball" with the class word kept;
for styles the style's name is a real word of the prompt and stays. The score is
the mean over samples of cos(image, its text); references are not used.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch

from continual_lora.data.concepts import Concept
from continual_lora.scoring.base import Metric, ScoringInput
from continual_lora.scoring.hf import load_hf_model, load_pil_image_processor, pixel_values, pooled


def class_prompt(prompt: str, concept: Concept) -> str:
    """``prompt`` with the concept's rare token removed (objects), whitespace tidied."""
    if concept.domain != "objects" or not concept.token:
        return prompt
    # Whole words only, so a token that is part of a longer word is left alone.
    stripped = re.sub(rf"(?<!\S){re.escape(concept.token)}(?!\S)", " ", prompt)
    return re.sub(r"\s+", " ", stripped).strip()


class ClipTextMetric(Metric):
    name = "clip_t"
    higher_is_better = True
    defaults: ClassVar[dict[str, Any]] = {"model": "openai/clip-vit-base-patch32", "batch_size": 32}
    uses_references = False

    def __init__(self, settings, device):
        from transformers import AutoTokenizer, CLIPModel

        super().__init__(settings, device)
        self.model = load_hf_model(CLIPModel, self.settings["model"], self.device)
        # Loaded separately rather than as one AutoProcessor: the kwarg that selects the
        # PIL image processor would reach the tokenizer too (4.x: use_fast=False makes it
        # the slow tokenizer), and the reference code tokenizes with AutoTokenizer.
        self.image_processor = load_pil_image_processor(self.settings["model"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.settings["model"]))

    def similarities(self, job: ScoringInput) -> torch.Tensor:
        """cos(sample_i, its class prompt) for every sample."""
        return self.text_similarities(job.samples, [class_prompt(p, job.concept) for p in job.prompts])

    @torch.no_grad()
    def text_similarities(self, samples: list, texts: list[str]) -> torch.Tensor:
        """cos(sample_i, text_i) for every sample."""
        size = int(self.settings["batch_size"])
        out = []
        for i in range(0, len(samples), size):
            images = [im.convert("RGB") for im in samples[i : i + size]]
            pixels = pixel_values(self.image_processor, images, self.device, self.model.dtype)
            tokens = self.tokenizer(
                texts[i : i + size], padding=True, truncation=True, return_tensors="pt"
            ).to(self.device)
            image = pooled(self.model.get_image_features(pixel_values=pixels))
            text = pooled(
                self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            )
            out.append(torch.nn.functional.cosine_similarity(image.double(), text.double(), dim=1).cpu())
        return torch.cat(out)

    def score(self, job: ScoringInput) -> float:
        if not job.samples:
            raise ValueError(f"metric {self.name!r}: task {job.concept.name!r} has no samples to score")
        return float(self.similarities(job).mean())

    scores_retention: ClassVar[bool] = True

    def retention(self, samples, base_samples, prompts) -> float:
        """Mean CLIP-T of ``samples`` to their prompts over the base model's on the same
        prompts: 1.0 for the base model, below it where the prompts are followed less."""
        return float(self.text_similarities(samples, prompts).mean() / self.text_similarities(base_samples, prompts).mean())
