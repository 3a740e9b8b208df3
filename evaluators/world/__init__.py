"""The world suite's checks (colour, shape, count, motion, relation, background, style) as registered evaluators."""

from evaluators.world import checks  # noqa: F401  (registers)
