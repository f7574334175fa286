"""What resuming pre-training costs: reading past the records a killed run already used.

``bert pretrain`` resumes exactly by skipping, in the serialized-record stream
after the shuffle buffer, the records the interrupted run consumed (nothing
is parsed). This times the first batch of ``data.pretraining_input.pretraining_dataset``
with ``skip_records`` 0 and N on the records of a ``bert make-data`` directory
(repeated as training repeats them), median of ``--repeats``.

    .venv/bin/python benchmarks/resume_skip.py RECORDS_DIR [--skip 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def first_batch_seconds(files, manifest, skip: int, batch: int) -> float:
    from data.pretraining_input import pretraining_dataset

    started = time.perf_counter()
    dataset = pretraining_dataset(files, manifest["max_seq_length"], manifest["max_predictions_per_seq"], batch,
                                  next_sentence=manifest["next_sentence_prediction"], skip_records=skip)
    next(iter(dataset))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", type=Path)
    parser.add_argument("--skip", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from data.records import find_record_files

    files, manifest = find_record_files([args.records])
    files = [str(f) for f in files]
    skip = args.skip // args.batch * args.batch
    fresh = statistics.median(first_batch_seconds(files, manifest, 0, args.batch) for _ in range(args.repeats))
    resumed = statistics.median(first_batch_seconds(files, manifest, skip, args.batch) for _ in range(args.repeats))
    print(f"{len(files)} file(s), T={manifest['max_seq_length']}; first batch: fresh {fresh:.2f} s, "
          f"after skipping {skip:,} records {resumed:.2f} s; "
          f"{(resumed - fresh) / skip * 1e6:.1f} s per million records skipped (median of {args.repeats})")


if __name__ == "__main__":
    main()
