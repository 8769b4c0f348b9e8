"""Training: the one loop every task plugs into, language-model runs, fine-tuning, classifiers,
and TensorFlow's distribution strategies."""
