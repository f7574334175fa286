"""``bert score squad``: EM and F1 of any system's SQuAD predictions, as the official scripts compute them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bert_cli import console


def scores_table(scores: dict, title: str):
    """A rich table of :func:`data.squad.score`'s result (0-100, as the official scripts print)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", min_width=min(len(title), 100))
    for column, justify in (("questions", "left"), ("count", "right"), ("EM", "right"), ("F1", "right")):
        table.add_column(column, justify=justify)
    table.add_row("all", f"{scores['total']:,}", f"{scores['exact']:.2f}", f"{scores['f1']:.2f}", style="bold")
    for prefix, name in (("HasAns_", "with an answer"), ("NoAns_", "unanswerable")):
        if f"{prefix}total" in scores:
            table.add_row(name, f"{scores[prefix + 'total']:,}", f"{scores[prefix + 'exact']:.2f}",
                          f"{scores[prefix + 'f1']:.2f}")
    if "best_f1" in scores:
        table.add_row("best threshold", "", f"{scores['best_exact']:.2f} @ {scores['best_exact_thresh']:.4g}",
                      f"{scores['best_f1']:.2f} @ {scores['best_f1_thresh']:.4g}")
    if scores.get("missing"):
        table.caption = f"{scores['missing']:,} question(s) without a prediction count as wrong"
    return table


def official_json(scores: dict) -> dict:
    """The dictionary the official script prints: v1.1 ``exact_match``/``f1``, v2.0 its ordered keys."""
    if not scores["version_2"]:
        return {"exact_match": scores["exact"], "f1": scores["f1"]}
    keys = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
            "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")
    return {key: scores[key] for key in keys if key in scores}


def squad_command(
    data: Annotated[Path, typer.Argument(help="The SQuAD JSON with the gold answers (v1.1 or v2.0).")],
    predictions: Annotated[Path, typer.Argument(help="predictions.json: question id -> answer text (\"\" = no answer).")],
    null_odds: Annotated[Optional[Path], typer.Option(help="v2: null_odds.json (question id -> no-answer score), the official --na-prob-file; adds the best-threshold scores.")] = None,
    na_prob_thresh: Annotated[float, typer.Option(help="v2 with --null-odds: questions whose odds exceed this count as answered \"no answer\" (official default 1.0).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the official script's JSON instead of a table.")] = False,
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
