"""Text in: corpora (built-in, files, web addresses), cleaning, tokenizers, training windows and
labeled data. NumPy only: nothing here loads TensorFlow."""
