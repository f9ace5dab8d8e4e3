"""Continual LoRA personalization of text-to-image diffusion models (arXiv 2410.04891)."""
