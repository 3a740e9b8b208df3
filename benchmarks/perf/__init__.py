"""Speed benchmarks: the selective scan, the sequence mixers, the evaluators and the CLI's start-up."""
