"""Explanations on the user's own data: information theory and embedding geometry (NumPy only)."""
