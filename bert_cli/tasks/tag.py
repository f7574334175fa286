"""``bert finetune tag``: token tagging (NER, chunking, POS), everything on the CLI side.

The head is dropout + dense on every token's output (models.heads); the first
piece of each word carries its tag, the other pieces are ignored (see
data.tagging for windows over long sentences). Dev metrics: token accuracy
over words and, for BIO / IOB2 / IOBES tags, entity precision / recall / F1
with the CoNLL rules, overall and per type.

``predictions.conll`` (dev) and ``test_predictions.conll`` hold one line per
input word, ``word<TAB>gold<TAB>predicted`` (``word<TAB>predicted`` for a
file without tags), a blank line between sentences: the layout the
``conlleval`` script reads. Predicted sequences are written as the model made
them, even where they break the scheme.

Serving: ``serving_default(text)`` -> ``words`` and ``tags`` [B, W] strings (padded
with ""), ``num_words`` [B]; a text's words are its whitespace-separated runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bert_cli import console
from bert_cli.commands.options import DATA, argument, comma_list, dev_option, option, test_option
from bert_cli.errors import UserError
from bert_cli.finetuning import file_sha256, model_inputs
from bert_cli.predicting import text_of

NAME = "tag"
HELP = "Fine-tune a token tagger (NER, chunking, POS); rerun the same command to resume."
# Shared fine-tuning options whose default differs for this task: none.
DEFAULTS: dict = {}
TAGGING_SUMS = ("loss", "correct", "words", "examples")


def given_tags(train, tags: tuple[str, ...]) -> list[str]:
    """``--tags`` as the tag ids: every tag of the training file among them, none twice, two or more.

    A sample of a few hundred sentences often lacks a rare tag that its dev file holds (WNUT-17's first
    100 training sentences have no ``I-product``); naming the full set keeps such a dev file usable.
    """
    if len(set(tags)) != len(tags) or len(tags) < 2 or not all(tags):
        raise UserError(f"--tags {','.join(tags)!r}: give two or more different, non-empty tags, comma-separated")
    missing = sorted({t for sentence in train.sentences for t in sentence.tags} - set(tags))
    if missing:
        raise UserError(f"{train.path}: tag {missing[0]!r} is not in --tags; add it (the training file's tags "
                        "must all be among them)")
    return list(tags)


@dataclasses.dataclass(frozen=True)
class Options:
    """The tag command's own options (names as the CLI options)."""

    train: Path = argument(help="Training file in CoNLL format: token and tag per line, blank line between sentences.")
    dev: Path | None = dev_option()
    test: Path | None = test_option()
    token_column: int = option(0, help="0-based column of the token (negative: from the end).", panel=DATA)
    tag_column: int = option(-1, help="0-based column of the tag (negative: from the end).", panel=DATA)
    tags: tuple[str, ...] | None = option(
        None, help="Comma-separated tags in id order, for dev tags a small training file lacks; default: the "
                   "training file's, O first.", panel=DATA, cli_type=str | None, parse=comma_list)


class Recipe:
    """The tag task as a :class:`bert_cli.finetuning.Recipe` (see the module docstring)."""

    task = NAME
    unit = "windows"
    sums = TAGGING_SUMS
    token_keys = ("input_ids", "input_mask", "segment_ids", "label", "label_weights")

    def __init__(self, options: Options, common=None) -> None:
        self.options = options
        self.files = {"train": options.train, "dev": options.dev, "test": options.test}
        self.tagged: dict = {}
        self.features: dict = {}
        self.tags: list[str] = []
        self.scheme = "none"

    def read(self) -> None:
        from data import tagging

        o = self.options
        train = tagging.read_conll(o.train, o.token_column, o.tag_column)
        if train.width > 2:
            console.warning(
                f"{o.train}: rows have {train.width} fields; tokens from column {train.columns[0]}, tags from "
                f"column {train.columns[1]} (e.g. {train.sentences[0].tags[0]!r}); pass --token-column / "
                "--tag-column (0-based) to choose others")
        self.scheme = tagging.detect_scheme(train)
        self.tags = tagging.tag_set(train) if o.tags is None else given_tags(train, o.tags)
        self.tagged["train"] = train
        for split in ("dev", "test"):
            path = self.files[split]
            if path is None:
                continue
            tagged = tagging.read_conll(path, o.token_column, o.tag_column, require_tags=split == "dev")
            if tagged.has_tags:
                tagging.check_scheme(tagged, tagging.detect_scheme(tagged), self.scheme, o.train)
                tagging.check_tags(tagged, self.tags)
            self.tagged[split] = tagged

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("f1", "precision", "recall", "accuracy") if self.scheme != "none" else ("accuracy",)

    def featurize(self, tokenize, vocab, max_seq_length: int) -> None:
        from data import tagging

        for split, tagged in self.tagged.items():
            self.features[split] = tagging.featurize(
                tagged, tokenize, max_seq_length, vocab.cls_id, vocab.sep_id, vocab.pad_id, vocab.unk_id,
                tags=self.tags if tagged.has_tags else None,
            )

    def arrays(self, split: str) -> dict | None:
        features = self.features.get(split)
        return features.arrays if features is not None else None

    def build_model(self, config, dtype):
        from models.heads import build_tagger

        return build_tagger(config, len(self.tags), dtype)

    def compute(self, model, batch, training: bool) -> dict:
        from models.heads import tagging_losses

        return tagging_losses(model(model_inputs(batch), training=training), batch["label"], batch["label_weights"])

    def summarize(self, totals: dict) -> dict:
        batches = max(totals.get("batches", 0.0), 1.0)
        return {
            "loss": totals.get("loss", 0.0) / batches,
            "accuracy": totals.get("correct", 0.0) / max(totals.get("words", 0.0), 1.0),
        }

    def outputs(self, model, batch) -> dict:
        import keras
        from keras import ops

        logits = model(model_inputs(batch), training=False)  # [B, T, L]
        per_token = keras.losses.sparse_categorical_crossentropy(batch["label"], logits, from_logits=True)
        return {
            "predicted": ops.cast(ops.argmax(logits, axis=-1), "int32"),  # [B, T]
            "loss_sum": ops.sum(per_token * batch["label_weights"], axis=-1),  # [B]
        }

    # -- evaluation and predictions -------------------------------------------

    def _words(self, split: str, outputs: dict) -> tuple[list[list[str]], list[list[str]] | None]:
        from data.tagging import assemble

        tagged = self.tagged[split]
        predicted = assemble(self.features[split], outputs["predicted"], tagged)
        predicted = [[self.tags[i] for i in sentence] for sentence in predicted]
        gold = [list(sentence.tags) for sentence in tagged.sentences] if tagged.has_tags else None
        return predicted, gold

    def evaluate(self, outputs: dict) -> dict[str, float]:
        from data import metrics

        predicted, gold = self._words("dev", outputs)
        flat_gold = [tag for sentence in gold for tag in sentence]
        flat_predicted = [tag for sentence in predicted for tag in sentence]
        words = float(self.features["dev"].arrays["label_weights"].sum())
        result = {
            "loss": float(outputs["loss_sum"].sum()) / max(words, 1.0),
            "accuracy": metrics.accuracy(flat_gold, flat_predicted),
        }
        if self.scheme != "none":
            overall = metrics.entity_scores(gold, predicted)["overall"]
            result.update(precision=overall.precision, recall=overall.recall, f1=overall.f1)
        return result

    def details(self, outputs: dict) -> dict:
        from data import metrics

        if self.scheme == "none":
            return {}
        predicted, gold = self._words("dev", outputs)
        scores = metrics.entity_scores(gold, predicted)
        return {"entities": {kind: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.gold,
                                    "predicted": s.predicted} for kind, s in scores.items()}}

    def prediction_file(self, split: str) -> str:
        return "predictions.conll" if split == "dev" else f"{split}_predictions.conll"

    def write_predictions(self, split: str, outputs: dict, path: Path) -> None:
        predicted, gold = self._words(split, outputs)
        tagged = self.tagged[split]
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            for number, sentence in enumerate(tagged.sentences):
                for position, word in enumerate(sentence.words):
                    fields = [word] + ([gold[number][position]] if gold else []) + [predicted[number][position]]
                    handle.write("\t".join(fields) + "\n")
                handle.write("\n")

    # -- the model directory ------------------------------------------------

    def task_file(self) -> dict:
        return {
            "labels": self.tags,
            "scheme": self.scheme,
            "token_column": self.options.token_column,
            "tag_column": self.options.tag_column,
            "label_pieces": "first",
            "head": "tokens",
        }

    def same_head(self, task: dict) -> bool:
        return task.get("labels", []) == self.tags

    def signature(self) -> dict:
        return {"train_sha256": file_sha256(self.options.train), "labels": self.tags, "scheme": self.scheme,
                "token_column": self.options.token_column, "tag_column": self.options.tag_column}

    def describe(self) -> list[tuple[str, str]]:
        shown = ", ".join(self.tags[:12]) + (", ..." if len(self.tags) > 12 else "")
        rows = [("task", f"token tagging, {self.scheme} scheme, {len(self.tags)} tags: {shown}")]
        parts, split_sentences, long_words = [], 0, 0
        for split in ("train", "dev", "test"):
            if split in self.features:
                features = self.features[split]
                parts.append(f"{split} {features.sentences:,} sentences ({self.tagged[split].words:,} words)")
                split_sentences += features.split_sentences
                long_words += features.long_words
        rows.append(("data", ", ".join(parts)))
        if split_sentences or long_words:
            rows.append(("windows", f"{split_sentences:,} sentence(s) longer than --max-seq-length split into "
                                    "overlapping windows" + (f"; {long_words:,} word(s) longer than a window cut "
                                                               "after their first pieces" if long_words else "")))
        return rows


def report(result, options: Options) -> None:
    """After the results table: the dev scores of every entity type."""
    from bert_cli.display import print_detail_table

    print_detail_table((result.details or {}).get("entities"), "entity type")


# ----------------------------------------------------------------------------
# bert distill
# ----------------------------------------------------------------------------


class Distillation:
    """``bert distill`` of a tagger: per word, the teacher's tag distribution.

    Unlabeled files are CoNLL (tokens alone, or tokens and tags, which are
    ignored), read with the teacher's token column. Teacher and student
    tokenise and window every sentence on their own, so targets are aligned by
    word: each word's teacher logits are read at its first piece in the
    teacher window where it is in the core, and placed at its first piece in
    the student window where it is in the core (every word once on each side).
    Soft loss: KL at the temperature, times T², averaged over the words;
    agreement: the share of words whose predicted tag is the teacher's.
    """

    SUMS = ("loss", "agree", "judged", "examples")  # judged: words; examples: windows
    TOKEN_KEYS = ("input_ids", "input_mask", "segment_ids", "label", "label_weights", "teacher_probabilities",
                  "teacher_weights")

    def __init__(self, task: dict) -> None:
        self.task = task

    def recipe(self, common) -> Recipe:
        t = self.task
        options = Options(train=Path("-"), token_column=int(t.get("token_column", 0)),
                          tag_column=int(t.get("tag_column", -1)))
        return Recipe(options, common)

    def read(self, recipe: Recipe, unlabeled: list[Path], train: Path | None, dev: Path | None) -> None:
        """The unlabeled files (concatenated), ``--train`` and ``--dev`` into ``recipe.tagged``; the teacher's tags."""
        from data import tagging

        o = recipe.options
        recipe.tags = list(self.task.get("labels") or [])
        recipe.scheme = self.task.get("scheme") or "none"
        parts = [tagging.read_tokens(path, o.token_column) for path in unlabeled]
        sentences = [sentence for part in parts for sentence in part.sentences]
        recipe.tagged["unlabeled"] = tagging.TaggedFile(parts[0].path, sentences, parts[0].width, parts[0].columns)
        for split, path in (("labeled", train), ("dev", dev)):
            if path is None:
                continue
            tagged = tagging.read_conll(path, o.token_column, o.tag_column)
            self._check_scheme(tagged, tagging.detect_scheme(tagged))
            tagging.check_tags(tagged, recipe.tags, "the teacher's labels")
            recipe.tagged[split] = tagged

    def _check_scheme(self, tagged, scheme: str) -> None:
        """A labelled file must use the teacher's tag scheme (IOB1 and IOB2 are both BIO)."""
        from data.errors import DataError

        teacher = self.task.get("scheme") or "none"
        bio = {"IOB1", "IOB2"}
        if scheme != teacher and not (scheme in bio and teacher in bio):
            raise DataError(f"{tagged.path}: uses {scheme} tags but the teacher was trained on {teacher} tags; "
                            "convert the file to the teacher's scheme")

    def teacher_outputs(self, model, batch) -> dict:
        """The teacher's logits, and what :meth:`Recipe.evaluate` reads on dev (its predictions, its loss)."""
        import keras
        from keras import ops

        logits = model(model_inputs(batch), training=False)  # [B, T, L]
        per_token = keras.losses.sparse_categorical_crossentropy(batch["label"], logits, from_logits=True)  # [B, T]
        return {
            "logits": logits,
            "predicted": ops.cast(ops.argmax(logits, axis=-1), "int32"),  # [B, T]
            "loss_sum": ops.sum(per_token * batch["label_weights"], axis=-1),  # [B]
        }

    def targets(self, teacher_view, outputs: dict, student, split: str, temperature: float) -> dict:
        """Per student window: the teacher's distribution of each core word at its first piece.

        Returns ``teacher_probabilities`` float32 [N, T, L] and ``teacher_weights``
        float32 [N, T] (1 at the first piece of the words the window predicts), rows
        and positions as ``student.arrays(split)``.
        """
        import numpy as np

        from data.metrics import log_softmax
        from data.tagging import word_positions

        window, position = word_positions(teacher_view.features[split])  # [W], [W]
        words = outputs["logits"][window, position].astype(np.float64)  # [W, L]
        probabilities = np.exp(log_softmax(words / temperature)).astype(np.float32)  # [W, L]
        shape = student.arrays(split)["input_ids"].shape  # [N, T]
        window, position = word_positions(student.features[split])
        if len(window) != len(probabilities):
            raise AssertionError(f"{split}: the student's windows hold {len(window)} words, the teacher's "
                                 f"{len(probabilities)}")
        placed = np.zeros((*shape, probabilities.shape[-1]), np.float32)  # [N, T, L]
        weights = np.zeros(shape, np.float32)  # [N, T]
        placed[window, position] = probabilities
        weights[window, position] = 1.0
        return {"teacher_probabilities": placed, "teacher_weights": weights}

    def compute(self, model, batch, temperature: float, training: bool) -> dict:
        """Soft loss over the words, plus the gold tags' cross-entropy on ``--train`` windows (``hard_weight``)."""
        import keras
        from keras import ops

        from models.heads import agreement, distillation_divergence

        logits = model(model_inputs(batch), training=training)  # [B, T, L]
        teacher = batch["teacher_probabilities"]  # [B, T, L]
        weights = ops.cast(batch["teacher_weights"], "float32")  # [B, T]
        judged = ops.sum(weights)
        soft = ops.sum(distillation_divergence(logits, teacher, temperature) * weights) / ops.maximum(judged, 1.0)
        label_weights = ops.cast(batch["label_weights"], "float32")  # [B, T]
        hard = ops.cast(batch["hard_weight"], "float32")[:, None] * label_weights  # [B, T]
        labels = ops.cast(batch["label"], "int32")
        per_token = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)  # [B, T]
        hard_loss = ops.sum(per_token * hard) / ops.maximum(ops.sum(label_weights), 1.0)
        return {"loss": soft + hard_loss, "agree": ops.sum(agreement(logits, teacher) * weights), "judged": judged,
                "examples": ops.cast(ops.shape(logits)[0], "float32")}

    def agreement(self, student, student_outputs: dict, teacher_view, teacher_outputs: dict) -> float:
        """The share of dev words whose predicted tag is the teacher's (each side assembled from its own windows)."""
        ours, _ = student._words("dev", student_outputs)
        theirs, _ = teacher_view._words("dev", teacher_outputs)
        same = [a == b for sentence, other in zip(ours, theirs) for a, b in zip(sentence, other)]
        return sum(same) / max(len(same), 1)


# ----------------------------------------------------------------------------
# A fine-tuned model directory
# ----------------------------------------------------------------------------


def build_model(model_dir):
    """A freshly built tagger of the shape ``task.json`` describes (weights not yet loaded)."""
    from models.heads import build_tagger

    labels = model_dir.task.get("labels") or []
    if len(labels) < 2:
        raise UserError(f"{model_dir.path / 'task.json'}: a tagger needs its \"labels\" (two or more)")
    return build_tagger(model_dir.config, len(labels))


def min_seq_length(task: dict) -> int:
    """[CLS] one piece [SEP]."""
    return 3


def hugging_face(task: dict) -> dict:
    """The Transformers class a tag model directory becomes, its head's tensors and config keys.

    ``BertForTokenClassification``: dropout and ``classifier`` [L, H] on every token's
    output, as our head (we read a word's tag at its first piece).
    """
    from bert_cli.huggingface import label_maps

    return {"architecture": "BertForTokenClassification", "head": "classifier",
            "config": label_maps(task.get("labels") or [])}


# ----------------------------------------------------------------------------
# Serving (the export's serving_default)
# ----------------------------------------------------------------------------


class Serving:
    """Per-word tags of texts, as ``bert finetune tag`` trained it.

    A text's words are its whitespace-separated runs (``bert_cli.serving.split_on_whitespace``);
    each word is tokenized on its own, its first piece carries its tag, and a
    text longer than one window is cut into the same overlapping windows as in
    training (``data.tagging.plan_windows``), each word predicted in the window
    where it has context on both sides.

    Args:
        module: The :class:`bert_cli.serving.TaskServing` this signature belongs to.
        task: The model's ``task.json`` (``labels``: tag names in id order).
    """

    inputs = ("text",)

    def __init__(self, module, task: dict) -> None:
        import tensorflow as tf

        self.module = module
        self.labels = list(task["labels"])
        self._tag_names = tf.constant(self.labels, tf.string)

    def windows(self, text) -> dict:
        """The words of ``text`` and the model inputs of their windows (the graph twin of ``data.tagging.featurize``).

        Returns ``words`` [B, (W)]; ``plan`` [N, 5] as ``bert_cli.serving.plan_windows``;
        ``inputs``, the windows' padded model inputs [N, T]; and for every word of
        the batch in order (W_all of them) the window that predicts it,
        ``word_window`` [W_all], and the position of its first piece there,
        ``first_pieces`` [W_all]. Flat index arithmetic throughout: the words of a
        window are consecutive, so its pieces are one slice of all the pieces.
        """
        import tensorflow as tf

        from bert_cli.serving import frame, plan_windows, split_on_whitespace

        module = self.module
        capacity = module.max_seq_length - 2
        words = split_on_whitespace(text)  # [B, (W)]
        flat, counts, sums = self._pieces(words)
        plan = plan_windows(words.with_flat_values(counts), capacity, capacity // 4)  # [N, 5]
        offsets = tf.gather(tf.cast(words.row_starts(), tf.int32), plan[:, 0])  # [N] first word of the sentence
        first_piece = tf.gather(sums, offsets + plan[:, 1])  # [N]
        inputs = frame(flat, first_piece, tf.gather(sums, offsets + plan[:, 4]) - first_piece,
                       module.cls_id, module.sep_id, module.pad_id)
        # Cores tile the sentences in order, so the windows' core words in order are every word in order.
        word_window = tf.repeat(tf.range(tf.shape(plan)[0]), plan[:, 3] - plan[:, 2])  # [W_all]
        first_pieces = 1 + sums[:-1] - tf.gather(first_piece, word_window)  # [W_all] after [CLS]
        return {"words": words, "plan": plan, "inputs": inputs, "word_window": word_window,
                "first_pieces": first_pieces}

    def _pieces(self, words):
        """Every word's pieces, cut as in training: ``flat`` ids [pieces], ``counts`` [W_all], ``sums`` [W_all + 1]."""
        import tensorflow as tf

        capacity = self.module.max_seq_length - 2
        pieces = self.module.tokenizer.tokenize(words.flat_values)  # [W_all, (P)]
        lengths = tf.cast(pieces.row_lengths(), tf.int32)  # [W_all]
        # A word with no pieces (only control characters) becomes [UNK]; a word
        # longer than a window keeps its first `capacity` pieces, as in training.
        counts = tf.clip_by_value(lengths, 1, capacity)  # [W_all]
        sums = tf.concat([[0], tf.cumsum(counts)], 0)  # [W_all + 1]: word w's pieces are sums[w]:sums[w + 1]
        word = tf.repeat(tf.range(tf.size(counts)), counts)  # [pieces] the word of each kept piece
        within = tf.range(sums[-1]) - tf.gather(sums, word)  # [pieces] its index within the word
        values = pieces.flat_values
        source = tf.where(tf.gather(lengths, word) > 0,
                          tf.gather(tf.cast(pieces.row_starts(), tf.int32), word) + within, tf.size(values))
        flat = tf.gather(tf.concat([values, [self.module.unk_id]], 0), source)  # [pieces] ids, [UNK] for empty words
        return flat, counts, sums

    def serve(self, text):
        """Strings -> padded ``words`` and ``tags`` [B, W] and ``num_words`` [B]."""
        import tensorflow as tf

        windows = self.windows(text)
        logits = self.module.model(windows["inputs"], training=False)  # [N, T, L]
        where = tf.stack([windows["word_window"], windows["first_pieces"]], axis=1)  # [W_all, 2]
        tag_ids = tf.argmax(tf.gather_nd(logits, where), axis=-1, output_type=tf.int32)  # [W_all, L] -> [W_all]
        words = windows["words"]
        tags = words.with_flat_values(tf.gather(self._tag_names, tag_ids))  # [B, (W)]
        return {"words": words.to_tensor(""), "tags": tags.to_tensor(""),
                "num_words": tf.cast(words.row_lengths(), tf.int32)}

    def describe(self) -> dict:
        return {"task": NAME, "labels": self.labels, "words": "whitespace-separated"}


# ----------------------------------------------------------------------------
# bert predict
# ----------------------------------------------------------------------------

#: Whether a JSON example may give its text as a list of words (``words`` / ``tokens``).
WORD_LIST_INPUT = True


def predict_fields(description: dict) -> tuple[str, ...]:
    """The fields each example needs: ``text`` (its whitespace-separated words are tagged)."""
    return ("text",)


def prediction_record(description: dict, outputs: dict, index: int) -> dict:
    """The words of example ``index`` of a batch and their tags."""
    count = int(outputs["num_words"][index])
    return {"words": [text_of(w) for w in outputs["words"][index][:count]],
            "tags": [text_of(t) for t in outputs["tags"][index][:count]]}


def prediction_table(table, results: list[dict], description: dict) -> None:
    """One column of ``bert predict``'s table: the words, tagged ones marked."""
    from rich.markup import escape

    table.add_column("tagged words (word/TAG; O tags not shown)")
    for number, r in enumerate(results, start=1):
        shown = " ".join(escape(w) if t == "O" else f"{escape(w)}[bold cyan]/{escape(t)}[/]"
                         for w, t in zip(r["words"], r["tags"]))
        table.add_row(str(number), shown)
