"""Tokenizer throughput: our in-graph Tokenizer vs the original algorithm in pure Python.

    .venv/bin/python benchmarks/tokenizer.py [--corpus FILE] [--vocab FILE] [--cased]
                                            [--batch-size 1024] [--repeats 3]

Both tokenizers turn every line of the corpus into a Python list of token ids
(``Tokenizer.encode`` vs ``tests/reference_tokenizer.py``). Our tokenizer is
built and traced once before timing (a one-off cost, printed separately);
reading the file is not timed. Prints lines/s and MB/s (UTF-8 bytes of the
lines) of the median of ``--repeats`` runs for each, the speed-up (goal: at
least 20x) and the number of lines whose ids differ (must be 0). ``encode``
tokenizes batches on one thread per usable core (at most 8); for a one-core
figure run it under ``taskset -c 0``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
SHARED = REPO.parent / "shared" / "data"
DEFAULT_CORPUS = SHARED / "corpora" / "python311_docs.txt"
DEFAULT_VOCAB = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
GOAL = 20.0


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def median_seconds(run, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB)
    parser.add_argument("--cased", action="store_true", help="no lower-casing or accent stripping")
    parser.add_argument("--batch-size", type=int, default=1024, help="lines per tokenizer call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for path in (args.corpus, args.vocab):
        if not path.is_file():
            sys.exit(f"{path}: not found (the default data lives in ../shared/data)")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from data.textio import iter_lines
    from data.tokenization import Tokenizer, Vocabulary
    from reference_tokenizer import ReferenceTokenizer

    lowercase = not args.cased
    lines = list(iter_lines(args.corpus))
    megabytes = sum(len(line.encode("utf-8")) for line in lines) / 1e6
    vocab = Vocabulary.load(args.vocab)

    started = time.perf_counter()
    ours = Tokenizer(vocab, lowercase=lowercase)
    ours.encode(lines[: args.batch_size], batch_size=args.batch_size)  # trace once
    setup = time.perf_counter() - started
    reference = ReferenceTokenizer(vocab.tokens, lowercase=lowercase)

    ours_seconds, ours_ids = median_seconds(lambda: ours.encode(lines, batch_size=args.batch_size), args.repeats)
    reference_seconds, reference_ids = median_seconds(
        lambda: [reference.encode(line) for line in lines], args.repeats
    )
    mismatches = sum(a != b for a, b in zip(ours_ids, reference_ids))

    print(
        f"corpus {args.corpus.name}: {len(lines):,} lines, {megabytes:.1f} MB; "
        f"vocab {args.vocab.name} ({len(vocab):,}); {'uncased' if lowercase else 'cased'}; "
        f"median of {args.repeats}; {_usable_cores()} usable CPU cores (ours uses them; the reference one)"
    )
    for name, seconds in (("ours (tf-text, in graph)", ours_seconds), ("reference (pure Python)", reference_seconds)):
        print(f"  {name:26s} {seconds:7.2f} s  {len(lines) / seconds:10,.0f} lines/s  {megabytes / seconds:6.2f} MB/s")
    print(f"  ours: build + first trace {setup:.2f} s (once per process)")
    ratio = reference_seconds / ours_seconds
    print(f"  speed-up {ratio:.1f}x (goal >= {GOAL:.0f}x: {'met' if ratio >= GOAL else 'NOT met'})")
    print(f"  lines with different ids: {mismatches}")


if __name__ == "__main__":
    main()
