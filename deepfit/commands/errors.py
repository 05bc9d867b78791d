"""Turning an unexpected exception into the CLI's one-line error and a hint."""

from __future__ import annotations


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
