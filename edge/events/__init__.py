"""Events: lifecycle of debounced violations, and the evidence (snapshot, clip) stored for each."""
