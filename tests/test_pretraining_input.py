"""The pre-training input pipeline: parsing the original schema and dynamic masking."""

import numpy as np
import pytest

from pretrain_helpers import CLS, MASK, SEP, make_examples, write_records

tf = pytest.importorskip("tensorflow")
from data.pretraining_input import DynamicMasking, pretraining_dataset  # noqa: E402

T, P = 64, 12


def _originals(example):
    tokens = list(example["input_ids"])
    for position, token, weight in zip(
        example["masked_lm_positions"], example["masked_lm_ids"], example["masked_lm_weights"]
    ):
        if weight:
            tokens[position] = token
    return tokens


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dyn")
    examples = make_examples(600, seq_length=T, predictions=P, seed=11)
    path = write_records(directory / "a.tfrecord", examples)
    return path, examples


def _batches(path, masking, count=600):
    dataset = pretraining_dataset([str(path)], T, P, 100, training=False, dynamic_masking=masking)
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count // 100)]


def test_parses_the_original_schema_exactly(records):
    path, examples = records
    batch = _batches(path, None)[0]
    for key in ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                "next_sentence_labels"):
        np.testing.assert_array_equal(batch[key], np.array([e[key] for e in examples[:100]]))
    assert batch["masked_lm_weights"].dtype == np.float32


def test_dynamic_masking_follows_the_recipe(records):
    path, examples = records
    vocab_size = 45
    masking = DynamicMasking(vocab_size=vocab_size, cls_id=CLS, sep_id=SEP, mask_id=MASK)
    batches = _batches(path, masking)
    masked = kept = random = total_predictions = total_tokens = 0
    for start, batch in zip(range(0, 600, 100), batches):
        for row in range(100):
            original = _originals(examples[start + row])
            length = int(batch["input_mask"][row].sum())
            weights = batch["masked_lm_weights"][row]
            real = int(weights.sum())
            assert real == min(P, max(1, round(length * 0.15)))
            positions = batch["masked_lm_positions"][row][:real]
            assert list(positions) == sorted(positions) and len(set(positions)) == real
            assert all(0 < p < length and original[p] not in (CLS, SEP) for p in positions)
            np.testing.assert_array_equal(batch["masked_lm_ids"][row][:real], [original[p] for p in positions])
            for p in positions:
                token = batch["input_ids"][row][p]
                masked += token == MASK
                kept += token == original[p]
                random += token not in (MASK, original[p])
            unmasked = [i for i in range(T) if i not in set(positions)]
            np.testing.assert_array_equal(batch["input_ids"][row][unmasked], np.array(original)[unmasked])
            total_predictions += real
            total_tokens += length
    assert total_predictions / total_tokens == pytest.approx(0.15, abs=0.01)
    assert masked / total_predictions == pytest.approx(0.8, abs=0.03)
    # "kept" also counts random draws that hit the original token (1 in 45).
    assert kept / total_predictions == pytest.approx(0.1 + 0.1 / vocab_size, abs=0.025)
    assert random / total_predictions == pytest.approx(0.1 - 0.1 / vocab_size, abs=0.025)


def test_each_read_gets_a_new_mask(tmp_path):
    example = make_examples(1, seq_length=T, predictions=P, seed=4)[0]
    path = write_records(tmp_path / "same.tfrecord", [example] * 200)
    masking = DynamicMasking(vocab_size=45, cls_id=CLS, sep_id=SEP, mask_id=MASK)
    masks = {tuple(row) for batch in _batches(path, masking, 200) for row in batch["masked_lm_positions"]}
    assert len(masks) > 150, "200 reads of one example should give (nearly) 200 different masks"


def test_whole_word_masking_never_splits_a_word(records):
    path, examples = records
    # Pretend every odd word id is a "##" continuation of the word before it.
    continuation = tuple(range(7, 45, 2))
    masking = DynamicMasking(vocab_size=45, cls_id=CLS, sep_id=SEP, mask_id=MASK,
                             continuation_ids=continuation, whole_word=True)
    taken = wanted = 0
    for start, batch in zip(range(0, 600, 100), _batches(path, masking)):
        for row in range(100):
            original = _originals(examples[start + row])
            real = int(batch["masked_lm_weights"][row].sum())
            chosen = set(batch["masked_lm_positions"][row][:real].tolist())
            target = min(P, max(1, round(int(batch["input_mask"][row].sum()) * 0.15)))
            assert 1 <= real <= target
            taken, wanted = taken + real, wanted + target
            for position in chosen:
                # The piece after a chosen piece, if it continues the word, is chosen too;
                # a chosen continuation piece has its word's previous piece chosen.
                if position + 1 < len(original) and original[position + 1] in continuation:
                    assert position + 1 in chosen
                if original[position] in continuation:
                    assert position - 1 in chosen
    assert taken / wanted > 0.9, "whole words fill nearly all of the prediction budget"


def test_skipping_the_records_used_continues_the_same_stream(records):
    """A resumed run under a multi-replica strategy positions its input by ``skip_records``: it must see exactly
    the batches an uninterrupted run sees from there, dynamic masks included."""
    path, _ = records
    masking = DynamicMasking(vocab_size=45, cls_id=CLS, sep_id=SEP, mask_id=MASK)

    def stream(skip, count):
        dataset = pretraining_dataset([str(path), str(path)], T, P, 16, seed=3, dynamic_masking=masking,
                                      shuffle_buffer=100, skip_records=skip)
        return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]

    whole = stream(0, 50)  # past one pass over the files: the reshuffled repeat is covered too
    resumed = stream(37 * 16, 13)
    for expected, got in zip(whole[37:], resumed, strict=True):
        for key in expected:
            np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    assert not np.array_equal(whole[0]["input_ids"], resumed[0]["input_ids"])


def test_fine_tuning_input_starts_where_an_uninterrupted_run_is():
    """``bert_cli.finetuning.train_input`` for one pipeline and for two (each its share), at any start step."""
    from bert_cli.finetuning import train_input

    class Context:  # what distribute_datasets_from_function passes
        def __init__(self, pipelines, pipeline, replicas):
            self.num_input_pipelines, self.input_pipeline_id, self.num_replicas_in_sync = pipelines, pipeline, replicas

    arrays = {"x": np.arange(23, dtype=np.int64)}
    make = train_input(arrays, micro_batch=4, seed=9)

    def batches(context, start, count):
        return [b["x"].numpy().tolist() for b in make(context, start).take(count)]

    whole = batches(None, 0, 30)
    assert sorted(sum(whole[:6], [])[:23]) == list(range(23))  # an epoch is a permutation
    assert batches(None, 11, 19) == whole[11:]
    # Two pipelines, one replica each: pipeline p takes every other example of the same global stream.
    flat = sum(whole, [])
    for pipeline in (0, 1):
        shares = batches(Context(2, pipeline, 2), 3, 4)
        assert sum(shares, []) == flat[3 * 8 + pipeline::2][:16]
