"""Every error type a user can meet, at the bottom so any layer raises them without importing another."""


class SuiteError(ValueError):
    """A suite definition that cannot run; the message names the file and key."""


class GeneratorError(SuiteError):
    """A model spec that cannot run (bad spec, missing file, factory that raises): one line naming the spec."""


class GenerationFailed(RuntimeError):
    """One video (or one call) a generator could not make: a failed row naming the cause, the run goes on."""


class OutputError(RuntimeError):
    """An output location that cannot be used; the message names it."""


class CompareError(ValueError):
    """Input compare cannot use (unpaired samples, different settings, a malformed file): one line saying why."""


class PlanError(ValueError):
    """Input the planner cannot use: one line naming the file or flag."""


class PaperTableError(ValueError):
    """A paper-table suite run with the wrong models: one line naming --models and the rows."""


class RankFailed(ConnectionError):
    """Another rank died or could not be reached (a user-facing error: one line); the cache keeps what every
    rank finished."""


class Terminated(BaseException):
    """SIGTERM, raised where the process is (a BaseException: no `except Exception` swallows it)."""
