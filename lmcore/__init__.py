"""LM Lab's engine: corpora, tokenizers, datasets, models, training, runs and generation.

Importing ``lmcore`` is cheap and never loads TensorFlow; the modules that need it
(``nn.models``, ``training.loop``, ``training.lm``) import it themselves. The Keras backend is fixed
here, once, before any ``import keras`` can happen inside the package.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) is noise for our users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


class LMError(Exception):
    """A problem with the user's input or request, reported as one clear line."""


def first_line(err: BaseException) -> str:
    """An exception as one line for a user: its type and the first line of its message."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
