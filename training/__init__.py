"""SiteSentry training: dataset import, training, evaluation and export (needs the `train` extra)."""
