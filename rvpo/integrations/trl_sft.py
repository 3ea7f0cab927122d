"""TRL's ``SFTTrainer`` off the GPU: its fused LM head scores only the labelled positions.

TRL 1.16's fused LM head (``trl.trainer.utils.add_fused_lm_head``, used by ``SFTTrainer``) sends only
the positions whose next-token label is not ``-100`` through the 49k-vocabulary projection when Triton
runs the kernel (CUDA, XPU). Everywhere else it scores every position, because on XLA or Neuron a
batch-dependent count of positions would recompile the tiles. A CPU has no such cost. There, the prompt
and padding positions are projected for nothing: three quarters of a warm-start batch of tool-call
prompts (181 prompt tokens and 58 answer tokens on average). :func:`compact_lm_head` makes TRL take its
compact branch on the CPU too, for the duration of a ``with`` block. The kernel (TRL's torch fold off
Triton) and the loss are unchanged; only the masked positions are skipped (tested against the full
branch: same loss and gradients). Measured: a warm-start step of the default run 7.4 -> 4.3 s (docs/train.md).

This overrides TRL internals (the module globals ``_use_triton`` and ``_CHUNKED_LOGPROB_CHUNK_SIZE`` that
``add_fused_lm_head`` reads), so it acts only on the TRL minor version it was tested with and is a no-op
elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from packaging.version import Version

TESTED_TRL = ("1.16", "1.17")  # [low, high)


def _supported(version: str) -> bool:
    base = Version(Version(version).base_version)
    return Version(TESTED_TRL[0]) <= base < Version(TESTED_TRL[1])


@contextlib.contextmanager
def compact_lm_head(vocab_chunk: int | None = None) -> Iterator[bool]:
    """Within the block, TRL's fused LM head projects only labelled positions on the CPU as well.

    ``vocab_chunk``: vocabulary columns per tile of its kernel, in place of TRL's 32768 (the module
    global ``_CHUNKED_LOGPROB_CHUNK_SIZE``); see :func:`rvpo.integrations.shared_prefix.vocab_chunk`.
    Yields whether the override is active (False on an untested TRL, where nothing changes).
    """
    import trl  # deferred: optional dependency trl (start-up time: rvpo.train.run imports this module)
    import trl.trainer.utils as trl_utils  # deferred: optional dependency trl

    original = getattr(trl_utils, "_use_triton", None)
    if original is None or not _supported(trl.__version__):
        yield False
        return

    def use_compact(device):  # read only by add_fused_lm_head's compact-or-full choice
        return device.type == "cpu" or original(device)

    chunk = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    trl_utils._use_triton = use_compact
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = vocab_chunk or chunk
    try:
        yield True
    finally:
        trl_utils._use_triton = original
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = chunk
