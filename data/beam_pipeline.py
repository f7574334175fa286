"""``bert make-data --runner beam``: the same pre-training records, made by an Apache Beam pipeline.

The local command (:mod:`data.pretraining_data`) is fast on one machine; a
corpus that outgrows one machine goes to an engine that already spreads work
over many: Beam runs this pipeline locally (the DirectRunner, several worker
processes) and on Dataflow, Flink or Spark, a change of pipeline options only.

Same records as the local command
---------------------------------
For the same seed, inputs, options and ``chunk_size_mb``, the pipeline makes
exactly the records the local command makes (as a multiset: which shard a
record lands in may differ), because both go through the same code:

* **Documents** are cut by :func:`data.pretraining_data.documents_of_lines`
  from each file read *whole* by one worker, as a stream, through Beam's file
  systems (local paths, ``gs://``..., ``.gz``). Files are never split, so no
  split point of any runner can cut a document: Beam only decides which
  worker reads which file.
* **Chunks** follow the local rule (:func:`data.pretraining_data.chunk_documents`)
  over the same document order. That rule runs down the whole corpus (a chunk
  may span files), so the pipeline first reads every file once for the sizes
  of its documents only, plans the chunks from the sizes in one step (a few
  integers per document), then reads every file again and sends each
  document to its chunk. Chunk ``i`` is the local command's chunk ``i``.
* **Examples**: each chunk is tokenized (:func:`data.pretraining_data.tokenize_chunk`)
  and turned into instances, masks and serialized ``tf.train.Example``s by
  :func:`data.pretraining_data.chunk_batches`, seeded from ``(seed, chunk
  index)``: the local command's code path and seeds.

Output
------
Records go through Beam's own TFRecord sink
(:class:`apache_beam.io.tfrecordio.WriteToTFRecord`) into a hidden staging
directory of ``--output`` as ``part-NNNNN-of-MMMMM.tfrecord[.gz]``. The
counts of the manifest (chunks, documents, sentences, tokens, instances, NSP
labels, the masked split) are summed by a Beam combiner as the chunks are made,
never by reading the records back; the records in each shard, which the sink
does not report, are counted from the shards' TFRecord frame headers (the
sum must equal the combiner's). The pipeline writes these counts to the staging
directory; when it has finished, the shards are moved into ``--output`` and
``manifest.json`` (the local command's fields) is written last, so nothing
half-written ever looks complete.

Every check the local command makes before its work (options, inputs, the
vocabulary, the output directory, and that the corpus has the documents
next-sentence prediction needs) is made here before the pipeline starts.

Limits: the chunk plan is made in one worker from one integer per document
(8 bytes a document: 800 MB for 100 million documents). The local default,
the DirectRunner's FnApiRunner, holds grouped data in the launching
process's memory, so it suits samples; clusters are for whole corpora. A
killed run leaves its staging directory; locally the next run removes it,
on a remote file system it stays until deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from data import pretraining_data as pd
from data import records
from data.errors import DataError
from data.textio import decompressed, expand_inputs, output_directories, stream_lines


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Keeps Beam's import from warning on stderr about Google Cloud clients this pipeline does not use.

    (Beam calls ``logging.warning``, which would also install a stderr
    handler on the root logger for good; errors must stay one line.)
    """
    root = logging.getLogger()
    guard, level = logging.NullHandler(), root.level
    root.addHandler(guard)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(guard)
        root.setLevel(level)


with _quiet_root_logger():
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.tfrecordio import WriteToTFRecord
    from apache_beam.metrics import Metrics
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

# What the pipeline leaves in its staging directory for the launching process.
COUNTS_NAME = "counts.json"
_COUNTS_TAG = "counts"
_METRICS = "bert make-data"
_OPTION_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class BeamInput:
    """An input file as the pipeline reads it: its name (a local path or a URL) and its size in bytes."""

    name: str
    bytes: int


# ---------------------------------------------------------------------------
# Reading: whole files, documents, chunks
# ---------------------------------------------------------------------------


def file_lines(name: str) -> Iterator[str]:
    """The lines of one input file through Beam's file systems, checked as the local command checks them."""
    try:
        raw = FileSystems.open(name, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as error:  # noqa: BLE001  each file system raises its own kind
        raise DataError(f"{name}: cannot be read ({error})") from None
    return stream_lines(decompressed(raw, name), name)


def chunk_plan(sizes_by_file: Iterable[tuple[int, np.ndarray]], chunk_chars: int) -> dict[int, list[tuple]]:
    """Which documents of each file go to which chunk, by the local command's rule.

    ``sizes_by_file`` holds ``(file index, [D] document sizes)`` in any order.
    Returns file index -> ``[(chunk index, first document, stop)]`` in file
    order: documents ``first`` to ``stop - 1`` of the file belong to that chunk.
    """
    ordered = sorted(sizes_by_file, key=lambda item: item[0])
    sizes = itertools.chain.from_iterable(file_sizes.tolist() for _, file_sizes in ordered)
    chunk_ends = np.cumsum([len(chunk) for chunk in pd.chunk_documents(sizes, chunk_chars, int)])  # [C]
    plan: dict[int, list[tuple]] = {}
    file_start, chunk = 0, 0  # the file's first document in the corpus; the chunk that holds it
    for index, file_sizes in ordered:
        file_stop, position, pieces = file_start + len(file_sizes), file_start, []
        while position < file_stop:
            stop = min(int(chunk_ends[chunk]), file_stop)
            pieces.append((chunk, position - file_start, stop - file_start))
            position = stop
            if stop == chunk_ends[chunk]:
                chunk += 1
        plan[index] = pieces
        file_start = file_stop
    return plan


class _DocumentSizes(beam.DoFn):
    """(file index, name) -> (file index, ``[D]`` int64 sizes of its documents, as chunking counts them)."""

    def __init__(self, input_format: str) -> None:
        self._input_format = input_format

    def process(self, element):
        index, name = element
        documents = pd.documents_of_lines(file_lines(name), self._input_format)
        yield index, np.fromiter((pd.document_chars(d) for d in documents), dtype=np.int64)


class _ChunkPieces(beam.DoFn):
    """(file index, name) -> (chunk index, (file index, first document, documents)) for each piece of the plan."""

    def __init__(self, input_format: str) -> None:
        self._input_format = input_format

    def process(self, element, plan):
        index, name = element
        documents = pd.documents_of_lines(file_lines(name), self._input_format)
        for chunk, first, stop in plan.get(index, []):
            piece = list(itertools.islice(documents, stop - first))
            if len(piece) != stop - first:
                raise DataError(f"{name}: changed while the pipeline read it; run again on files that stay put")
            yield chunk, (index, first, piece)
        if next(documents, None) is not None:
            raise DataError(f"{name}: changed while the pipeline read it; run again on files that stay put")


class ReadChunks(beam.PTransform):
    """(file index, file name) -> (chunk index, pieces): the local command's chunks, documents never cut.

    A chunk's pieces are ``(file index, first document, documents)`` in no
    particular order; sorted by their first two fields and joined, they are
    the chunk's documents in corpus order.
    """

    def __init__(self, input_format: str, chunk_chars: int) -> None:
        super().__init__()
        self._input_format = input_format
        self._chunk_chars = chunk_chars

    def expand(self, files):
        sizes = files | "Document sizes" >> beam.ParDo(_DocumentSizes(self._input_format))
        plan = sizes | "All sizes" >> beam.combiners.ToList() | "Plan chunks" >> beam.Map(chunk_plan, self._chunk_chars)
        pieces = files | "Cut documents" >> beam.ParDo(_ChunkPieces(self._input_format), beam.pvalue.AsSingleton(plan))
        return pieces | "Gather chunks" >> beam.GroupByKey()


def chunk_text(pieces: Iterable[tuple]) -> list[list[str]]:
    """A chunk's documents in corpus order, from its pieces (see :class:`ReadChunks`)."""
    ordered = sorted(pieces, key=lambda piece: piece[:2])
    return [document for _, _, documents in ordered for document in documents]


# ---------------------------------------------------------------------------
# Examples and counts
# ---------------------------------------------------------------------------


class _MakeExamples(beam.DoFn):
    """(chunk index, pieces) -> serialized examples; the chunk's counts on the ``counts`` output.

    Each worker builds the TensorFlow tokenizer once (``setup``); the
    vocabulary travels with the DoFn, so workers need no access to the
    launching machine's files.
    """

    def __init__(self, options: pd.PretrainingDataOptions, vocab, lowercase: bool, corpus: str) -> None:
        self._options = options
        self._vocab = vocab
        self._lowercase = lowercase
        self._corpus = corpus
        self._documents = Metrics.counter(_METRICS, "documents")
        self._instances = Metrics.counter(_METRICS, "instances")

    def setup(self) -> None:
        self._tokenize = pd._tokenizer_for(self._vocab, self._lowercase)
        self._ids = pd.VocabularyIds.from_vocabulary(self._vocab)

    def process(self, element):
        index, pieces = element
        chunk = pd.tokenize_chunk(index, chunk_text(pieces), self._tokenize)
        if self._options.next_sentence_prediction and chunk.num_documents < 2:
            raise pd.too_few_documents(self._corpus, chunk.num_documents)
        stats = pd.MaskingStats()
        for features, batch_stats in pd.chunk_batches(chunk, self._options, self._ids):
            blob, lengths = records.encode_examples(features)
            yield from records.split_blob(blob, lengths)
            stats.add(batch_stats)
        self._documents.inc(chunk.num_documents)
        self._instances.inc(stats.instances)
        counts = dict(chunks=1, documents=chunk.num_documents, sentences=chunk.num_sentences, tokens=len(chunk.tokens))
        yield beam.pvalue.TaggedOutput(_COUNTS_TAG, {**counts, **dataclasses.asdict(stats)})


class _SumCounts(beam.CombineFn):
    """Sums dicts of counts (the per-chunk counts of :class:`_MakeExamples`)."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, counts):
        for name, value in counts.items():
            accumulator[name] = accumulator.get(name, 0) + value
        return accumulator

    def merge_accumulators(self, accumulators):
        total: dict = {}
        for accumulator in accumulators:
            self.add_input(total, accumulator)
        return total

    def extract_output(self, accumulator):
        return accumulator


def count_framed_records(stream) -> int:
    """Records in an open TFRecord stream, from the frame headers (the payloads are skipped)."""
    count = 0
    while True:
        header = stream.read(12)  # uint64 length, uint32 masked CRC of the length
        if len(header) < 12:
            return count
        stream.seek(int.from_bytes(header[:8], "little") + 4, os.SEEK_CUR)  # the data and its CRC
        count += 1


def _shard_entry(name: str) -> tuple[str, int, int]:
    """(file name, records, bytes) of one written shard."""
    raw = FileSystems.open(name, compression_type=CompressionTypes.UNCOMPRESSED)
    with raw, decompressed(raw, name) as stream:
        count = count_framed_records(stream)
    size = FileSystems.match([name])[0].metadata_list[0].size_in_bytes
    return FileSystems.split(name)[1], count, size


def _write_counts(shards: list, counts: dict, path: str) -> None:
    """The pipeline's last step: its counts and the shards it wrote, for the launching process."""
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(json.dumps({"counts": counts, "shards": sorted(shards)}).encode("utf-8"))


def build_pipeline(
    pipeline,
    files: Sequence[str],
    staging: str,
    options: pd.PretrainingDataOptions,
    vocab,
    lowercase: bool,
    num_shards: int,
    compression: str,
) -> None:
    """Adds the whole job to ``pipeline``: files -> chunks -> examples -> shards and counts in ``staging``."""
    chunk_chars = max(1, round(options.chunk_size_mb * pd._MB))
    named = (
        pipeline
        | "Files" >> beam.Create(list(enumerate(files)))
        | "Spread files" >> beam.Reshuffle()  # one file per worker, not all on the one that created them
    )
    chunks = named | "Read chunks" >> ReadChunks(options.input_format, chunk_chars)
    made = chunks | "Make examples" >> beam.ParDo(
        _MakeExamples(options, vocab, lowercase, pd.corpus_name(files))
    ).with_outputs(_COUNTS_TAG, main="records")
    written = made.records | "Write shards" >> WriteToTFRecord(
        FileSystems.join(staging, "part"),
        file_name_suffix=".tfrecord.gz" if compression == "gzip" else ".tfrecord",
        num_shards=num_shards,
        shard_name_template="-SSSSS-of-NNNNN",
        compression_type=CompressionTypes.GZIP if compression == "gzip" else CompressionTypes.UNCOMPRESSED,
    )
    counts = made[_COUNTS_TAG] | "Sum counts" >> beam.CombineGlobally(_SumCounts())
    shards = written | "Count shard records" >> beam.Map(_shard_entry) | "All shards" >> beam.combiners.ToList()
    _ = shards | "Write counts" >> beam.Map(
        _write_counts, beam.pvalue.AsSingleton(counts), FileSystems.join(staging, COUNTS_NAME)
    )


# ---------------------------------------------------------------------------
# Before the pipeline: inputs, corpus, options
# ---------------------------------------------------------------------------


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL of a Beam file system (``gs://``, ``s3://``...) rather than a local path."""
    return "://" in os.fspath(path)


def expand_beam_inputs(patterns: Sequence[str | os.PathLike]) -> list[BeamInput]:
    """Files and globs, local or on Beam's file systems, as an ordered list without duplicates.

    Local patterns only: exactly the local command's :func:`data.textio.expand_inputs`.
    """
    if not any(is_remote(pattern) for pattern in patterns):
        return [BeamInput(str(path), path.stat().st_size) for path in expand_inputs(patterns)]
    found: dict[str, BeamInput] = {}
    for pattern in patterns:
        if not is_remote(pattern):
            matches = [BeamInput(str(path), path.stat().st_size) for path in expand_inputs([pattern])]
        else:
            try:
                metadata = FileSystems.match([os.fspath(pattern)])[0].metadata_list
            except Exception as error:  # noqa: BLE001  BeamIOError, or a file system's own
                raise DataError(f"{pattern}: cannot be listed ({error})") from None
            matches = sorted((BeamInput(m.path, m.size_in_bytes) for m in metadata), key=lambda i: i.name)
            if not matches:
                glob = set("*?[") & set(os.fspath(pattern))
                raise DataError(f"{pattern}: {'no file matches this pattern' if glob else 'no such file'}")
        for match in matches:
            found.setdefault(match.name, match)
    return list(found.values())


def check_documents(files: Sequence[str], options: pd.PretrainingDataOptions, tokenize) -> None:
    """The local command's "no text" / "only one document" errors, before the pipeline starts.

    Reads documents from the start of the corpus until it has found as many
    with tokens as next-sentence prediction needs (two; one without it):
    a real corpus costs its first few documents, an empty one little more.
    """
    needed, found = (2 if options.next_sentence_prediction else 1), 0
    for name in files:
        with contextlib.closing(file_lines(name)) as lines:
            for document in pd.documents_of_lines(lines, options.input_format):
                found += _has_tokens(document, tokenize)
                if found >= needed:
                    return
    raise pd.too_few_documents(pd.corpus_name(files), found)


def _has_tokens(document: Sequence[str], tokenize) -> bool:
    """Whether any sentence of ``document`` tokenizes to something (the local command keeps only those)."""
    for start in range(0, len(document), pd._TOKENIZE_BATCH):
        _, lengths = tokenize(list(document[start : start + pd._TOKENIZE_BATCH]))
        if np.any(np.asarray(lengths) > 0):
            return True
    return False


def pipeline_options(workers: int, beam_option: Sequence[str]) -> PipelineOptions:
    """The options of the run: every ``KEY[=VALUE]`` of ``beam_option``, as Beam's own ``--KEY=VALUE`` flags.

    Without a ``runner`` among them, the run is local: the DirectRunner's
    multi-process engine on ``workers`` processes (0: in this one), its
    workers' log held back (see :func:`_run`). Naming a runner (and its project,
    region, temp_location...) moves the same pipeline to a cluster.
    """
    flags = []
    for item in beam_option:
        key, equals, value = item.removeprefix("--").partition("=")
        if not _OPTION_KEY.fullmatch(key):
            raise DataError(
                f"--beam-option {item}: expected KEY=VALUE (or KEY for a flag), a Beam pipeline option such as "
                "runner=DataflowRunner"
            )
        flags.append(f"--{key}={value}" if equals else f"--{key}")
    if PipelineOptions(flags).view_as(StandardOptions).runner is None:
        local = [
            f"--direct_running_mode={'multi_processing' if workers > 0 else 'in_memory'}",
            f"--direct_num_workers={max(1, workers)}",
            "--default_sdk_harness_log_level=CRITICAL",
        ]
        flags = local + flags  # a later flag wins: the user's
    return PipelineOptions(flags)


def local_runner(options: PipelineOptions):
    """The runner for options that name none: the engine of Beam's DirectRunner (the FnApiRunner), by name.

    Beam 2.77's ``DirectRunner`` first tries to download and start Prism, a
    separate runner that ignores ``direct_num_workers``; asking for its
    FnApiRunner directly keeps a local run offline and on that many worker
    processes. The options go to the workers as the DirectRunner sends them.
    """
    if options.view_as(StandardOptions).runner is not None:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(provision))


def runner_name(options: PipelineOptions) -> str:
    """The runner the options select, as a person reads it (``DirectRunner (4 worker processes)``)."""
    runner = options.view_as(StandardOptions).runner
    if runner is not None:
        return runner if isinstance(runner, str) else type(runner).__name__
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode != "multi_processing":
        return f"DirectRunner ({direct.direct_running_mode}, in this process)"
    return f"DirectRunner ({direct.direct_num_workers} worker processes)"


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def create_pretraining_data_beam(
    inputs: Sequence[str | os.PathLike],
    vocab_path: str | os.PathLike,
    output: str | os.PathLike,
    options: pd.PretrainingDataOptions = pd.PretrainingDataOptions(),
    *,
    lowercase: bool | None = None,
    num_shards: int = 1,
    compression: str = "none",
    workers: int = 1,
    beam_option: Sequence[str] = (),
    overwrite: bool = False,
    on_start: Callable[[str], None] | None = None,
) -> pd.PretrainingDataReport:
    """:func:`data.pretraining_data.create_pretraining_data` as a Beam pipeline: the same records and manifest.

    Args:
        inputs: Text files or globs (plain or .gz, UTF-8), local or on a Beam file system (``gs://...``).
        vocab_path: The local ``vocab.txt``; its tokens travel with the pipeline to the workers.
        output: Directory for the shards and ``manifest.json``, local or on a Beam file system.
        options, lowercase, num_shards, compression, overwrite: As for the local command.
        workers: DirectRunner worker processes (0: in this process); other runners ignore it.
        beam_option: ``KEY=VALUE`` pipeline options, after (so over) the DirectRunner defaults.
        on_start: Told the runner's name once every check has passed, as the pipeline starts.

    Raises:
        DataError: for anything the local command refuses, before the pipeline starts; for
            bad input found by a worker (a file that is not UTF-8 further on), when the pipeline fails.
    """
    started = time.perf_counter()
    pd._check_run_arguments(options, num_shards, workers, compression)
    beam_options = pipeline_options(workers, beam_option)
    files = expand_beam_inputs(inputs)
    names = [file.name for file in files]
    vocab, lowercase = pd._load_vocabulary(vocab_path, lowercase)
    identity = pd._dataset_identity(names, options, vocab, lowercase, num_shards, compression)
    place = _Place.check(output, identity, overwrite)
    check_documents(names, options, pd._tokenizer_for(vocab, lowercase))
    with place.prepared():
        if on_start is not None:
            on_start(runner_name(beam_options))
        runner = local_runner(beam_options)
        pipeline = beam.Pipeline(runner=runner, options=beam_options)
        build_pipeline(pipeline, names, place.staging, options, vocab, lowercase, num_shards, compression)
        _run(pipeline, local=runner is not None)
        counts, shards = place.publish(num_shards, compression)
        report = _report(place, files, counts, shards, options, lowercase, time.perf_counter() - started)
        place.write_manifest(pd.manifest_fields(report, identity, vocab, [(f.name, f.bytes) for f in files], shards))
    return report


def _report(
    place: "_Place",
    files: Sequence[BeamInput],
    counts: dict,
    shards: Sequence[tuple],
    options,
    lowercase: bool,
    seconds: float,
) -> pd.PretrainingDataReport:
    """The local command's report, from the pipeline's counts and the shards it wrote."""
    stats = pd.MaskingStats(**{f.name: counts.get(f.name, 0) for f in dataclasses.fields(pd.MaskingStats)})
    return pd.PretrainingDataReport(
        output=place.report_path(),
        manifest=place.report_path(records.MANIFEST_NAME),
        shards=tuple(place.report_shard(name) for name, _, _ in shards),
        shard_counts=tuple(count for _, count, _ in shards),
        files=len(files),
        input_bytes=sum(file.bytes for file in files),
        chunks=counts.get("chunks", 0),
        documents=counts.get("documents", 0),
        sentences=counts.get("sentences", 0),
        tokens=counts.get("tokens", 0),
        stats=stats,
        options=options,
        lowercase=lowercase,
        seconds=seconds,
        warnings=tuple(pd._masking_warnings(options)),
    )


def _run(pipeline, local: bool) -> None:
    """Runs the pipeline to its end; a DataError a worker raised comes back as a DataError (one line)."""
    try:
        with _quiet_local_run() if local else contextlib.nullcontext():
            pipeline.run().wait_until_finish()
    except DataError as error:  # a run in this process re-raises the worker's own exception, step appended
        raise DataError(_without_step(str(error))) from error
    except Exception as error:
        message = worker_data_error(str(error))
        if message is None:
            raise
        raise DataError(message) from error


@contextlib.contextmanager
def _quiet_local_run() -> Iterator[None]:
    """Holds Beam's own log back during a local run (a cluster run logs as Beam does).

    Beam logs every failed bundle with its traceback before the run fails;
    the failure comes back to :func:`_run` anyway, traceback included.
    """
    logger = logging.getLogger("apache_beam")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_WORKER_DATA_ERROR = re.compile(r"(?m)^data\.errors\.DataError: (.+)$")


def worker_data_error(text: str) -> str | None:
    """The message of the last DataError in a worker's traceback (the runner's error text), else None."""
    found = _WORKER_DATA_ERROR.findall(text)
    return _without_step(found[-1]) if found else None


def _without_step(message: str) -> str:
    """A worker's error message without the `` [while running 'step']`` Beam appends."""
    return re.sub(r" \[while running '[^']*'\]$", "", message.strip())


@dataclasses.dataclass
class _Place:
    """Where the dataset goes: ``--output`` (local or a URL), its hidden staging directory, the shards there before."""

    output: str | os.PathLike
    directory: str  # output as the pipeline names it (absolute, for a local one)
    staging: str
    old_shards: list[str]

    @classmethod
    def check(cls, output: str | os.PathLike, identity: dict, overwrite: bool) -> "_Place":
        """Refuses an output holding another dataset (as the local command does); nothing is written yet."""
        if not is_remote(output):
            old = pd._check_output(Path(output), identity, overwrite)
            directory = str(Path(output).resolve())
            return cls(output, directory, os.path.join(directory, f".beam-{os.getpid()}"), [str(p) for p in old])
        directory = os.fspath(output).rstrip("/")
        manifest = FileSystems.join(directory, records.MANIFEST_NAME)
        try:
            matched = FileSystems.match([FileSystems.join(directory, "part-*")])[0].metadata_list
            read = (lambda: _read(manifest)) if FileSystems.exists(manifest) else None
        except Exception as error:  # noqa: BLE001  BeamIOError, or a file system's own (no access, no bucket)
            raise DataError(f"--output {output}: cannot be listed ({error})") from None
        old = sorted(m.path for m in matched if records.is_shard_name(FileSystems.split(m.path)[1]))
        pd.check_replaceable(output, identity, overwrite, read, [FileSystems.split(p)[1] for p in old])
        return cls(output, directory, FileSystems.join(directory, f".beam-{uuid.uuid4().hex}"), old)

    @contextlib.contextmanager
    def prepared(self) -> Iterator[None]:
        """Makes a local output directory (checked writable, leftovers of killed runs removed);
        removes the staging directory at the end, and on failure the directories it made."""
        local = not is_remote(self.output)
        with output_directories(self.output) if local else contextlib.nullcontext():
            if local:
                pd._make_output_directory(Path(self.output))
            try:
                yield
            finally:
                _remove_directory(self.staging)

    def publish(self, num_shards: int, compression: str) -> tuple[dict, list[tuple[str, int, int]]]:
        """Moves the staged shards into the output (old ones no longer named are deleted); the pipeline's counts."""
        result = json.loads(_read(FileSystems.join(self.staging, COUNTS_NAME)))
        counts, shards = result["counts"], [tuple(shard) for shard in result["shards"]]
        names = [name for name, _, _ in shards]
        if names != [records.shard_name(i, num_shards, compression) for i in range(num_shards)]:
            raise RuntimeError(f"the TFRecord sink wrote {names}, not {num_shards} shards named as ours")
        if sum(count for _, count, _ in shards) != counts.get("instances", 0):
            raise RuntimeError(
                f"the shards hold {sum(c for _, c, _ in shards)} records, the pipeline made "
                f"{counts.get('instances', 0)}"
            )
        manifest = FileSystems.join(self.directory, records.MANIFEST_NAME)
        if FileSystems.exists(manifest):  # the old dataset stops looking complete before its shards are replaced
            FileSystems.delete([manifest])
        FileSystems.rename(
            [FileSystems.join(self.staging, n) for n in names], [FileSystems.join(self.directory, n) for n in names]
        )
        stale = [path for path in self.old_shards if FileSystems.split(path)[1] not in names]
        if stale:
            FileSystems.delete(stale)
        return counts, shards

    def write_manifest(self, manifest: dict) -> None:
        """Written last, into staging and then renamed: a directory with a manifest holds a complete dataset."""
        staged = FileSystems.join(self.staging, records.MANIFEST_NAME)
        with FileSystems.create(staged, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write((json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        FileSystems.rename([staged], [FileSystems.join(self.directory, records.MANIFEST_NAME)])

    def report_path(self, name: str | None = None):
        """The output, or a file in it, for the report: a Path for a local output, else the URL."""
        if not is_remote(self.output):
            return Path(self.output) if name is None else Path(self.output) / name
        return self.directory if name is None else FileSystems.join(self.directory, name)

    def report_shard(self, name: str):
        """A shard for the report, whose ``.name`` is the file's: a Path, or the URL as a PurePosixPath."""
        path = self.report_path(name)
        return path if isinstance(path, Path) else PurePosixPath(path)


def _remove_directory(path: str) -> None:
    """Deletes a directory and all in it, if it is there (a local one, or a prefix of a Beam file system)."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
    elif FileSystems.match([path.rstrip("/") + "/*"])[0].metadata_list:
        FileSystems.delete([path.rstrip("/") + "/"])


def _read(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()
