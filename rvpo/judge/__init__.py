"""LLM judge: OpenAI-compatible client with cache, retries and abstentions, plus a local server.

>>> from rvpo.judge import JudgeClient, JudgeConfig, JudgeRequest
>>> cfg = JudgeConfig.from_env(base_url="http://127.0.0.1:8000/v1", cache_path=None)

See docs/judge.md. The server (``rvpo.judge.server``) is imported lazily: it needs torch only for
the model backend.
"""

from rvpo.judge.cache import VerdictCache, cache_key
from rvpo.judge.client import JudgeClient, JudgeOutcome, JudgeRequest, JudgeStats
from rvpo.judge.config import JudgeConfig
from rvpo.judge.parse import Verdict, VerdictParseError, parse_verdict
from rvpo.judge.prompt import GRADER_TEMPLATE, render_judge_messages

__all__ = [
    "GRADER_TEMPLATE", "JudgeClient", "JudgeConfig", "JudgeOutcome", "JudgeRequest", "JudgeStats",
    "Verdict", "VerdictCache", "VerdictParseError", "cache_key", "parse_verdict", "render_judge_messages",
]
