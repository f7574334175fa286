"""`bert make-data` speed and memory against pure tokenization of the same corpus.

    .venv/bin/python benchmarks/make_data.py [--corpus FILE] [--vocab FILE] [--repeats 3] [--skip-8x]

Every measurement runs in a fresh interpreter (this script started again with
``--child``), with TensorFlow imported before the clock starts. The parent samples the resident memory of
the child's whole process tree (main process, forkserver, workers) every
20 ms and keeps the peak.

* ``tokenize``: tokenize every non-blank line in batches of 2,048, as
  make-data does: the floor any implementation pays.
* ``make-data --workers N``: one ``create_pretraining_data`` call with the
  issue's recipe (seq 128, dupe factor 5, everything else default): reading,
  tokenizing, worker start-up, instances, masks, encoding, writing.

Both build and trace the tokenizer before the clock starts (about 2 s, the
same for both; reported once). Besides wall time, the CPU time of the whole
process tree is reported: on a small shared machine it is the steadier figure.
* ``8x``: the corpus repeated 8 times, to show memory does not grow with it.

Prints medians of ``--repeats`` runs and the ratios the issue sets goals for:
make-data within 2x of tokenization time, near-linear in workers, peak
memory for the 8x corpus at most 1.3x that of 1x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_CORPUS = SHARED / "corpora" / "python311_docs.txt"
DEFAULT_VOCAB = SHARED / "vocab" / "bert-base-uncased-vocab.txt"


# ---------------------------------------------------------------------------
# Child: one measurement
# ---------------------------------------------------------------------------


def _tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants, with the children they have reaped
    (workers end before a run returns; their time is in their parent's cutime)."""
    total = 0.0
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def _warm_tokenizer(vocab_path: Path):
    """Builds and traces the tokenizer (about 2 s), outside the timed part."""
    from data import pretraining_data
    from data.tokenization import Vocabulary, resolve_lowercase

    vocab = Vocabulary.load(vocab_path)
    tokenize = pretraining_data._tokenizer_for(vocab, resolve_lowercase(vocab, None))
    tokenize(["warm up"])
    return tokenize


def child_tokenize(corpus: Path, vocab_path: Path) -> dict:
    """Tokenize every non-blank line in batches, as make-data does."""
    import tensorflow  # noqa: F401

    from data.pretraining_data import _TOKENIZE_BATCH
    from data.textio import iter_lines

    lines = [line for line in iter_lines(corpus) if line.strip()]
    started = time.perf_counter()
    tokenize = _warm_tokenizer(vocab_path)
    setup = time.perf_counter() - started
    cpu, started = _tree_cpu(os.getpid()), time.perf_counter()
    tokens = 0
    for start in range(0, len(lines), _TOKENIZE_BATCH):
        tokens += len(tokenize(lines[start : start + _TOKENIZE_BATCH])[0])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu": _tree_cpu(os.getpid()) - cpu, "setup": setup, "tokens": tokens}


def child_make_data(corpus: Path, vocab_path: Path, workers: int, output: Path) -> dict:
    """One ``create_pretraining_data`` call, the tokenizer built beforehand."""
    import tensorflow  # noqa: F401

    from data.pretraining_data import PretrainingDataOptions, create_pretraining_data

    _warm_tokenizer(vocab_path)
    options = PretrainingDataOptions(max_seq_length=128, dupe_factor=5)
    cpu, started = _tree_cpu(os.getpid()), time.perf_counter()
    report = create_pretraining_data([corpus], vocab_path, output, options, workers=workers, overwrite=True)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu": _tree_cpu(os.getpid()) - cpu, "instances": report.instances}


# ---------------------------------------------------------------------------
# Parent: run children, watch their memory
# ---------------------------------------------------------------------------


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants."""
    total, page = 0, os.sysconf("SC_PAGE_SIZE")
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * page
        except OSError:
            pass
    return total


def run_child(args: list[str]) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO
    )
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(process.pid))
        time.sleep(0.02)
    output = process.stdout.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed with status {process.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-8x", action="store_true", help="skip the run on the corpus repeated 8 times")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, corpus, vocab = args.child[0], Path(args.child[1]), Path(args.child[2])
        if kind == "tokenize":
            result = child_tokenize(corpus, vocab)
        else:
            result = child_make_data(corpus, vocab, int(args.child[3]), Path(args.child[4]))
        print(json.dumps(result))
        return

    for path in (args.corpus, args.vocab):
        if not path.is_file():
            sys.exit(f"{path}: not found (the shared corpora live in ../shared/data)")
    size_mb = args.corpus.stat().st_size / 1e6
    print(f"corpus {args.corpus.name} ({size_mb:.2f} MB), vocab {args.vocab.name}, seq 128, dupe factor 5, "
          f"{os.cpu_count()} CPUs, median of {args.repeats}")

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)

        def measure(name: str, child_args: list[str], repeats: int) -> dict:
            results = [run_child(child_args) for _ in range(repeats)]
            summary = {key: statistics.median(r[key] for r in results) for key in results[0]}
            print(f"  {name:<26} {summary['seconds']:6.2f} s {[round(r['seconds'], 2) for r in results]}  "
                  f"CPU {summary['cpu']:6.2f} s {[round(r['cpu'], 2) for r in results]}  "
                  f"peak RSS {summary['peak_rss_mb']:,.0f} MB", flush=True)
            return summary

        tokenize = measure("tokenize", ["tokenize", str(args.corpus), str(args.vocab)], args.repeats)
        runs = {}
        for workers in args.workers:
            runs[workers] = measure(
                f"make-data --workers {workers}",
                ["make-data", str(args.corpus), str(args.vocab), str(workers), str(scratch / f"out{workers}")],
                args.repeats,
            )
        big = None
        if not args.skip_8x:
            repeated = scratch / "corpus8x.txt"
            with open(repeated, "wb") as out:
                for _ in range(8):
                    out.write(args.corpus.read_bytes().rstrip(b"\n") + b"\n\n")
            workers = max(args.workers)
            big = measure(
                f"8x corpus, --workers {workers}",
                ["make-data", str(repeated), str(args.vocab), str(workers), str(scratch / "out8x")],
                1,
            )
            shutil.rmtree(scratch / "out8x", ignore_errors=True)

    print()
    print(f"(not timed: building and tracing the tokenizer, {tokenize['setup']:.2f} s per process)")
    print(f"tokenization: {size_mb / tokenize['seconds']:.2f} MB/s, {tokenize['tokens'] / tokenize['seconds']:,.0f} tokens/s")
    for workers, run in runs.items():
        print(
            f"make-data --workers {workers}: {run['instances'] / run['seconds']:,.0f} instances/s, "
            f"{size_mb / run['seconds']:.2f} MB/s; {run['seconds'] / tokenize['seconds']:.2f}x tokenization time, "
            f"{run['cpu'] / tokenize['cpu']:.2f}x its CPU, {run['cpu'] / run['instances'] * 1e6:.1f} CPU-us per "
            f"instance (goal <= 2x time); peak RSS {run['peak_rss_mb']:,.0f} MB"
        )
    if len(runs) > 1:
        low, high = min(runs), max(runs)
        print(f"speed-up {low} -> {high} workers: {runs[low]['seconds'] / runs[high]['seconds']:.2f}x "
              f"on {os.cpu_count()} CPUs")
    if big is not None:
        base = runs[max(args.workers)]
        print(f"8x corpus: {big['instances']:,.0f} instances, {big['instances'] / big['seconds']:,.0f}/s, "
              f"peak RSS {big['peak_rss_mb']:,.0f} MB = {big['peak_rss_mb'] / base['peak_rss_mb']:.2f}x the 1x run "
              "(goal <= 1.3x)")


if __name__ == "__main__":
    main()
