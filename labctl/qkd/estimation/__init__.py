"""Parameter estimation: decoy-state bounds, finite-key length, key-rate model."""
