"""`deepfit corpus WHAT FOLDER`: ULMFiT's text without internet, built from installed Debian packages.

`general` writes `general.txt` (WordNet glosses, Linux man pages, the fortunes topics no task uses: what
`train-lm` pretrains on), `fortunes` the 4-topic task `fortunes4.csv`, `debian` the package-section task
`debian_sections.csv` with `debian_unlabelled.txt`; `all` every one. The builders are `deepfit.text.corpus`'s;
each file's manifest (counts, sources, a hash) goes to `FOLDER/manifest_<what>.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from .errors import CLIError
from .training import say


def _describe(name: str, m: dict[str, Any]) -> str:
    if name == "general":
        sources = ", ".join(f"{k} {v:,}" for k, v in m["sources"].items())
        return f"{m['file']}: {m['texts']:,} texts, {m['words']:,} words ({sources})"
    line = f"{m['file']}: {m['texts']:,} labelled texts ({m['valid']:,} is_valid), {len(m['classes'])} classes"
    if m.get("unlabelled_file"):
        line += f"; {m['unlabelled_file']}: {m['unlabelled_texts']:,} unlabelled texts"
    return line


def cmd_corpus(args: argparse.Namespace) -> int:
    """Write the chosen corpora into FOLDER and print what each file holds."""
    from ..text import corpus

    builders = {"general": corpus.general_corpus, "fortunes": corpus.fortune_topic_task,
                "debian": corpus.debian_section_task}
    names = list(builders) if args.what == "all" else [args.what]
    out = Path(args.folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create '{out}': {e.strerror}", hint="choose another FOLDER") from None
    manifest = {}
    for name in names:
        say(f"deepfit: building {name} in {out} ...")
        try:
            manifest[name] = builders[name](out)
        except FileNotFoundError as e:
            raise CLIError(str(e), hint="install the packages the corpora are made from: apt-get install -y "
                                        + " ".join(corpus.DEBIAN_PACKAGES)) from None
        except (subprocess.CalledProcessError, RuntimeError) as e:
            raise CLIError(f"{name}: {e}", hint="the debian task reads `apt-cache dumpavail`: run apt-get update "
                                                "first") from None
        say("  " + _describe(name, manifest[name]))
    path = out / f"manifest_{args.what}.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    say(f"manifest: {path}")
    return 0


__all__ = ["cmd_corpus"]
