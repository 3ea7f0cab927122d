"""The rubric task: rubric data (HealthBench and Rubrics-as-Rewards schemas), pure HealthBench scoring,
the LLM-judged reward (:mod:`.reward`), the HealthBench evaluation (:mod:`.healthbench`), the embedded
judge (:mod:`rvpo.judge.session`) and the ``rvpo train --task rubric`` task (:mod:`.task`).

See ``docs/rubrics.md``. The channel sign of a rubric item is defined once, in
:func:`rvpo.tasks.rubric.scoring.channel_value`.
"""

from rvpo.tasks.rubric.data import (
    RubricDataError,
    RubricDataset,
    RubricExample,
    RubricItem,
    examples_from_rows,
    load_rubric_file,
    parse_row,
    rubric_from_column,
    rubric_to_json,
)
from rvpo.tasks.rubric.scoring import (
    ClippedMean,
    RubricScores,
    aggregate_scores,
    channel_value,
    clipped_mean,
    example_score,
    example_tag_scores,
)

__all__ = [
    "RubricDataError", "RubricDataset", "RubricExample", "RubricItem", "examples_from_rows",
    "load_rubric_file", "parse_row", "rubric_from_column", "rubric_to_json",
    "ClippedMean", "RubricScores", "aggregate_scores", "channel_value", "clipped_mean",
    "example_score", "example_tag_scores",
]
