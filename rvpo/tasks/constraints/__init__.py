"""The constraints task: IFEval-style verifiable instructions (one reward channel each) and quality.

    from rvpo.tasks.constraints import make_task, generate_rows, check, score_responses

See ``docs/constraints.md`` for the channels, parameters and measured base rates.
"""

from rvpo.tasks.constraints.eval import ifeval_row, score_one, score_responses, summarize
from rvpo.tasks.constraints.generate import DEFAULT_FAMILIES, FAMILIES, generate_rows
from rvpo.tasks.constraints.instructions import BY_IFEVAL_ID, TYPES, check, loose_variants
from rvpo.tasks.constraints.rewards import make_instruction_reward, quality_reward, quality_score
from rvpo.tasks.constraints.task import ConstraintsTask, load_jsonl_rows, make_task

__all__ = ["BY_IFEVAL_ID", "ConstraintsTask", "DEFAULT_FAMILIES", "FAMILIES", "TYPES", "check", "generate_rows",
           "ifeval_row", "load_jsonl_rows", "loose_variants", "make_instruction_reward", "make_task",
           "quality_reward", "quality_score", "score_one", "score_responses", "summarize"]
