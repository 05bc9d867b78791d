"""`deepfit models`, and the check of `--arch` against the names each command accepts."""

from __future__ import annotations

import argparse

from ..models.registry import arch_names, spec
from .catalog import ARCH_COMMANDS, CLASSIFIER_ARCHS, LM_ARCHS
from .errors import UsageError

ALSO = {"train-vision": " (also lr-find)", "train-lm": " (also lr-find --task lm)", "train-classifier": ""}


def vision_archs() -> list[str]:
    """What `train-vision --arch` accepts: every registered vision architecture."""
    return arch_names("vision")


def accepted_archs(command: str) -> dict[str, str]:
    """`--arch` name -> registered architecture, for a command of `ARCH_COMMANDS`."""
    if command == "train-lm":
        return dict(LM_ARCHS)
    if command == "train-classifier":
        return dict(CLASSIFIER_ARCHS)
    if command == "train-vision":
        return {name: name for name in vision_archs()}
    raise ValueError(f"{command!r} takes no --arch; commands with --arch: {', '.join(ARCH_COMMANDS)}")


def check_arch(command: str, name: str, what: str = "--arch") -> str:
    """The registered architecture for `command`'s `--arch name`; a usage error listing the names otherwise."""
    archs = accepted_archs(command)
    if name not in archs:
        raise UsageError(f"unknown {what} {name!r}", hint=f"registered architectures: {', '.join(sorted(archs))} "
                         f"(`deepfit models {command}`)")
    return archs[name]


def cmd_models(args: argparse.Namespace) -> int:
    """List the `--arch` names of each command (of `args.for_command` alone, one per line)."""
    if args.for_command is not None:
        for name in sorted(accepted_archs(args.for_command)):
            print(name)
        return 0
    for i, command in enumerate(ARCH_COMMANDS):
        archs = accepted_archs(command)
        print(("\n" if i else "") + f"{command} --arch{ALSO[command]}:")
        width = max(len(n) for n in archs)
        for name in sorted(archs):
            print(f"  {name.ljust(width)}  {spec(archs[name]).summary}".rstrip())
    return 0
