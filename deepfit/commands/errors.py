"""The CLI's errors: one line `deepfit: error: ...` plus a hint; exit status 2 for usage errors, 1 for failures."""

from __future__ import annotations

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """A failure reported as one line `deepfit: error: ...`, with an optional hint line; `code` is the exit status."""

    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.hint, self.code = hint, code


class UsageError(CLIError):
    """A bad argument or option (exit status 2)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, EXIT_USAGE)


def describe(e: BaseException) -> tuple[str, str | None]:
    """`(message, hint)` for an exception that escaped a command."""
    name = type(e).__name__
    text = str(e).strip().splitlines()[0] if str(e).strip() else name
    if isinstance(e, FileNotFoundError):
        return text, "check the path"
    if isinstance(e, PermissionError):
        return text, "check the file permissions"
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "out of memory" in text):
        return f"out of memory: {text}", "use a smaller --bs or a smaller model"
    if name in ("ImageReadError", "DataFormatError", "TextDecodeError", "EmptyDataError"):
        return text, "fix or remove the file named above"
    if name in ("CheckpointError", "PickleRefusedError", "ExportError"):
        return text, None
    if name == "ModelDataMismatchError":
        return text, "choose an --arch that fits the data (or --size for larger images)"
    if isinstance(e, (ValueError, KeyError, TypeError)):
        return f"{text}" if isinstance(e, ValueError) else f"{name}: {text}", None
    return f"{name}: {text}", "this looks like a bug; rerun with DEEPFIT_TRACEBACK=1 to see where it comes from"
