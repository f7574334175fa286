"""``bert score squad``: EM and F1 of any system's SQuAD predictions, as the official scripts compute them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bert_cli import console
from bert_cli.tasks.squad import scores_table


def official_json(scores: dict) -> dict:
    """The dictionary the official script prints: v1.1 ``exact_match``/``f1``, v2.0 its ordered keys."""
    if not scores["version_2"]:
        return {"exact_match": scores["exact"], "f1": scores["f1"]}
    keys = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
            "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")
    return {key: scores[key] for key in keys if key in scores}


def squad_command(
    data: Annotated[Path, typer.Argument(help="The SQuAD JSON with the gold answers (v1.1 or v2.0).")],
    predictions: Annotated[Path, typer.Argument(
        help="predictions.json: question id -> answer text (\"\" = no answer).")],
    null_odds: Annotated[Optional[Path], typer.Option(
        help="v2: null_odds.json (question id -> no-answer score), the official --na-prob-file; "
             "adds the best-threshold scores.")] = None,
    na_prob_thresh: Annotated[float, typer.Option(
        help="v2 with --null-odds: questions whose odds exceed this count as answered \"no answer\" "
             "(official default 1.0).")] = 1.0,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the official script's JSON instead of a table.")] = False,
) -> None:
    """Score SQuAD predictions (EM/F1) exactly as the official evaluation scripts do."""
    import json

    from data import squad
    from data.errors import DataError

    gold = squad.read_squad(data)
    answers = squad.read_predictions(predictions, "predictions")
    odds = None
    if null_odds is not None:
        if not gold.version_2:
            raise DataError(f"--null-odds {null_odds}: {data} is SQuAD v1.1 (no unanswerable questions); "
                            "null odds only apply to v2.0 data")
        odds = squad.read_predictions(null_odds, "null odds")
    known = {question.id for question in gold.questions}
    if answers and not known & set(answers):
        raise DataError(f"{predictions}: none of its {len(answers):,} question ids is in {data}; "
                        "score predictions against the file they were made for")
    scores = squad.score(gold, answers, odds, na_prob_thresh)
    if scores["missing"]:
        console.warning(f"{predictions}: no prediction for {scores['missing']:,} of {scores['total']:,} questions "
                        "(they count as wrong)")
    if as_json:
        console.stdout.print(json.dumps(official_json(scores), indent=2), markup=False)
        return
    console.stdout.print(scores_table(scores, f"SQuAD {'2.0' if scores['version_2'] else 'v1.1'}: "
                                              f"{Path(predictions).name} on {Path(data).name}"))
