"""The networks: configs and presets (no TensorFlow), the Keras models, the learning-rate schedule."""
