"""Dataset import onto the canonical classes, splitting without leakage, and validation reports."""
