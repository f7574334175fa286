"""`bert make-data` speed and memory against pure tokenization of the same corpus.

    .venv/bin/python benchmarks/make_data.py [--corpus FILE] [--vocab FILE] [--repeats 3] [--skip-8x] [--beam]

Every measurement runs in a fresh interpreter (this script started again with
``--child``), with TensorFlow imported before the clock starts. The parent samples the resident memory of
the child's whole process tree (main process, forkserver, workers) every
100 ms (sampling more often takes CPU from the measured run) and keeps the peak.

* ``tokenize``: tokenize every non-blank line in batches of 2,048, as
  make-data does: the floor any implementation pays. Also on N threads
  (N the largest ``--workers``): make-data tokenizes on as many threads as it
  has workers (TensorFlow releases the GIL while it tokenizes).
* ``make-data --workers N``: one ``create_pretraining_data`` call with the
  issue's recipe (seq 128, dupe factor 5, everything else default): reading,
  tokenizing, worker start-up, instances, masks, encoding, writing.

* ``make-data --runner beam --workers N`` (with ``--beam``): the same call as an
  Apache Beam pipeline on the DirectRunner's N worker processes, which start
  Python, Beam and TensorFlow each and build their own tokenizer inside the
  timing (the launching process's is built before, as for the others). Beam on
  one machine is expected to be slower than the local command; the point of
  it is the cluster, and these rows say what the same code costs here.

Both build and trace the tokenizer before the clock starts (about 2-3 s, the
same for both; reported once). One more make-data run on the 1x corpus
(``cold``) times the build too, against tokenization plus its build: what a
user waits for, where make-data starts its workers while the tokenizer is
built. Besides wall time, the CPU time of the whole process tree is
reported: on a small shared machine it is the steadier figure.

Every measurement is made on the corpus and on the corpus repeated 8 times
(``--skip-8x`` leaves that out): the 1x figures include the fixed costs of a
run (starting workers, loading the compiled record encoder, about a second),
the 8x ones are the throughput a real corpus sees. Runs are interleaved
(each measurement once, then again) and every make-data run writes to a
fresh directory. Prints medians of ``--repeats`` runs and the ratios the
issue sets goals for: make-data within 2x of tokenization time, near-linear
in workers, peak memory for the 8x corpus at most 1.3x that of 1x.
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


def child_tokenize(corpus: Path, vocab_path: Path, threads: int) -> dict:
    """Tokenize every non-blank line in batches, as make-data does, on ``threads`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    import tensorflow  # noqa: F401

    from data.pretraining_data import _TOKENIZE_BATCH
    from data.textio import iter_lines

    lines = [line for line in iter_lines(corpus) if line.strip()]
    started = time.perf_counter()
    tokenize = _warm_tokenizer(vocab_path)
    setup = time.perf_counter() - started
    batches = [lines[start : start + _TOKENIZE_BATCH] for start in range(0, len(lines), _TOKENIZE_BATCH)]
    cpu, started = _tree_cpu(os.getpid()), time.perf_counter()
    with ThreadPoolExecutor(threads) as executor:
        tokens = sum(len(ids) for ids, _ in executor.map(tokenize, batches))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu": _tree_cpu(os.getpid()) - cpu, "setup": setup, "tokens": tokens}


def child_make_data_beam(corpus: Path, vocab_path: Path, workers: int, output: Path) -> dict:
    """One ``create_pretraining_data_beam`` call on the DirectRunner's ``workers`` processes."""
    import tensorflow  # noqa: F401

    from data.beam_pipeline import create_pretraining_data_beam
    from data.pretraining_data import PretrainingDataOptions

    _warm_tokenizer(vocab_path)
    options = PretrainingDataOptions(max_seq_length=128, dupe_factor=5)
    cpu, started = _tree_cpu(os.getpid()), time.perf_counter()
    report = create_pretraining_data_beam([corpus], vocab_path, output, options, workers=workers, overwrite=True)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu": _tree_cpu(os.getpid()) - cpu, "instances": report.instances}


def child_make_data(corpus: Path, vocab_path: Path, workers: int, output: Path, cold: bool = False) -> dict:
    """One ``create_pretraining_data`` call, the tokenizer built beforehand (unless ``cold``)."""
    import tensorflow  # noqa: F401

    from data.pretraining_data import PretrainingDataOptions, create_pretraining_data

    if not cold:
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
        [sys.executable, __file__, "--child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(process.pid))
        time.sleep(0.1)  # sampling costs CPU the run shares; 0.1 s is plenty for peaks
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
    parser.add_argument("--beam", action="store_true",
                        help="also make the data with --runner beam (the DirectRunner on each --workers)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, corpus, vocab = args.child[0], Path(args.child[1]), Path(args.child[2])
        if kind == "tokenize":
            result = child_tokenize(corpus, vocab, int(args.child[3]))
        elif kind == "beam":
            result = child_make_data_beam(corpus, vocab, int(args.child[3]), Path(args.child[5]))
        else:
            result = child_make_data(corpus, vocab, int(args.child[3]), Path(args.child[5]), args.child[4] == "cold")
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
        corpora = {"1x": args.corpus}
        if not args.skip_8x:
            corpora["8x"] = scratch / "corpus8x.txt"
            with open(corpora["8x"], "wb") as out:
                for _ in range(8):
                    out.write(args.corpus.read_bytes().rstrip(b"\n") + b"\n\n")
        plan = []  # (corpus, name, child arguments without the output directory)
        most = max(args.workers)
        for label, corpus in corpora.items():
            plan.append((label, "tokenize", ["tokenize", str(corpus), str(args.vocab), "1"]))
            if most > 1:
                plan.append((label, f"tokenize x{most}", ["tokenize", str(corpus), str(args.vocab), str(most)]))
            for workers in args.workers:
                plan.append((label, f"make-data --workers {workers}",
                             ["make-data", str(corpus), str(args.vocab), str(workers), "warm"]))
                if args.beam:
                    plan.append((label, f"beam --workers {workers}",
                                 ["beam", str(corpus), str(args.vocab), str(workers), "warm"]))
        # What a user waits for: the tokenizer build in the timing on both sides.
        plan.append(("1x", f"cold make-data --workers {most}",
                     ["make-data", str(args.corpus), str(args.vocab), str(most), "cold"]))
        # Interleaved (every measurement once, then again): the machine's
        # speed drifts, and each ratio should compare runs made close together.
        results: dict[tuple[str, str], list[dict]] = {(label, name): [] for label, name, _ in plan}
        for repeat in range(args.repeats):
            for label, name, child_args in plan:
                output = scratch / "out"  # fresh every run: deleting an old dataset is not timed
                if not name.startswith("tokenize"):
                    child_args = child_args + [str(output)]
                results[label, name].append(run_child(child_args))
                shutil.rmtree(output, ignore_errors=True)
                print(f"  run {repeat + 1}: {label} {name:<22} {results[label, name][-1]['seconds']:6.2f} s",
                      flush=True)

    summary = {key: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for key, runs in results.items()}
    print()
    print(f"(not timed: building and tracing the tokenizer, about {summary['1x', 'tokenize']['setup']:.1f} s "
          "per process, which make-data overlaps with starting its workers)")
    for label in corpora:
        tokenize = summary[label, "tokenize"]
        mb = size_mb * (8 if label == "8x" else 1)
        print(f"{label} corpus ({mb:.1f} MB): tokenization {tokenize['seconds']:.2f} s "
              f"{[round(r['seconds'], 2) for r in results[label, 'tokenize']]}, "
              f"{tokenize['tokens'] / tokenize['seconds']:,.0f} tokens/s")
        for workers in args.workers:
            key = (label, f"make-data --workers {workers}")
            run = summary[key]
            print(f"  make-data --workers {workers}: {run['seconds']:.2f} s "
                  f"{[round(r['seconds'], 2) for r in results[key]]}, "
                  f"{run['instances'] / run['seconds']:,.0f} instances/s, {mb / run['seconds']:.2f} MB/s; "
                  f"{run['seconds'] / tokenize['seconds']:.2f}x tokenization time (goal <= 2x), "
                  f"CPU {run['cpu'] / run['instances'] * 1e6:.1f} us per instance; "
                  f"peak RSS {run['peak_rss_mb']:,.0f} MB")
        for workers in args.workers if args.beam else ():
            beam, ours = summary[label, f"beam --workers {workers}"], summary[label, f"make-data --workers {workers}"]
            print(f"  make-data --runner beam --workers {workers} (DirectRunner): {beam['seconds']:.2f} s "
                  f"{[round(r['seconds'], 2) for r in results[label, f'beam --workers {workers}']]}, "
                  f"{beam['instances'] / beam['seconds']:,.0f} instances/s = {beam['seconds'] / ours['seconds']:.2f}x "
                  f"the local command's time, CPU {beam['cpu'] / beam['instances'] * 1e6:.1f} us per instance; "
                  f"peak RSS {beam['peak_rss_mb']:,.0f} MB")
        if most > 1:
            threaded = summary[label, f"tokenize x{most}"]
            print(f"  tokenization on {most} threads: {threaded['seconds']:.2f} s, "
                  f"{tokenize['seconds'] / threaded['seconds']:.2f}x one thread; make-data --workers {most} "
                  f"(which tokenizes on {most} threads) takes "
                  f"{summary[label, f'make-data --workers {most}']['seconds'] / threaded['seconds']:.2f}x its time")
        if len(args.workers) > 1:
            low, high = min(args.workers), max(args.workers)
            speedup = (summary[label, f"make-data --workers {low}"]["seconds"]
                       / summary[label, f"make-data --workers {high}"]["seconds"])
            print(f"  speed-up {low} -> {high} workers: {speedup:.2f}x on {os.cpu_count()} CPUs")
    cold, tokenize = summary["1x", f"cold make-data --workers {most}"], summary["1x", "tokenize"]
    print(f"1x with the tokenizer build timed on both sides (what a user waits for): tokenization "
          f"{tokenize['setup'] + tokenize['seconds']:.2f} s, make-data --workers {most} {cold['seconds']:.2f} s = "
          f"{cold['seconds'] / (tokenize['setup'] + tokenize['seconds']):.2f}x")
    if "8x" in corpora:
        workers = max(args.workers)
        small, big = summary["1x", f"make-data --workers {workers}"], summary["8x", f"make-data --workers {workers}"]
        print(f"peak RSS, --workers {workers}: 8x corpus {big['peak_rss_mb']:,.0f} MB = "
              f"{big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x the 1x run (goal <= 1.3x)")

if __name__ == "__main__":
    main()
