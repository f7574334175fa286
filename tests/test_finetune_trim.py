"""Training batches cut to their longest example: the cut is the one a hand computation gives, and the loss and
gradients of a cut batch equal those of the padded one (classify and tag), so the update is unchanged."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from bert_cli.finetuning import TRIM_MULTIPLE, train_input, trim_batch  # noqa: E402
from models.config import BertConfig  # noqa: E402


def _masks(rng, count: int, width: int, prefix: bool = True) -> np.ndarray:
    lengths = rng.integers(1, width + 1, count)
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int32)  # [N, T]
    if not prefix:  # real tokens anywhere: the cut must keep the last one
        mask = mask[:, ::-1].copy() * rng.integers(0, 2, (count, width))
    return mask


def _expected_width(mask: np.ndarray, multiple: int = TRIM_MULTIPLE) -> int:
    columns = np.flatnonzero(mask.any(axis=0))
    last = int(columns[-1]) + 1 if len(columns) else 1
    return min(mask.shape[1], -(-last // multiple) * multiple)


@pytest.mark.parametrize("prefix", [True, False])
def test_trim_batch_cuts_token_keys_to_the_rounded_longest(prefix):
    rng = np.random.default_rng(0)
    for width in (8, 40, 48, 130):
        mask = _masks(rng, 6, width, prefix)
        batch = {"input_mask": tf.constant(mask), "input_ids": tf.constant(mask * 5),
                 "label": tf.constant(np.arange(6 * width).reshape(6, width)), "weight": tf.ones((6,))}
        out = trim_batch(batch, ("input_mask", "input_ids"))
        expected = _expected_width(mask)
        assert out["input_mask"].shape == (6, expected)
        np.testing.assert_array_equal(out["input_ids"].numpy(), mask[:, :expected] * 5)
        assert out["label"].shape == (6, width)  # not a token key: untouched
        assert int(out["input_mask"].numpy().sum()) == int(mask.sum())  # no real token lost


def test_all_padding_batch_keeps_one_block():
    out = trim_batch({"input_mask": tf.zeros((2, 40), tf.int32)}, ("input_mask",))
    assert out["input_mask"].shape == (2, TRIM_MULTIPLE)


def test_train_input_batches_are_cut_and_in_the_same_order():
    rng = np.random.default_rng(1)
    mask = _masks(rng, 64, 96)
    arrays = {"input_mask": mask, "input_ids": mask * np.arange(1, 65)[:, None], "label": np.arange(64)}
    cut = train_input(arrays, 8, seed=3, token_keys=("input_mask", "input_ids"))(None, 0)
    whole = train_input(arrays, 8, seed=3)(None, 0)
    for a, b in zip(cut.take(12), whole.take(12)):
        np.testing.assert_array_equal(a["label"].numpy(), b["label"].numpy())
        expected = _expected_width(b["input_mask"].numpy())
        assert a["input_ids"].shape == (8, expected)
        np.testing.assert_array_equal(a["input_ids"].numpy(), b["input_ids"].numpy()[:, :expected])
    assert any(a["input_ids"].shape[1] < 96 for a in cut.take(12))


def _batch(rng, count: int, width: int, vocab: int) -> dict:
    mask = np.zeros((count, width), np.int32)
    lengths = rng.integers(3, width // 3, count)  # every example far shorter than the padded width
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    ids = rng.integers(5, vocab, (count, width)).astype(np.int32) * mask
    segments = (np.arange(width)[None, :] >= (lengths // 2)[:, None]).astype(np.int32) * mask
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segments}


def _loss_and_gradients(model, loss_of, batch: dict):
    tensors = {key: tf.constant(value) for key, value in batch.items()}
    with tf.GradientTape() as tape:
        inputs = {"token_ids": tensors["input_ids"], "segment_ids": tensors["segment_ids"],
                  "padding_mask": tensors["input_mask"]}
        loss = loss_of(model(inputs, training=False), tensors)["loss"]
    gradients = tape.gradient(loss, model.trainable_variables)
    return float(loss), [tf.convert_to_tensor(g).numpy() for g in gradients if g is not None]


def _tiny_config() -> BertConfig:
    return BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)


@pytest.mark.parametrize("task", ["classify", "tag"])
def test_cut_batch_gives_the_padded_batch_loss_and_gradients(task):
    from bert_cli.tasks import classify, tag
    from models.heads import build_classifier, build_tagger, classification_losses, tagging_losses

    rng = np.random.default_rng(2)
    batch = _batch(rng, 6, 48, 60)
    if task == "classify":
        model, keys = build_classifier(_tiny_config(), 3), classify.Recipe.token_keys
        batch["label"] = rng.integers(0, 3, 6).astype(np.int32)

        def loss_of(outputs, tensors):
            return classification_losses(outputs, tensors["label"])
    else:
        model, keys = build_tagger(_tiny_config(), 4), tag.Recipe.token_keys
        batch["label"] = rng.integers(0, 4, (6, 48)).astype(np.int32) * batch["input_mask"]
        batch["label_weights"] = batch["input_mask"].astype(np.float32)

        def loss_of(outputs, tensors):
            return tagging_losses(outputs, tensors["label"], tensors["label_weights"])

    cut = {key: value.numpy() for key, value in trim_batch({k: tf.constant(v) for k, v in batch.items()},
                                                            keys).items()}
    assert cut["input_ids"].shape[1] < 48
    whole_loss, whole_gradients = _loss_and_gradients(model, loss_of, batch)
    cut_loss, cut_gradients = _loss_and_gradients(model, loss_of, cut)
    assert cut_loss == pytest.approx(whole_loss, abs=1e-5)
    assert len(cut_gradients) == len(whole_gradients)
    for a, b in zip(cut_gradients, whole_gradients):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_squad_batches_are_not_cut():
    """The span loss is a softmax over the whole window, padding included, as the original's: a cut changes it."""
    from bert_cli.tasks import squad

    assert squad.Recipe.token_keys == ()


def test_example_lengths_by_hand():
    from bert_cli.finetuning import example_lengths

    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0]])
    np.testing.assert_array_equal(example_lengths(mask), [2, 0, 4, 3])


def _grouped_stream(arrays, batch: int, start_step: int = 0, take: int = 40):
    make = train_input(arrays, batch, seed=5, token_keys=("input_mask", "input_ids"), group_by_length=True)
    return [b["label"].numpy() for b in make(None, start_step).take(take)]


def test_group_by_length_sorts_windows_longest_first_and_keeps_every_example():
    from bert_cli.finetuning import GROUP_BATCHES

    rng = np.random.default_rng(4)
    count, batch = 1000, 4  # windows of 200 examples; epochs of 250 batches
    mask = _masks(rng, count, 64)
    lengths = mask.sum(axis=1)
    arrays = {"input_mask": mask, "input_ids": mask, "label": np.arange(count)}
    order = np.concatenate(_grouped_stream(arrays, batch, take=count // batch))
    assert sorted(order.tolist()) == list(range(count))  # one epoch: every example once
    window = GROUP_BATCHES * batch
    for start in range(0, count, window):
        part = lengths[order[start:start + window]]
        assert (np.diff(part) <= 0).all()  # longest first within the window
    plain = np.concatenate([b["label"].numpy() for b in train_input(arrays, batch, seed=5)(None, 0).take(250)])
    for start in range(0, count, window):  # the windows hold the plain shuffle's examples, only reordered
        assert set(order[start:start + window]) == set(plain[start:start + window])
    grouped_width = np.mean([lengths[b].max() for b in order.reshape(-1, batch)])
    plain_width = np.mean([lengths[b].max() for b in plain.reshape(-1, batch)])
    assert grouped_width < 0.8 * plain_width


def test_group_by_length_resumes_where_the_uninterrupted_stream_is():
    rng = np.random.default_rng(6)
    mask = _masks(rng, 300, 32)
    arrays = {"input_mask": mask, "input_ids": mask, "label": np.arange(300)}
    whole = _grouped_stream(arrays, 8, take=120)  # crosses epoch boundaries (37.5 batches an epoch)
    resumed = _grouped_stream(arrays, 8, start_step=53, take=67)
    for a, b in zip(whole[53:], resumed):
        np.testing.assert_array_equal(a, b)
