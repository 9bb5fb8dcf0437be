"""The errors a user's input can cause, in one place: the command line turns each into one
line `error: ...` and exit status 2; a sweep records it as the point's failure reason."""
from __future__ import annotations

import isa
from arch import ArchError
from compiler.ir import GraphError
from compiler.targets import CompileError
from sim.engine import EngineError
from sim.functional import FunctionalError
from sim.collectives import CollectiveError
from sim.gpu import CalibrationError
from tessel.budget import MemoryBudgetError
from tessel.files import OutputError
from tessel.sweep.params import SweepError

__all__ = ["UsageError", "USER_ERRORS"]


class UsageError(ValueError):
    """A bad command-line argument, or arguments that do not go together."""


USER_ERRORS: tuple[type[Exception], ...] = (UsageError, GraphError, isa.IsaError, ArchError,
                                            CompileError, EngineError, FunctionalError,
                                            CalibrationError, SweepError, OutputError,
                                            MemoryBudgetError, CollectiveError)
