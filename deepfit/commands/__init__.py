"""The CLI's commands, one module per family: vision training, text training, using a run folder.

`deepfit.cli` builds the parser and dispatches here; each `cmd_*` takes the parsed arguments and
returns an exit status, raising `common.CLIError` for one-line failures.
"""
