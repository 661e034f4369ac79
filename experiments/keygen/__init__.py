"""Live decoy-state BB84 key generation: Alice and Bob nodes, block pipeline, main job."""

from experiments.keygen.plan import generate_key, main

__all__ = ["generate_key", "main"]
