"""The compiler's user-facing error for programs it cannot build (kept apart from the targets so
that the pipeline driver and every target can raise it without importing each other)."""

__all__ = ["CompileError"]


class CompileError(ValueError):
    """The graph cannot be compiled for this architecture; names the op and the sizes."""
