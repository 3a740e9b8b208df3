"""A run: suites, the runner (generate -> score -> rows), the sample cache, torchrun sharding, external videos."""
