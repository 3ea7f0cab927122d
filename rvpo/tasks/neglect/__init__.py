"""The constraint-neglect task: a word limit against "richness" rewards that grow with length (docs/neglect.md)."""

from rvpo.tasks.neglect.task import NeglectTask, content_words, count_words, make_task, score_responses

__all__ = ["NeglectTask", "count_words", "content_words", "make_task", "score_responses"]
