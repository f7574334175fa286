import json

import pytest

from models.config import PRESET_ALIASES, PRESETS, BertConfig
from models.errors import ModelError

# The bert_config.json of the released uncased BERT-Base, field for field as the
# release wrote it (a configuration, not text from another project's docs).
RELEASED_BASE = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}


def test_released_config_loads_unchanged_and_round_trips(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(RELEASED_BASE, indent=2))
    config = BertConfig.from_json_file(path)
    assert config == PRESETS["base"]
    out = tmp_path / "out.json"
    config.to_json_file(out)
    assert json.loads(out.read_text()) == RELEASED_BASE


def test_multilingual_extra_fields_are_accepted(tmp_path):
    values = dict(RELEASED_BASE, directionality="bidi", pooler_type="first_token_transform", pooler_fc_size=768)
    assert BertConfig.from_dict(values).hidden_size == 768


@pytest.mark.parametrize("layers", [2, 4, 6, 8, 10, 12])
@pytest.mark.parametrize("hidden", [128, 256, 512, 768])
def test_released_small_model_sizes(layers, hidden):
    config = PRESETS[f"L-{layers}_H-{hidden}"]
    assert config.num_hidden_layers == layers
    assert config.hidden_size == hidden
    assert config.num_attention_heads == hidden // 64
    assert config.intermediate_size == 4 * hidden
    assert config.head_size == 64


def test_named_presets():
    expected = {
        "tiny": (2, 128, 2),
        "mini": (4, 256, 4),
        "small": (4, 512, 8),
        "medium": (8, 512, 8),
        "base": (12, 768, 12),
        "large": (24, 1024, 16),
    }
    assert set(PRESET_ALIASES) == set(expected)
    for name, (layers, hidden, heads) in expected.items():
        config = BertConfig.from_preset(name)
        assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (layers, hidden, heads)
    assert BertConfig.from_preset("large").intermediate_size == 4096
    assert BertConfig.from_preset("tiny", vocab_size=300).vocab_size == 300


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_size": 100, "num_attention_heads": 3}, "not divisible"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer"),
        ({"num_hidden_layers": -1}, "num_hidden_layers must be a positive integer"),
        ({"vocab_size": 12.5}, "vocab_size must be a positive integer"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"hidden_act": "mish"}, "hidden_act"),
    ],
)
def test_invalid_configs(changes, message):
    with pytest.raises(ModelError, match=message):
        BertConfig(**changes)


def test_unknown_field_is_named(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(dict(RELEASED_BASE, layer_norm_eps=1e-12)))
    with pytest.raises(ModelError, match=r"bert_config.json: unknown field\(s\) layer_norm_eps"):
        BertConfig.from_json_file(path)


def test_bad_json_and_missing_file(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text('{"hidden_size": 768,')
    with pytest.raises(ModelError, match=r"bert_config.json:1:\d+: invalid JSON"):
        BertConfig.from_json_file(path)
    with pytest.raises(ModelError, match="no such file"):
        BertConfig.from_json_file(tmp_path / "missing.json")


def test_unknown_preset():
    with pytest.raises(ModelError, match="unknown model preset 'huge'"):
        BertConfig.from_preset("huge")


def test_config_is_frozen():
    config = BertConfig()
    with pytest.raises(Exception):
        config.hidden_size = 10  # type: ignore[misc]
