"""Time and memory of reply extraction on large synthetic replies: does cost grow linearly with size?

Usage: python bench/reply_extract_memory.py [--repeats 3] [--sizes 10,100,1000]

Inputs (generated, deterministic; sizes in KB of the body as a str):
  plain-deep    a short reply, then quoted history whose depth cycles 1..40 ("> > > ...") with an
                "On ... wrote:" attribution at every level  → inbound.reply.extract_reply
  plain-long    the same reply, then history in very long lines (8 KB each, quoted) → extract_reply
  html-nested   a Gmail-shaped reply: text, then div.gmail_quote holding blockquotes nested 1..40
                deep with paragraphs and attributions  → inbound.html_reply.extract_reply_from_html
  html-plain    the same HTML without any gmail_quote class (only <blockquote>s, as some clients
                send) → extract_reply_from_html

Columns: "time" is the best of --repeats runs (time.perf_counter, no tracing); "peak" is the
tracemalloc peak of one more run (allocations made during the call, in KiB); "x time" is the
time ratio to the previous size. With sizes 10x apart, a ratio near 10 is linear, near 100 is
quadratic. "kept" is the length of the extracted text, a check that the reply was found.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPLY = "Thanks, I checked the branch: the typo is gone.\n\nOne more thing: the footer still says 2025."
PARAGRAPH = ("The gateway opened a pull request for this branch; reply to this mail to comment on it. "
             "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.")


def attribution(i: int) -> str:
    return f"On Sat, Nov {1 + i % 28}, 2026 at 10:{i % 60:02d} AM Person {i} <p{i}@example.com> wrote:"


def plain_deep(size: int) -> str:
    parts, total, i = [REPLY, "", attribution(0), ""], 0, 0
    while total < size:
        prefix = "> " * (1 + i % 40)
        block = f"{prefix}{attribution(i + 1)}\n{prefix}\n{prefix}{PARAGRAPH}\n{prefix}{PARAGRAPH}\n{prefix}"
        parts.append(block)
        total += len(block) + 1
        i += 1
    return "\n".join(parts)[:size]


def plain_long(size: int) -> str:
    line = "> " + (PARAGRAPH + " ") * (8192 // (len(PARAGRAPH) + 1))
    parts, total = [REPLY, "", attribution(0), ""], 0
    while total < size:
        parts.append(line)
        total += len(line) + 1
    return "\n".join(parts)[:size]


def _nested(size: int, quote_class: str) -> str:
    chunks, total, i = [], 0, 0
    while total < size:
        depth = 1 + i % 40
        inner = f"<p>{escape(PARAGRAPH)}</p><p>{escape(PARAGRAPH)}</p>"
        for level in range(depth):
            inner = f'<div>{escape(attribution(i + level))}<br></div><blockquote type="cite">{inner}</blockquote>'
        chunks.append(inner)
        total += len(inner)
        i += 1
    body = "".join(chunks)
    return (f'<html><body><div dir="ltr">{escape(REPLY).replace(chr(10), "<br>")}</div><br>'
            f'<div{quote_class}><div>{escape(attribution(0))}<br></div><blockquote>{body}</blockquote></div>'
            f"</body></html>")


def html_nested(size: int) -> str:
    return _nested(size, ' class="gmail_quote"')


def html_plain(size: int) -> str:
    return _nested(size, "")


def measure(function, text: str, repeats: int) -> tuple[float, float, int]:
    """(best seconds, tracemalloc peak KiB, length of the extracted text)."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        result = function(text)
        best = min(best, time.perf_counter() - began)
    tracemalloc.start()
    function(text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak / 1024, len(result.text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per input, best kept (default 3)")
    parser.add_argument("--sizes", default="10,100,1000", help="input sizes in KB (default 10,100,1000)")
    args = parser.parse_args()

    from inbound.html_reply import extract_reply_from_html
    from inbound.reply import extract_reply

    cases = [("plain-deep", plain_deep, extract_reply), ("plain-long", plain_long, extract_reply),
             ("html-nested", html_nested, extract_reply_from_html),
             ("html-plain", html_plain, extract_reply_from_html)]
    sizes = [int(s) * 1000 for s in args.sizes.split(",")]
    print(f"{'input':<12} {'size':>8} {'time':>12} {'x time':>7} {'peak':>11} {'peak/size':>9} {'kept':>8}")
    for name, make, function in cases:
        previous = None
        for size in sizes:
            text = make(size)
            seconds, peak_kib, kept = measure(function, text, args.repeats)
            ratio = f"{seconds / previous:.1f}" if previous else "-"
            previous = seconds
            print(f"{name:<12} {len(text) // 1000:>5} KB {seconds * 1e6:>9.0f} µs {ratio:>7} "
                  f"{peak_kib:>7.0f} KiB {peak_kib * 1024 / len(text):>8.1f}x {kept:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
