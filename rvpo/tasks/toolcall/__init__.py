"""The tool-calling task: a built-in generator of short examples and loaders for real data.

Every example is a dict usable as a TRL dataset row::

    {"prompt": [{"role": "system", "content": tools + format}, {"role": "user", "content": request}],
     "ground_truth": "<think>...</think>\\n<tool_call>\\n{...}\\n</tool_call>",   # ToolRL format
     "id": str, "source": str}

(BFCL rows add ``"accepted"``: a JSON string of the accepted values per parameter.)
Score completions with ``rvpo.tasks.toolcall.rewards.format_reward`` / ``correctness_reward``.
"""

from rvpo.tasks.toolcall.generate import builtin_splits, generate_examples, make_example
from rvpo.tasks.toolcall.loaders import (
    bfcl_data_dir,
    gold_completion,
    load_bfcl,
    load_examples,
    load_toolrl_parquet,
    load_toolrl_sft,
    resolve_bfcl_file,
    validate_example,
)
from rvpo.tasks.toolcall.schemas import TOOLS, compact_signature, system_prompt

__all__ = [
    "TOOLS",
    "bfcl_data_dir",
    "builtin_splits",
    "compact_signature",
    "generate_examples",
    "gold_completion",
    "load_bfcl",
    "load_examples",
    "load_toolrl_parquet",
    "load_toolrl_sft",
    "make_example",
    "resolve_bfcl_file",
    "system_prompt",
    "validate_example",
]
