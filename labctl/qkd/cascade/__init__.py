"""Cascade information reconciliation: protocol, schedules, kernels, the link messages."""
