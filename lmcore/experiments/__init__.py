"""Experiments over several runs: fine-tuning comparisons and the modern GPT's ablation."""
