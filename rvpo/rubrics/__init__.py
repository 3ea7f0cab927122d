"""Rubric data (HealthBench and Rubrics-as-Rewards schemas) and pure HealthBench scoring.

See ``docs/rubrics.md``. The channel sign of a rubric item is defined once, in
:func:`rvpo.rubrics.scoring.channel_value`.
"""

from rvpo.rubrics.data import (
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
from rvpo.rubrics.scoring import (
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
