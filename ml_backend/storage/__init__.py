"""What the backend keeps in MODEL_DIR: where each file lives (layout), model versions and score
caches (store), and the retrain history (history)."""
