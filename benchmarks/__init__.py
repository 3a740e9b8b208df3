"""Benchmarks, suites, runners and the m4v-bench CLI."""
