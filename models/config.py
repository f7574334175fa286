"""BertConfig: the model's shape, read and written as the original ``bert_config.json``.

Field names are exactly those of google-research/bert so released
``bert_config.json`` files load unchanged and ours load in other tools.

Presets name the sizes of the paper and of the 24 small models released in
2020 (Turc et al., "Well-Read Students Learn Better"): ``L-{layers}_H-{hidden}``
with A = H/64 heads and an intermediate size of 4H.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from models.errors import ModelError

# Fields some released configs carry that do not change the model we build:
# the multilingual release adds the pooler_* and directionality keys. They are
# accepted and dropped so those files still "load unchanged".
_IGNORED_RELEASE_FIELDS = frozenset(
    {
        "directionality",
        "pooler_fc_size",
        "pooler_num_attention_heads",
        "pooler_num_fc_layers",
        "pooler_size_per_head",
        "pooler_type",
    }
)
# "gelu" is the original's: the tanh approximation (its modeling.py); "gelu_new" is
# Hugging Face's name for the same function. "gelu_exact" is the erf form, which
# Hugging Face configs call "gelu" (bert convert translates the names both ways).
_ACTIVATIONS = ("gelu", "gelu_new", "gelu_exact", "relu", "tanh", "swish", "silu")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The shape of a BERT encoder, with the original ``bert_config.json`` field names.

    Args:
        vocab_size: Rows of the word-embedding matrix; must equal the vocabulary's size.
        hidden_size: H, the width of every layer.
        num_hidden_layers: L, the number of Transformer blocks.
        num_attention_heads: A; H must be divisible by A.
        intermediate_size: Width of the feed-forward layer, 4H in every release.
        hidden_act: Feed-forward (and MLM transform) activation. The original's "gelu" is
            the tanh approximation; "gelu_exact" is the erf form Hugging Face calls "gelu".
        hidden_dropout_prob: Dropout on embeddings and every sub-layer output.
        attention_probs_dropout_prob: Dropout on attention probabilities.
        max_position_embeddings: Longest sequence the position table covers (512).
        type_vocab_size: Number of segment ids. The original class defaults to 16 but
            every released checkpoint uses 2, so 2 is ours.
        initializer_range: Std-dev of the truncated-normal initializer.
        embedding_size: Width of the token/position/segment embeddings when it differs from
            ``hidden_size`` (ELECTRA-Small: 128 under a hidden size of 256), projected to the
            hidden size by a dense layer as ELECTRA does; None (the BERT layout) means equal.
            Only written to ``bert_config.json`` when set.

    Example:
        >>> config = BertConfig.from_preset("tiny", vocab_size=1000)
        >>> config.num_attention_heads
        2
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    embedding_size: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ModelError(f"config: {name} must be a positive integer, got {value!r}")
        size = self.embedding_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise ModelError(f"config: embedding_size must be a positive integer, got {self.embedding_size!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ModelError(
                f"config: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}; each head needs hidden_size/heads units"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ModelError(f"config: {name} must be in [0, 1), got {value!r}")
        if isinstance(self.initializer_range, bool) or not isinstance(self.initializer_range, (int, float)) \
                or self.initializer_range <= 0:
            raise ModelError(f"config: initializer_range must be positive, got {self.initializer_range!r}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ModelError(
                f"config: hidden_act {self.hidden_act!r} is not supported; use one of {', '.join(_ACTIVATIONS)}"
            )

    @property
    def projects_embeddings(self) -> bool:
        """Whether embeddings are narrower or wider than the hidden size (a projection between them)."""
        return self.embedding_size is not None and self.embedding_size != self.hidden_size

    @property
    def head_size(self) -> int:
        """Units per attention head, H / A."""
        return self.hidden_size // self.num_attention_heads

    def replace(self, **changes: Any) -> "BertConfig":
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if values["embedding_size"] is None:
            del values["embedding_size"]  # the original bert_config.json has no such field
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "BertConfig":
        """Builds a config from ``bert_config.json``-style keys; unknown keys are an error."""
        if not isinstance(values, dict):
            raise ModelError(f"{source}: expected a JSON object of config fields")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - _IGNORED_RELEASE_FIELDS)
        if unknown:
            raise ModelError(
                f"{source}: unknown field(s) {', '.join(unknown)}; expected the bert_config.json fields "
                f"{', '.join(sorted(known))}"
            )
        try:
            return cls(**{key: value for key, value in values.items() if key in known})
        except ModelError as error:
            raise ModelError(str(error).replace("config:", f"{source}:", 1)) from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        """Reads a ``bert_config.json`` (ours or an original release's)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ModelError(f"{path}: cannot be read ({error})") from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelError(f"{path}:{error.lineno}:{error.colno}: invalid JSON ({error.msg})") from None
        return cls.from_dict(values, source=str(path))

    def to_json_string(self) -> str:
        # Same layout as the released files: indented, keys sorted.
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json_string(), encoding="utf-8")

    @classmethod
    def from_preset(cls, name: str, **changes: Any) -> "BertConfig":
        """A named size (see :data:`PRESETS`) with optional field overrides."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ModelError(
                f"unknown model preset {name!r}; choose one of {', '.join(PRESET_ALIASES)}, electra-small, "
                f"electra-base, electra-large or L-{{2,4,6,8,10,12}}_H-{{128,256,512,768}}, or pass a bert_config.json"
            ) from None
        return base.replace(**changes) if changes else base


def _sized(layers: int, hidden: int, heads: int | None = None) -> BertConfig:
    return BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads or hidden // 64,
        intermediate_size=4 * hidden,
    )


PRESETS: dict[str, BertConfig] = {
    f"L-{layers}_H-{hidden}": _sized(layers, hidden)
    for layers in (2, 4, 6, 8, 10, 12)
    for hidden in (128, 256, 512, 768)
}
# The names the small-model release gave four of them, and the paper's two sizes.
PRESET_ALIASES: dict[str, str] = {
    "tiny": "L-2_H-128",
    "mini": "L-4_H-256",
    "small": "L-4_H-512",
    "medium": "L-8_H-512",
    "base": "L-12_H-768",
    "large": "L-24_H-1024",
}
PRESETS["L-24_H-1024"] = _sized(24, 1024, heads=16)
# ELECTRA's discriminators (google-research/electra): Small has 128-wide embeddings
# projected to its hidden size of 256; Base and Large are BERT-Base and -Large shapes.
# Its GELU is the exact erf form (its modeling.py), unlike the original BERT's.
PRESETS["electra-small"] = BertConfig(hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                                      intermediate_size=1024, embedding_size=128, hidden_act="gelu_exact")
PRESETS["electra-base"] = _sized(12, 768).replace(hidden_act="gelu_exact")
PRESETS["electra-large"] = _sized(24, 1024, heads=16).replace(hidden_act="gelu_exact")
for _alias, _name in PRESET_ALIASES.items():
    PRESETS[_alias] = PRESETS[_name]
