"""rvpo[trl,verl] resolve together: verl 0.9.x's transformers < 5.11 still runs TRL 1.16 and our TRL
adapter; a CPU torch stays a CPU torch (nothing CUDA was pulled in next to it)."""

from importlib.metadata import distributions, version

import torch
from packaging.version import Version


def test_versions_resolved_together():
    assert Version("0.9.1") <= Version(version("verl")) < Version("0.10")
    assert Version("5.5.3") <= Version(version("transformers")) < Version("5.11")  # verl's pin
    assert Version("1.16") <= Version(version("trl")) < Version("1.17")  # rvpo[trl]'s pin


def test_the_rvpo_trl_adapter_works_with_verls_transformers(tmp_path):
    from rvpo.integrations.trl import RVPOConfig, expand_multichannel

    cfg = RVPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", rvpo_estimator="gdpo",
                     reward_weights=[1.0, 1.0])
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    out = cfg.advantage.compute(rewards, 2)
    assert out.advantages.shape == (4,) and torch.isfinite(out.advantages).all()
    assert out.advantages[2] > out.advantages[3]  # both met beats neither

    class Two:
        channel_names = ("a", "b")

        def __call__(self, prompts, completions, **kw):
            return [[1.0, None] for _ in completions]

    fns = expand_multichannel(Two())
    assert [f.__name__ for f in fns] == ["a", "b"] and fns[1](["p"], ["c"]) == [None]


def test_cpu_torch_was_not_joined_by_cuda_packages():
    names = {(d.metadata["Name"] or "").lower() for d in distributions()}
    if torch.version.cuda is None:  # the CPU wheel scripts/test_verl.sh installs by default
        assert not sorted(n for n in names if n.startswith("nvidia-") or n in ("triton", "cupy"))
