"""The GPU check script, run on CPU with a tiny shape so it is known to work before device time is spent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import rprm_lite.training
from rprm_lite.bench import train_gpu

ACCELERATE_CONFIGS = Path(rprm_lite.training.__file__).parent / "accelerate"


def test_tiny_check_runs_sft_then_dpo_and_reports_flops_by_the_stated_formula(capsys):
    assert train_gpu.main(["--tiny", "--steps", "2", "--seq-len", "32", "--peak-flops", "1e12"]) == 0
    report = json.loads(capsys.readouterr().out)

    # tiny shape: 2 layers of q 64x64, k and v 64x32, o 64x64, MLP 3 x 64x128, plus the 64x1024 LM head
    n = 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128) + 64 * 1024
    attention = 2 * 32 * 64  # L * S * d
    assert report["matmul_params"] == n == 139264
    sft, dpo = report["sft"], report["dpo"]
    assert sft["flops_per_token"] == 6 * n + 12 * attention
    assert dpo["flops_per_token"] == 8 * n + 16 * attention
    for phase, sequences in ((sft, 4), (dpo, 4)):
        assert phase["sequences_per_step"] == sequences and phase["seq_len"] == 32
        assert phase["tokens_per_s"] > 0
        assert phase["mfu"] == pytest.approx(phase["tokens_per_s"] * phase["flops_per_token"] / 1e12, rel=1e-2)
    assert sft["loss_first"] == pytest.approx(math.log(1024), abs=0.3)  # random weights: near-uniform
    assert dpo["loss_first"] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at the start
    assert report["device"] == "cpu" and sft["peak_memory_gib"] is None  # measured on CUDA only


def test_the_card_peak_is_taken_from_its_name():
    assert train_gpu.PEAK_BF16_FLOPS["H100"] == train_gpu.PEAK_BF16_FLOPS["H200"] == 989e12
    model = train_gpu.build_model(train_gpu.QWEN25_05B, device="meta", seed=0, gradient_checkpointing=False)
    assert train_gpu.matmul_params(model) == 493_961_216  # Qwen2.5-0.5B: 494M with the tied LM head
    assert train_gpu.flops_per_token(model, 2048, training=True) == 6 * 493_961_216 + 12 * 24 * 2048 * 896


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero3"])
def test_shipped_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(ACCELERATE_CONFIGS / f"{name}.yaml"))
    assert config.num_processes == 8 and config.mixed_precision == "bf16"
    assert config.distributed_type.value == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero3": "DEEPSPEED"}[name]
