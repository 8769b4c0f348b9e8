"""Generation: the sampling filters (NumPy) and incremental decoding through the model's cache."""
