"""The demo's fine-tuning tasks: deterministic, exact answer spans, no leaks across the split, readable."""

import collections
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from data import demo_tasks
from data.classification import label_set, read_dataset

FILES = ("classify/train.tsv", "classify/dev.tsv", "squad/train.json", "squad/dev.json")


@pytest.fixture(scope="module")
def modules():
    return demo_tasks._read_modules()


@pytest.fixture(scope="module")
def tasks(tmp_path_factory, modules):
    # The public function (which reads the modules itself) is run in the determinism
    # test, whose files must equal these byte for byte.
    workdir = tmp_path_factory.mktemp("tasks")
    counts = demo_tasks._write_tasks(workdir, demo_tasks.DEFAULT_SEED, modules)
    return workdir, counts


def _rows(path):
    return [(example.text, example.label) for example in read_dataset(path).examples]


def _squad(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _questions(document):
    for article in document["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield article["title"], paragraph["context"], qa


def test_same_seed_gives_byte_identical_files_in_another_process(tasks, tmp_path):
    workdir, _ = tasks
    code = f"from data.demo_tasks import write_demo_tasks; write_demo_tasks({str(tmp_path)!r})"
    env = {**os.environ, "PYTHONHASHSEED": "7", "LC_ALL": "C", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env, timeout=120)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (workdir / name).read_bytes(), name


def test_the_seed_decides_the_split():
    sizes = {f"module{i}": 10 + i for i in range(40)}
    first, second = demo_tasks._split_modules(sizes, 1), demo_tasks._split_modules(sizes, 2)
    assert first != second
    for dev in (first, second):
        share = sum(sizes[m] for m in dev) / sum(sizes.values())
        assert 0.15 <= share <= demo_tasks.DEV_SHARE


def test_classification_files_read_back_balanced_and_counted(tasks):
    workdir, counts = tasks
    train, dev = _rows(workdir / "classify/train.tsv"), _rows(workdir / "classify/dev.tsv")
    assert (counts["classify"]["train"], counts["classify"]["dev"]) == (len(train), len(dev))
    assert 1000 <= len(train) <= 5000 and len(dev) >= 200
    labels = sorted(demo_tasks.FAMILIES)
    assert 4 <= len(labels) <= 6
    assert label_set(read_dataset(workdir / "classify/train.tsv")) == labels
    for rows in (train, dev):
        per_label = collections.Counter(label for _, label in rows)
        assert sorted(per_label) == labels
        assert max(per_label.values()) <= 1.1 * min(per_label.values())
    assert not {s for s, _ in train} & {s for s, _ in dev}
    assert (workdir / "classify/train.tsv").read_text(encoding="utf-8").startswith("sentence\tlabel\n")


def test_no_module_gives_classification_rows_to_both_splits(tasks, modules):
    workdir, counts = tasks
    # The owner of a sentence is the first module (by name) of a family whose docstrings
    # hold it, as in the generator.
    owner = {}
    for module, documented in modules:
        if demo_tasks._family(module) is None:
            continue
        for _, sentences in documented:
            for sentence in sentences:
                owner.setdefault(sentence, module)
    modules = {split: {owner[s] for s, _ in _rows(workdir / f"classify/{split}.tsv")} for split in ("train", "dev")}
    assert not modules["train"] & modules["dev"]
    assert (len(modules["train"]), len(modules["dev"])) == (counts["classify"]["train_modules"],
                                                            counts["classify"]["dev_modules"])
    for split in ("train", "dev"):
        for sentence, label in _rows(workdir / f"classify/{split}.tsv"):
            assert demo_tasks._family(owner[sentence]) == label


def test_a_sentence_opening_with_a_quote_reads_back_unchanged(tmp_path):
    rows = [('"Quoted" words open this sentence.', "a"), ('"All of it is quoted."', "b"), ("Plain.", "a")]
    demo_tasks._write_tsv(tmp_path / "t.tsv", [(s, label, "m") for s, label in rows])
    assert _rows(tmp_path / "t.tsv") == rows


def test_squad_files_have_the_v1_1_structure(tasks):
    workdir, counts = tasks
    ids = set()
    for split in ("train", "dev"):
        document = _squad(workdir / f"squad/{split}.json")
        assert document["version"] == "1.1" and document["data"]
        for article in document["data"]:
            assert isinstance(article["title"], str) and article["paragraphs"]
            for paragraph in article["paragraphs"]:
                assert isinstance(paragraph["context"], str) and paragraph["qas"]
        questions = list(_questions(document))
        assert len(questions) == counts["squad"][split]
        for _, _, qa in questions:
            assert qa["id"] not in ids
            ids.add(qa["id"])
            assert qa["question"].endswith("?")
            [answer] = qa["answers"]
            assert isinstance(answer["answer_start"], int) and answer["text"]
    assert counts["squad"]["train"] >= 500 and counts["squad"]["dev"] >= 100


def test_every_answer_is_the_context_span_at_answer_start_after_its_names_return(tasks):
    workdir, _ = tasks
    for split in ("train", "dev"):
        for title, context, qa in _questions(_squad(workdir / f"squad/{split}.json")):
            answer = qa["answers"][0]
            start, text = answer["answer_start"], answer["text"]
            assert context[start:start + len(text)] == text
            assert context[:start].endswith(("Return ", "Returns "))
            assert qa["id"].startswith(title + ".")
            name = qa["id"][len(title) + 1:]
            assert name in qa["question"]
            header = context.rfind(f"{name}: ", 0, start)
            assert header >= 0
            # The answer is in the named entry: no other "Return" between its name and the answer.
            assert context[header:start].count("Return") == 1


def test_questions_need_the_name_not_just_the_word_return(tasks):
    workdir, _ = tasks
    questions = list(_questions(_squad(workdir / "squad/train.json")))
    several = sum(1 for _, context, _ in questions if context.count("Return") >= 2)
    assert several >= 0.4 * len(questions)


def test_no_module_gives_questions_to_both_splits(tasks):
    workdir, counts = tasks
    titles = {
        split: [a["title"] for a in _squad(workdir / f"squad/{split}.json")["data"]] for split in ("train", "dev")
    }
    assert not set(titles["train"]) & set(titles["dev"])
    assert len(titles["dev"]) == counts["squad"]["dev_modules"]
    train_answers = {qa["answers"][0]["text"] for _, _, qa in _questions(_squad(workdir / "squad/train.json"))}
    dev_answers = {qa["answers"][0]["text"] for _, _, qa in _questions(_squad(workdir / "squad/dev.json"))}
    assert not train_answers & dev_answers


@pytest.mark.skipif(importlib.util.find_spec("data.squad") is None, reason="data/squad.py is not built yet")
def test_the_projects_squad_reader_reads_the_files_with_every_answer_matching(tasks):
    from data.squad import read_squad

    workdir, counts = tasks
    for split in ("train", "dev"):
        squad = read_squad(workdir / f"squad/{split}.json")
        assert len(squad.questions) == counts["squad"][split]
        assert squad.mismatched == [] and not squad.version_2
