"""Training: one Accelerate-based loop for every phase and every memory design."""
