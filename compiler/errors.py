"""The compiler's user-facing error for programs it cannot build (kept apart from the targets so
that the pipeline driver and every target can raise it without importing each other)."""

__all__ = ["CompileError", "InstructionLimitError"]


class CompileError(ValueError):
    """The graph cannot be compiled for this architecture; names the op and the sizes."""


class InstructionLimitError(CompileError):
    """Compilation stopped: the program already has `count` instructions, more than the
    limit its caller set (`compiler.targets.emit.instruction_limit`)."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"compilation stopped after {count:,} instructions, more than the "
                         f"limit of {limit:,}")
        self.count, self.limit = count, limit
