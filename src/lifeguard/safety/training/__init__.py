"""Training corpus, the training script and synthetic-conversation assembly (train only)."""
