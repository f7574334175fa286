"""Token tagging (NER, chunking, POS) as a fine-tuning :class:`Recipe`.

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
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bert_cli.finetuning import file_sha256, model_inputs

TAGGING_SUMS = ("loss", "correct", "words", "examples")


@dataclasses.dataclass(frozen=True)
class TagOptions:
    """The tag command's own options (names as the CLI options)."""

    train: Path
    dev: Path | None = None
    test: Path | None = None
    token_column: int = 0
    tag_column: int = -1


class TagRecipe:
    task = "tag"
    unit = "windows"
    sums = TAGGING_SUMS

    def __init__(self, options: TagOptions) -> None:
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
        self.scheme = tagging.detect_scheme(train)
        self.tags = tagging.tag_set(train)
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
