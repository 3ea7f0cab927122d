"""Constraint-neglect simulation: a tabular softmax policy trained with multi-reward advantages.

A small, fast testbed for the failure mode RVPO is about. The policy picks one of four response
styles per prompt (see :mod:`rvpo.sim.env`); each sample is scored on ``m_easy`` noisy continuous
"easy" channels and one binary constraint channel. The ``greedy`` style wins every easy channel and
breaks the constraint; the ``balanced`` style keeps it at a cost of ``easy_gap`` per easy channel.
Every method uses the same environment, the same sampling, the same REINFORCE update and the same
advantage core (:func:`rvpo.compute_advantages`); methods differ *only* in the estimator name and
its ``k`` / ``beta``. Nothing in the environment knows which method is running.

Why a mean of z-scores can prefer the violating style
------------------------------------------------------
A group of G = 4 samples, m_easy = 4, no noise: one ``greedy`` sample (easy rewards 1.0,
constraint 0) and three ``balanced`` ones (easy 0.7, constraint 1). Per-channel group z-scores
(unbiased std)::

                 easy1  easy2  easy3  easy4  constraint | sum (gdpo) | soft-min k=2 | min
    greedy       +1.5   +1.5   +1.5   +1.5     -1.5     |   +4.5     |    -0.70     | -1.5
    balanced     -0.5   -0.5   -0.5   -0.5     +0.5     |   -1.5     |    -0.41     | -0.5

The sum (or mean) of z-scores counts the constraint as one vote in five: four small wins outvote
one violation, so GDPO (and GRPO, which sums raw rewards) push probability *towards* the
violating style. The soft-min ``-(1/k) log mean_j exp(-k Z_j)`` is dominated by the worst channel
(``exp(+3)`` against ``4 exp(-3)`` inside the log), so the violator scores below the balanced
samples and the update moves *away* from it. The z-scores are identical for every method: the
difference is produced by the aggregation alone. Run it: ``compute_advantages(r, 4, "rvpo", k=2)``.

Where the effect comes and goes (measured, see ``docs/sim.md``)
---------------------------------------------------------------
* It grows with the number of easy channels and with ``easy_gap / noise`` (z-scores make the
  environment scale-free: only this ratio matters to gdpo/rvpo, not the two values).
* It is an effect of *keeping* a constraint the policy mostly satisfies (``init_sat`` high: a
  rare violator gets a large negative constraint z). The same algebra turns around when violation
  is the norm: with three ``greedy`` samples and one ``balanced``, the rare satisfier has
  constraint z = +1.5 but easy z = -1.5 on four channels, and the soft-min punishes it too
  (-1.39 vs +0.09). So from a mostly violating start (``--init-sat 0.2``) rvpo does not discover
  the constraint either; only large k / hard-min sometimes do. The k sweep shows both sides.
* With very many easy channels (e.g. 32) a small k behaves like the mean again; a larger k holds.

Public API: :class:`SimConfig`, :func:`run_methods`, :func:`run_sweep`, :func:`summarise`.
"""

from rvpo.sim.env import DEFAULT_METHODS, STYLES, Method, SimConfig, SimEnv, parse_method
from rvpo.sim.report import summarise
from rvpo.sim.run import RunResult, run_methods, run_one, run_sweep

__all__ = [
    "DEFAULT_METHODS", "STYLES", "Method", "SimConfig", "SimEnv", "parse_method", "summarise",
    "RunResult", "run_methods", "run_one", "run_sweep",
]
