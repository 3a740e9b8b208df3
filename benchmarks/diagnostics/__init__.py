"""Diagnostics: where the pipeline loses quality (stage by stage), not part of a benchmark suite."""
