"""Reply-extraction quality and speed: our extractor against the usual libraries, same inputs, same run.

Usage: python bench/reply_quality.py [--corpus PATH] [--repeats N] [--show-failures]

The corpus is Discourse's email_reply_trimmer test set (``emails/*.txt`` in,
``trimmed/*.txt`` expected), compared after ``.strip()``.  Prints one table:
exact matches, mean token F1 (whitespace tokens, multiset overlap) and microseconds
per message (median over repeats of a full pass, ``time.perf_counter``).
Libraries that are not installed appear as "not installed" rows.
"""
from __future__ import annotations

import argparse
import difflib
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared/corpora/email_reply_trimmer"
sys.path.insert(0, str(ROOT))

Extractor = Callable[[str], str]
_NAIVE_ON_WROTE = re.compile(r"^\s*On\b.*\bwrote:\s*$")


def naive(text: str) -> str:
    """The baseline everyone writes first: drop '>' lines, stop at "On ... wrote:"."""
    kept = []
    for line in text.splitlines():
        if _NAIVE_ON_WROTE.match(line):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return "\n".join(kept)


def extractors() -> list[tuple[str, Extractor | None]]:
    """(name, function or None when not installed), ours first."""
    from inbound.reply import extract_reply_text

    found: list[tuple[str, Extractor | None]] = [("gateway inbound.reply", extract_reply_text)]
    try:
        import talon
        from talon import quotations

        if hasattr(talon, "init"):
            talon.init()
        found.append(("talon", quotations.extract_from_plain))
    except Exception:  # ImportError, or a broken install: either way, not usable here
        found.append(("talon", None))
    try:
        from email_reply_parser import EmailReplyParser as ERP

        found.append(("email-reply-parser", ERP.parse_reply))
    except Exception:
        found.append(("email-reply-parser", None))
    try:
        from mailparser_reply import EmailReplyParser as MPR

        parser = MPR(languages=["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh"])
        found.append(("mail-parser-reply", lambda text: parser.parse_reply(text) or ""))
    except Exception:
        found.append(("mail-parser-reply", None))
    found.append(("naive (> lines, On..wrote:)", naive))
    return found


def load(corpus: Path) -> list[tuple[str, str, str]]:
    """(name, input, expected) for every email that has an expected trim."""
    cases = []
    for email in sorted((corpus / "emails").glob("*.txt")):
        expected = corpus / "trimmed" / email.name
        if expected.exists():
            cases.append((email.name, email.read_text(encoding="utf-8"), expected.read_text(encoding="utf-8")))
    return cases


def token_f1(got: str, expected: str) -> float:
    g, e = Counter(got.split()), Counter(expected.split())
    if not g and not e:
        return 1.0
    overlap = sum((g & e).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(g.values()), overlap / sum(e.values())
    return 2 * precision * recall / (precision + recall)


def safe(fn: Extractor, text: str) -> str:
    try:
        return fn(text) or ""
    except Exception:  # a library crashing on one mail scores that mail as empty
        return ""


def quality(fn: Extractor, cases) -> tuple[int, float, list[str]]:
    outputs = [safe(fn, text).strip() for _, text, _ in cases]
    exact = sum(out == expected.strip() for out, (_, _, expected) in zip(outputs, cases))
    f1 = statistics.fmean(token_f1(out, expected.strip()) for out, (_, _, expected) in zip(outputs, cases))
    return exact, f1, outputs


def speed(fns: list[Extractor], cases, repeats: int) -> list[float]:
    """Median µs/message per extractor; repeats interleave the extractors so machine load hits all alike."""
    timings: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            for _, text, _ in cases:
                safe(fn, text)
            timings[k].append((time.perf_counter() - start) / len(cases) * 1e6)
    return [statistics.median(t) for t in timings]


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args.add_argument("--repeats", type=int, default=7)
    args.add_argument("--show-failures", action="store_true", help="print diffs of our misses")
    opts = args.parse_args(argv)
    corpus = opts.corpus.resolve()
    if not (corpus / "emails").is_dir() or not (corpus / "trimmed").is_dir():
        print(f"reply_quality: no corpus at {corpus} (expected emails/ and trimmed/ in it); "
              "pass --corpus PATH", file=sys.stderr)
        return 2
    cases = load(corpus)
    if not cases:
        print(f"reply_quality: no emails/*.txt with a trimmed/ counterpart in {corpus}", file=sys.stderr)
        return 2
    n = len(cases)
    found = extractors()
    installed = [fn for _, fn in found if fn is not None]
    micros = iter(speed(installed, cases, opts.repeats))
    rows, ours = [], None
    for name, fn in found:
        if fn is None:
            rows.append((name, "not installed", "", "", ""))
            continue
        exact, f1, outputs = quality(fn, cases)
        ours = ours or outputs
        rows.append((name, f"{exact}/{n}", f"{100 * exact / n:.1f}%", f"{f1:.3f}", f"{next(micros):.1f}"))
    header = ("extractor", "exact", "%", "token F1", "µs/msg")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    print(f"corpus: {corpus} ({n} messages)")
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    if opts.show_failures:
        for (name, _, expected), got in zip(cases, ours):
            if got != expected.strip():
                print(f"\n--- {name}: expected vs ours")
                diff = difflib.unified_diff(expected.strip().splitlines(), got.splitlines(), "expected", "ours", lineterm="")
                print("\n".join(diff))
    return 0


if __name__ == "__main__":
    sys.exit(main())
