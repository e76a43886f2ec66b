"""Curator: score, rank, review and export image datasets for LoRA / fine-tuning training."""
__version__ = "0.1.0"
