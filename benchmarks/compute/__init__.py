"""Compute measurement: wall clock and memory, FLOP counting, a shipped model's measured generation."""
