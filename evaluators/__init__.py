"""Evaluators: VBench dimensions, CLIP score, consistency, compute (see README)."""
