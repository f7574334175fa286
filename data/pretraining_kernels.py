"""Compiled kernels for ``bert make-data``: making instances and masking them.

:mod:`data.pretraining_data` describes the algorithm (the original's); these
are its two inner loops, compiled by numba, so that a worker spends its time
on the few arithmetic operations each token needs rather than on the Python
interpreter (instance creation was about 4 us an instance in Python, masking
with numpy about 6 us; here both together take well under 1 us).

* :func:`make_instances` cuts a chunk's documents into instances with the
  random draws of a Python ``random.Random``, draw for draw: the kernel runs
  the same Mersenne Twister (MT19937) on a copy of the generator's state and
  hands the state back, so ``shuffle``, ``random()``, ``randint`` and
  ``getrandbits`` give exactly what CPython gives (a test compares them).
  This keeps instance creation comparable, draw for draw, with a plain
  transcription of the original script.
* :func:`mask` places ``[CLS] A [SEP] B [SEP]``, builds the masks and chooses
  and replaces the predicted positions, row by row, with its own small
  generator (SplitMix64) seeded from the chunk's numpy generator.

Integers are kept in int64 (MT19937's 32-bit words) or uint64 (SplitMix64)
throughout: numba turns a mix of signed and unsigned 64-bit values into floats.
"""

from __future__ import annotations

import random

import numba
import numpy as np

# ---------------------------------------------------------------------------
# MT19937, as CPython's random module runs it
# ---------------------------------------------------------------------------

_N, _M = 624, 397
_MATRIX_A = 0x9908B0DF
_UPPER, _LOWER = 0x80000000, 0x7FFFFFFF


@numba.njit(cache=True, nogil=True)
def _next32(state, position):  # pragma: no cover - compiled
    """The next 32-bit output; ``state`` int64 ``[624]`` words, ``position[0]`` the index of the next word."""
    i = position[0]
    if i >= _N:  # regenerate all 624 words, in place and in order (as genrand_uint32 does)
        for k in range(_N):
            y = (state[k] & _UPPER) | (state[(k + 1) % _N] & _LOWER)
            value = state[(k + _M) % _N] ^ (y >> 1)
            if y & 1:
                value ^= _MATRIX_A
            state[k] = value
        i = 0
    y = state[i]
    position[0] = i + 1
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y & 0xFFFFFFFF


@numba.njit(cache=True, nogil=True)
def _uniform(state, position):  # pragma: no cover - compiled
    """``random.random()``: 53 bits from two outputs."""
    a = _next32(state, position) >> 5
    b = _next32(state, position) >> 6
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True)
def _bits(state, position, k):  # pragma: no cover - compiled
    """``random.getrandbits(k)`` for ``0 <= k <= 32`` (0 draws nothing)."""
    if k == 0:
        return 0
    return _next32(state, position) >> (32 - k)


@numba.njit(cache=True, nogil=True)
def _below(state, position, n):  # pragma: no cover - compiled
    """``random.randrange(n)`` (and ``randint(0, n - 1)``): CPython's rejection loop, n >= 1."""
    k = 0
    while (n >> k) > 0:  # n.bit_length()
        k += 1
    r = _bits(state, position, k)
    while r >= n:
        r = _bits(state, position, k)
    return r


def _state_of(rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """A Random's MT19937 state as the kernels take it: words ``[624]`` int64 and ``[1]`` position."""
    version, internal, _ = rng.getstate()
    if version != 3 or len(internal) != _N + 1:
        raise ValueError("unsupported random.Random state")
    return np.array(internal[:_N], dtype=np.int64), np.array([internal[_N]], dtype=np.int64)


def _give_back(rng: random.Random, words: np.ndarray, position: np.ndarray) -> None:
    """Puts the kernel's state back into ``rng``, as if it had made the draws itself."""
    version, _, gauss = rng.getstate()
    rng.setstate((version, tuple(int(w) for w in words) + (int(position[0]),), gauss))


@numba.njit(cache=True, nogil=True)
def _python_draws(state, position, kinds, arguments):  # pragma: no cover - compiled
    """Test hook: draw ``kinds[i]`` (0 random, 1 getrandbits, 2 randrange) with ``arguments[i]``."""
    out = np.empty(len(kinds), dtype=np.float64)
    for i in range(len(kinds)):
        if kinds[i] == 0:
            out[i] = _uniform(state, position)
        elif kinds[i] == 1:
            out[i] = _bits(state, position, arguments[i])
        else:
            out[i] = _below(state, position, arguments[i])
    return out


def python_draws(rng: random.Random, kinds: np.ndarray, arguments: np.ndarray) -> np.ndarray:
    """The kernel's ``random()`` / ``getrandbits(k <= 32)`` / ``randrange(n)`` draws on ``rng``'s stream.

    For tests: they must equal what ``rng`` itself draws.
    """
    words, position = _state_of(rng)
    out = _python_draws(words, position, np.asarray(kinds, np.int64), np.asarray(arguments, np.int64))
    _give_back(rng, words, position)
    return out


# ---------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _first_reaching(offsets, value, lo, hi):  # pragma: no cover - compiled
    """``bisect_left(offsets, value, lo, hi)``: the first ``i`` in ``[lo, hi)`` with ``offsets[i] >= value``,
    else ``hi``."""
    while lo < hi:
        middle = (lo + hi) >> 1
        if offsets[middle] < value:
            lo = middle + 1
        else:
            hi = middle
    return lo


@numba.njit(cache=True, nogil=True)
def _make_instances(
    state, position, offsets, documents, max_num_tokens, short_seq_prob, dupe_factor, pairs
):  # pragma: no cover - compiled
    """See :func:`make_instances`. Returns ``[M, 5]`` int64."""
    count = len(documents) - 1
    order = np.arange(count)
    for i in range(count - 1, 0, -1):  # random.shuffle
        j = _below(state, position, i + 1)
        order[i], order[j] = order[j], order[i]
    # Each instance uses at least one sentence of its document's pass.
    out = np.empty((max(1, dupe_factor * (len(offsets) - 1)), 5), dtype=np.int64)
    made = 0
    for _ in range(dupe_factor):
        for place in range(count):
            document = order[place]
            first, last = documents[document], documents[document + 1]
            # Usually fill the sequence; sometimes (for the whole document) aim shorter.
            target = max_num_tokens
            if _uniform(state, position) < short_seq_prob:
                target = 2 + _below(state, position, max_num_tokens - 1)  # randint(2, max_num_tokens)
            start = first
            while start < last:
                # Sentences start..end-1: up to the first that reaches the target, or the document's end.
                end = _first_reaching(offsets, offsets[start] + target, start + 1, last)
                if not pairs:
                    lo, hi = offsets[start], offsets[end]
                    excess = hi - lo - max_num_tokens
                    if excess > 0:  # cut from front or back at random, token by token
                        front = 0
                        for word in range((excess + 31) >> 5):
                            width = min(32, excess - 32 * word)
                            bits = _bits(state, position, width)
                            while bits:
                                front += bits & 1
                                bits >>= 1
                        lo, hi = lo + front, hi - (excess - front)
                    out[made, 0], out[made, 1], out[made, 2], out[made, 3], out[made, 4] = lo, hi, hi, hi, 0
                    made += 1
                    start = end
                    continue
                gathered = end - start
                a_end = start + 1 + _below(state, position, gathered - 1) if gathered >= 2 else start + 1
                a_lo, a_hi = offsets[start], offsets[a_end]
                if gathered == 1 or _uniform(state, position) < 0.5:
                    label = 1
                    for _ in range(10):  # another document (rarely needs a second draw)
                        other = _below(state, position, count)
                        if other != place:
                            break
                    other = order[other]
                    other_first, other_last = documents[other], documents[other + 1]
                    j = other_first + _below(state, position, other_last - other_first)
                    b_lo = offsets[j]
                    # Sentences j.. until B reaches what A left of the target, or the document ends.
                    b_hi = offsets[_first_reaching(offsets, b_lo + target - (a_hi - a_lo), j + 1, other_last)]
                    end = a_end  # B did not use the rest of the gathered sentences: put them back
                else:
                    label = 0
                    b_lo, b_hi = a_hi, offsets[end]
                excess = a_hi - a_lo + b_hi - b_lo - max_num_tokens
                if excess > 0:
                    # Token by token from the longer segment (B when equal), front or back
                    # by the bits of one getrandbits(excess): bit t for the t-th token.
                    a_length, b_length = a_hi - a_lo, b_hi - b_lo
                    word = 0
                    for t in range(excess):
                        if t & 31 == 0:
                            word = _bits(state, position, min(32, excess - t))
                        front = (word >> (t & 31)) & 1
                        if a_length > b_length:
                            a_length -= 1
                            if front:
                                a_lo += 1
                            else:
                                a_hi -= 1
                        else:
                            b_length -= 1
                            if front:
                                b_lo += 1
                            else:
                                b_hi -= 1
                out[made, 0], out[made, 1], out[made, 2], out[made, 3], out[made, 4] = a_lo, a_hi, b_lo, b_hi, label
                made += 1
                start = end
    return out[:made].copy()


def make_instances(
    rng: random.Random,
    sentence_offsets: np.ndarray,
    document_offsets: np.ndarray,
    max_num_tokens: int,
    short_seq_prob: float,
    dupe_factor: int,
    pairs: bool,
) -> np.ndarray:
    """All instances of a chunk as ``[M, 5]`` int64 rows ``(a_lo, a_hi, b_lo, b_hi, label)``.

    Spans index the chunk's token array; without ``pairs`` B is empty
    (``b_lo == b_hi == a_hi``) and the label 0. ``rng`` draws as the Python
    loop would have and is left in the state that loop would have left it in.
    """
    words, position = _state_of(rng)
    instances = _make_instances(
        words, position, np.ascontiguousarray(sentence_offsets, dtype=np.int64),
        np.ascontiguousarray(document_offsets, dtype=np.int64), int(max_num_tokens), float(short_seq_prob),
        int(dupe_factor), bool(pairs),
    )
    _give_back(rng, words, position)
    return instances


# ---------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


@numba.njit(cache=True, nogil=True, inline="always")
def _splitmix(state):  # pragma: no cover - compiled
    """SplitMix64: the next 64-bit output; ``state`` is a uint64 ``[1]``."""
    z = state[0] + _GOLDEN
    state[0] = z
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True, nogil=True, inline="always")
def _fraction(state):  # pragma: no cover - compiled
    """Uniform in [0, 1) with 53 bits."""
    return np.float64(_splitmix(state) >> _S11) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _index(state, n):  # pragma: no cover - compiled
    """Uniform in ``[0, n)`` for ``n < 2**31`` (bias below 2**-22 of a count: none that matters)."""
    return min(np.int64(_fraction(state) * n), n - 1)


@numba.njit(cache=True, nogil=True)
def _mask(
    tokens, instances, wanted, T, P, whole_word, continuation, pad_id, cls_id, sep_id, mask_id, vocab_size, seed
):  # pragma: no cover - compiled
    """See :func:`mask`. Shapes: N instances, T = max_seq_length, P = max_predictions_per_seq."""
    rows = instances.shape[0]
    ids = np.full((rows, T), pad_id, dtype=np.int32)
    input_mask = np.zeros((rows, T), dtype=np.bool_)
    segment_ids = np.zeros((rows, T), dtype=np.bool_)
    positions = np.zeros((rows, P), dtype=np.int32)
    originals = np.zeros((rows, P), dtype=np.int32)
    weights = np.zeros((rows, P), dtype=np.float32)
    counts = np.zeros(3, dtype=np.int64)  # [MASK], kept, random token
    state = np.array([seed], dtype=np.uint64)
    candidates = np.empty(T, dtype=np.int64)  # text positions (not [CLS]/[SEP]/padding)
    word_start = np.empty(T, dtype=np.int64)
    word_size = np.empty(T, dtype=np.int64)
    chosen = np.zeros(T, dtype=np.bool_)
    for r in range(rows):
        a_lo, a_hi, b_lo, b_hi = instances[r, 0], instances[r, 1], instances[r, 2], instances[r, 3]
        # [CLS] A [SEP] B [SEP] (B and its [SEP] only for pairs), segment ids 1 from B on.
        ids[r, 0] = cls_id
        at = 1
        n = 0
        for i in range(a_lo, a_hi):
            ids[r, at] = tokens[i]
            candidates[n] = at
            n += 1
            at += 1
        ids[r, at] = sep_id
        at += 1
        if b_hi > b_lo:
            for i in range(b_lo, b_hi):
                ids[r, at] = tokens[i]
                segment_ids[r, at] = True
                candidates[n] = at
                n += 1
                at += 1
            ids[r, at] = sep_id
            segment_ids[r, at] = True
            at += 1
        for i in range(at):
            input_mask[r, i] = True
        want = wanted[r]
        chosen[:at] = False
        if whole_word:
            # Words: a piece and the "##" pieces right after it (never across [SEP]).
            words = 0
            for c in range(n):
                p = candidates[c]
                if words > 0 and continuation[ids[r, p]] and p - 1 == candidates[c - 1]:
                    word_size[words - 1] += 1
                else:
                    word_start[words] = p
                    word_size[words] = 1
                    words += 1
            # Visit words in a random order (Fisher-Yates as we go); take a word
            # that fits in what is still wanted, skip one that does not.
            taken = 0
            for w in range(words):
                if taken >= want:
                    break
                k = w + _index(state, words - w)
                word_start[w], word_start[k] = word_start[k], word_start[w]
                word_size[w], word_size[k] = word_size[k], word_size[w]
                if taken + word_size[w] > want:
                    continue
                for p in range(word_start[w], word_start[w] + word_size[w]):
                    chosen[p] = True
                taken += word_size[w]
        else:
            for c in range(min(want, n)):  # the first ``want`` of a random order of the candidates
                k = c + _index(state, n - c)
                candidates[c], candidates[k] = candidates[k], candidates[c]
                chosen[candidates[c]] = True
        # Predictions in position order; 80 % [MASK], 10 % kept, 10 % a random token.
        slot = 0
        for p in range(1, at - 1):
            if not chosen[p]:
                continue
            original = ids[r, p]
            positions[r, slot] = p
            originals[r, slot] = original
            weights[r, slot] = 1.0
            kind = _fraction(state)
            if kind < 0.8:
                ids[r, p] = mask_id
                counts[0] += 1
            elif kind < 0.9:
                counts[1] += 1
            else:
                ids[r, p] = _index(state, vocab_size)
                counts[2] += 1
            slot += 1
    return ids, input_mask, segment_ids, positions, originals, weights, counts


def mask(tokens, instances, wanted, max_seq_length, max_predictions, whole_word, vocab, seed):
    """Builds and masks ``[N, 5]`` instances: the record features and ``[3]`` counts.

    Returns ``input_ids`` ``[N, T]`` int32, ``input_mask`` and ``segment_ids``
    ``[N, T]`` bool, ``masked_lm_positions`` / ``masked_lm_ids`` ``[N, P]``
    int32, ``masked_lm_weights`` ``[N, P]`` float32 (predictions sorted by
    position, zero padded), and the counts of predictions shown as [MASK],
    kept and replaced by a random token. ``wanted[i]`` is row ``i``'s number
    of predictions (fewer when it has fewer maskable tokens); ``vocab`` a
    :class:`data.pretraining_data.VocabularyIds`; ``seed`` a uint64.
    """
    return _mask(
        np.ascontiguousarray(tokens, dtype=np.int32), np.ascontiguousarray(instances, dtype=np.int64),
        np.ascontiguousarray(wanted, dtype=np.int64), int(max_seq_length), int(max_predictions), bool(whole_word),
        np.ascontiguousarray(vocab.continuation, dtype=np.bool_), int(vocab.pad_id), int(vocab.cls_id),
        int(vocab.sep_id), int(vocab.mask_id), int(vocab.size), np.uint64(seed),
    )


def _load_kernels() -> None:
    """Loads (from numba's cache) or compiles the kernels, at import (see :func:`data.codec._load_kernels`)."""
    offsets = np.array([0, 3, 5, 9, 12], dtype=np.int64)
    for pairs in (True, False):
        instances = make_instances(random.Random(0), offsets, np.array([0, 2, 4]), 6, 0.5, 2, pairs)

    class _Vocab:
        size, pad_id, cls_id, sep_id, mask_id = 20, 0, 1, 2, 3
        continuation = np.zeros(20, dtype=np.bool_)

    tokens = np.arange(4, 16, dtype=np.int32)
    wanted = np.ones(len(instances), dtype=np.int64)
    for whole_word in (False, True):
        mask(tokens, instances, wanted, 10, 2, whole_word, _Vocab, 1)
    python_draws(random.Random(0), np.array([0, 1, 2]), np.array([0, 5, 7]))


_load_kernels()
