"""The harness core: error types, the bounds table, atomic outputs, provenance, hashing, training records."""
