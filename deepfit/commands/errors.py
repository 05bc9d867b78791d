"""The CLI's errors: one line `deepfit: error: ...` plus a hint; exit status 2 for usage errors, 1 for failures."""

from __future__ import annotations

import errno
import pickle

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


PICKLE_HINT = ("the command line never unpickles files; if you trust it, load it in Python with "
               "torch.load(FILE, weights_only=False) and save its tensors (a state_dict) with torch.save")
NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _chain(e: BaseException) -> list[BaseException]:
    """`e` and the exceptions it was raised from or while handling, outermost first."""
    out: list[BaseException] = []
    while e is not None and e not in out and len(out) < 10:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _pickle_refusal(e: BaseException) -> tuple[str, str] | None:
    for inner in _chain(e):
        if type(inner).__name__ == "PickleRefusedError" and getattr(inner, "path", None) is not None:
            reason = getattr(inner, "reason", None) or "it holds pickled Python objects"
            return (f"refused to load {inner.path}: {reason}, and unpickling can run arbitrary code",
                    PICKLE_HINT)
        if isinstance(inner, pickle.UnpicklingError):
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(inner).__name__
            return f"refused to load a file holding pickled Python objects ({text[:160]})", PICKLE_HINT
    return None


def describe(e: BaseException) -> tuple[str, str | None]:
    """`(message, hint)` for an exception that escaped a command."""
    name = type(e).__name__
    text = str(e).strip().splitlines()[0] if str(e).strip() else name
    if isinstance(e, OSError) and e.errno in NO_SPACE:
        where = f" while writing {e.filename}" if e.filename else ""
        return (f"no space left on device{where}",
                "free some disk space (or choose another --out); a training run continues with --resume RUN_DIR")
    refusal = _pickle_refusal(e)
    if refusal is not None:
        return refusal
    if isinstance(e, FloatingPointError):
        return text, "lower --lr, or check the data for NaN/inf values"
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
