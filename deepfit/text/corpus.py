"""Real text corpora from Debian packages, for ULMFiT without internet: a general corpus and two labelled tasks.

Every builder reads files that Debian packages install (no download), in a fixed order, and writes plain files
the CLI reads (`train-lm FILE`: texts separated by blank lines; `train-classifier FILE.csv`: `text,label,is_valid`).

- `general_corpus`: WordNet glosses and examples (`wordnet-base`), the Linux man pages (`manpages`,
  `manpages-dev`, roff markup stripped) and every fortunes topic except the ones held out for a task
  (`fortunes`): general English, several million tokens.
- `fortune_topic_task`: fortune entries labelled by topic (default: linux, love, food, sports).
- `debian_section_task`: Debian package short descriptions (`apt-cache dumpavail`) labelled by archive
  section; the descriptions of packages outside the labelled sample make an unlabelled in-domain corpus.

Splits are fixed by a hash of the text (not by its position), so they do not move when a package adds texts.

    apt-get install -y fortunes wordnet-base manpages manpages-dev
    python -m deepfit.text.corpus all data/ulmfit     # general.txt, fortunes4.csv, debian_*.{csv,txt}
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from .datasets import FORTUNES_DIR, fortune_topics, read_fortunes

WORDNET_DIR = Path("/usr/share/wordnet")
DPKG_INFO = Path("/var/lib/dpkg/info")
MAN_PACKAGES: tuple[str, ...] = ("manpages", "manpages-dev")
FORTUNE_TASK_TOPICS: tuple[str, ...] = ("linux", "love", "food", "sports")
#: packages a user installs first: `apt-get install -y ` + these
DEBIAN_PACKAGES: tuple[str, ...] = ("fortunes", "wordnet-base", "manpages", "manpages-dev")


def _hash01(text: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by the text: splits that do not depend on order or on the other texts."""
    h = hashlib.sha256((salt + text).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _one_line_breaks(text: str) -> str:
    """Blank lines separate texts in the output files, so a text keeps single line breaks only."""
    return re.sub(r"\n\s*\n+", "\n", text.strip())


# ---------------------------------------------------------------------------------------------- WordNet
def wordnet_glosses(root: Path = WORDNET_DIR) -> list[str]:
    """One text per synset: `lemma, lemma: gloss; "example"` from `data.{noun,verb,adj,adv}`."""
    texts = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: apt-get install -y wordnet-base")
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            head, gloss = line.split("|", 1)
            fields = head.split()
            n_words = int(fields[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in fields[4:4 + 2 * n_words:2]]
            texts.append(f"{', '.join(dict.fromkeys(lemmas))}: {gloss.strip()}")
    return texts


# ---------------------------------------------------------------------------------------------- man pages
_FONT_MACROS = {".B", ".I", ".BR", ".RB", ".BI", ".IB", ".IR", ".RI", ".SM", ".SB"}
_BREAK_MACROS = {".PP", ".P", ".LP", ".SH", ".SS", ".TP", ".IP", ".HP", ".TQ", ".sp", ".br", ".RS", ".RE",
                 ".in", ".ti", ".EX", ".EE", ".TH", ".TS", ".TE", ".nf", ".fi"}
_ESCAPES = [(re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""), (re.compile(r"\\\((em|en)"), "-"),
            (re.compile(r"\\\(aq"), "'"), (re.compile(r"\\\([lr]q"), '"'), (re.compile(r"\\\(..|\\\[[^\]]*\]"), " "),
            (re.compile(r"\\[-e]"), "-"), (re.compile(r"\\[&c%]|\\\*\(..|\\\*."), ""),
            (re.compile(r"\\[ ~0|^]"), " "), (re.compile(r"\\s[-+]?\d"), ""), (re.compile(r'\\"'), ""),
            (re.compile(r"\\(.)"), r"\1")]


def _unroff(line: str) -> str:
    for pat, rep in _ESCAPES:
        line = pat.sub(rep, line)
    return line


def _macro_args(rest: str) -> str:
    args = re.findall(r'"([^"]*)"|(\S+)', rest)
    return "".join(a or b for a, b in args) if rest.strip() else ""


def roff_paragraphs(source: str, min_words: int = 8) -> list[str]:
    """The prose paragraphs of a man page's roff source: no-fill blocks, tables and comments dropped."""
    paras, cur, nofill = [], [], False

    def flush() -> None:
        text = " ".join(" ".join(cur).split())
        if len(text.split()) >= min_words and re.search(r"[a-z]{3}", text):
            paras.append(text)
        cur.clear()

    for raw in source.splitlines():
        line = raw.rstrip()
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line.partition(" ")
            if macro in (".nf", ".EX", ".TS"):
                flush()
                nofill = True
            elif macro in (".fi", ".EE", ".TE"):
                nofill = False
            elif macro in _BREAK_MACROS:
                flush()
            elif macro in _FONT_MACROS and not nofill:
                cur.append(_unroff(_macro_args(rest) if macro != ".B" and macro != ".I" else rest.replace('"', "")))
            continue
        if not nofill:
            cur.append(_unroff(line))
    flush()
    return paras


def package_files(package: str, pattern: str = r"^/usr/share/man/.*\.gz$") -> list[Path]:
    """Files a Debian package installed (from dpkg's list), matching `pattern`, sorted."""
    path = DPKG_INFO / f"{package}.list"
    if not path.is_file():
        raise FileNotFoundError(f"package {package!r} is not installed ({path} missing): apt-get install -y {package}")
    rx = re.compile(pattern)
    return sorted(Path(p) for p in path.read_text().splitlines() if rx.match(p) and Path(p).is_file()
                  and not Path(p).is_symlink())


def manpage_paragraphs(packages: Sequence[str] = MAN_PACKAGES) -> list[str]:
    texts = []
    for pkg in packages:
        for f in package_files(pkg):
            with gzip.open(f, "rt", encoding="utf-8", errors="replace") as fh:
                src = fh.read()
            if src.startswith(".so "):
                continue  # an alias of another page
            texts += roff_paragraphs(src)
    return texts


# ---------------------------------------------------------------------------------------------- fortunes
def fortune_entries(topics: Iterable[str] | None = None, exclude: Iterable[str] = (),
                    folder: Path = FORTUNES_DIR) -> list[tuple[str, str]]:
    """`(text, topic)` of every entry of `topics` (default: every topic file) except `exclude`."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} not found: apt-get install -y fortunes")
    skip = set(exclude)
    chosen = [t for t in (fortune_topics(folder) if topics is None else topics) if t not in skip]
    return [(_one_line_breaks(e), topic) for topic in chosen for e in read_fortunes(Path(folder) / topic)]


# ---------------------------------------------------------------------------------------------- Debian
def debian_descriptions() -> list[tuple[str, str, str]]:
    """`(package, section, short description)` of every package apt knows (`apt-cache dumpavail`), by name."""
    res = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True)
    out, pkg, section, desc = {}, None, None, None
    for line in res.stdout.splitlines() + [""]:
        if not line.strip():
            if pkg and section and desc:
                out.setdefault(pkg, (pkg, section.split("/")[-1], desc))
            pkg = section = desc = None
        elif line.startswith("Package: "):
            pkg = line[9:].strip()
        elif line.startswith("Section: "):
            section = line[9:].strip()
        elif line.startswith("Description: "):
            desc = line[13:].strip()
    if not out:
        raise RuntimeError("apt-cache dumpavail listed no package: run apt-get update first")
    return [out[k] for k in sorted(out)]


# ---------------------------------------------------------------------------------------------- writers
def write_texts(path: Path, texts: Sequence[str]) -> Path:
    """Texts separated by blank lines (what `deepfit train-lm FILE` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(_one_line_breaks(t) for t in texts) + "\n", encoding="utf-8")
    return path


def write_labelled(path: Path, rows: Sequence[tuple[str, str, bool]]) -> Path:
    """A CSV with `text,label,is_valid` (what `deepfit train-classifier FILE.csv` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "is_valid"])
        for text, label, valid in rows:
            w.writerow([text, label, "True" if valid else "False"])
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def general_corpus(out: Path, exclude_topics: Sequence[str] = FORTUNE_TASK_TOPICS, wordnet_dir: Path = WORDNET_DIR,
                   man_packages: Sequence[str] = MAN_PACKAGES, fortunes_dir: Path = FORTUNES_DIR) -> dict:
    """`out/general.txt`: WordNet + man pages + fortunes (less `exclude_topics`); returns the manifest."""
    parts = {"wordnet": wordnet_glosses(wordnet_dir), "manpages": manpage_paragraphs(man_packages),
             "fortunes": [t for t, _ in fortune_entries(exclude=exclude_topics, folder=fortunes_dir)]}
    texts = [t for k in ("wordnet", "manpages", "fortunes") for t in parts[k]]
    path = write_texts(out / "general.txt", texts)
    return {"file": path.name, "texts": len(texts), "words": sum(len(t.split()) for t in texts),
            "sources": {k: len(v) for k, v in parts.items()}, "excluded_fortune_topics": list(exclude_topics),
            "sha256_16": _sha(path)}


def fortune_topic_task(out: Path, topics: Sequence[str] = FORTUNE_TASK_TOPICS, valid_pct: float = 0.25,
                       fortunes_dir: Path = FORTUNES_DIR) -> dict:
    """`out/fortunes4.csv`: entries of `topics`, `is_valid` for a hash-chosen `valid_pct` of them."""
    rows = [(t, topic, _hash01(t, "fortunes") < valid_pct) for t, topic in fortune_entries(topics, folder=fortunes_dir)]
    path = write_labelled(out / "fortunes4.csv", rows)
    return {"file": path.name, "texts": len(rows), "valid": sum(r[2] for r in rows), "classes": list(topics),
            "sha256_16": _sha(path)}


def debian_section_task(out: Path, min_packages: int = 500, n_labelled: int = 5000, valid_pct: float = 0.2,
                        n_unlabelled: int = 15000) -> dict:
    """`out/debian_sections.csv`: short descriptions labelled by section, and `out/debian_unlabelled.txt`.

    Sections with at least `min_packages` packages are the classes; duplicate descriptions are dropped (the
    first package by name keeps one). `n_labelled` descriptions (chosen by hash) are labelled, `valid_pct` of
    them held out; `n_unlabelled` others, of any section, form the unlabelled in-domain text for language-model
    fine-tuning.
    """
    rows = debian_descriptions()
    seen: set[str] = set()
    uniq = []
    for pkg, section, desc in rows:
        key = desc.lower()
        if key not in seen:
            seen.add(key)
            uniq.append((pkg, section, desc))
    counts = Counter(s for _, s, _ in uniq)
    classes = sorted(s for s, c in counts.items() if c >= min_packages)
    ranked = sorted(uniq, key=lambda r: _hash01(r[2], "debian"))
    eligible = [r for r in ranked if r[1] in classes]
    labelled = eligible[:n_labelled]
    chosen = {r[0] for r in labelled}
    rest = [r for r in ranked if r[0] not in chosen][:n_unlabelled]
    unlabelled = [r[2] for r in sorted(rest)]
    lab_rows = [(d, s, _hash01(d, "debian-valid") < valid_pct) for _, s, d in sorted(labelled)]
    p1 = write_labelled(out / "debian_sections.csv", lab_rows)
    p2 = write_texts(out / "debian_unlabelled.txt", unlabelled)
    return {"file": p1.name, "texts": len(lab_rows), "valid": sum(r[2] for r in lab_rows), "classes": classes,
            "unlabelled_file": p2.name, "unlabelled_texts": len(unlabelled), "sha256_16": _sha(p1),
            "unlabelled_sha256_16": _sha(p2)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build ULMFiT corpora from installed Debian packages "
                                             f"(apt-get install -y {' '.join(DEBIAN_PACKAGES)})")
    ap.add_argument("what", choices=["general", "fortunes", "debian", "all"])
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    manifest = {}
    if args.what in ("general", "all"):
        manifest["general"] = general_corpus(args.out)
    if args.what in ("fortunes", "all"):
        manifest["fortunes"] = fortune_topic_task(args.out)
    if args.what in ("debian", "all"):
        manifest["debian"] = debian_section_task(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"manifest_{args.what}.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
