"""rvpo[trl,verl] resolve together: verl 0.9.x's transformers < 5.11 still runs TRL 1.16 and our TRL
adapter; a CPU torch stays a CPU torch (nothing CUDA was pulled in next to it)."""

from importlib.metadata import distributions, version

import torch
from packaging.version import Version


def test_versions_resolved_together():
    assert Version("0.9.1") <= Version(version("verl")) < Version("0.10")
    assert Version("5.5.3") <= Version(version("transformers")) < Version("5.11")  # verl's pin
    assert Version("1.16") <= Version(version("trl")) < Version("1.17")  # rvpo[trl]'s pin


def test_trl_and_the_rvpo_trl_adapter_import_with_verls_transformers():
    from trl import GRPOConfig, GRPOTrainer

    from rvpo.integrations.trl import RVPOConfig, RVPOTrainer, expand_multichannel

    assert issubclass(RVPOTrainer, GRPOTrainer) and issubclass(RVPOConfig, GRPOConfig)
    assert callable(expand_multichannel)


def test_cpu_torch_was_not_joined_by_cuda_packages():
    names = {(d.metadata["Name"] or "").lower() for d in distributions()}
    if torch.version.cuda is None:  # the CPU wheel scripts/test_verl.sh installs by default
        assert not sorted(n for n in names if n.startswith("nvidia-") or n in ("triton", "cupy"))
