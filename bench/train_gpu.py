"""GPU device check: SFT then DPO steps on a random-weight Qwen2.5-0.5B-shaped model, in bf16.

Prints one JSON object with tokens/s, peak GPU memory and model FLOPs utilisation (MFU) for each
phase. Self-contained (torch and transformers only, no TRL), so it runs on a bare GPU machine:

    python bench/train_gpu.py --steps 30 --seq-len 2048        # or
    python -m rprm_lite.bench.train_gpu --steps 30 --seq-len 2048
    python bench/train_gpu.py --tiny                           # a tiny shape, runs on CPU too

It runs the same computation as the TRL trainers of `rprm-lite train`: fp32 master weights with
bf16 autocast, AdamW, the loss on the completion half of each sequence only (SFT: cross-entropy;
DPO: the sigmoid loss against a frozen reference), full sequences without padding.

FLOPs (stated once, used for MFU), per token of one sequence pass:
    forward + backward  = 6 * N + 12 * L * S * d
    forward only        = 2 * N +  4 * L * S * d
N = parameters of every matrix multiply (attention and MLP projections of all layers, and the LM
head, which is a real matmul even when tied to the embedding; the embedding lookup is not counted),
L = layers, S = sequence length, d = hidden size. The attention term counts the full S x S score
matrix (the PaLM / nanoGPT convention), not the causal half that flash attention computes.
SFT FLOPs = tokens * (6N + 12LSd); DPO FLOPs = tokens * (8N + 16LSd) (policy forward + backward
on chosen and rejected, plus the reference forward on both). MFU = FLOPs / seconds / peak, with
the peak dense bf16 throughput of the card (989e12 for H100 and H200 SXM).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}
QWEN25_05B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 1024}
WARMUP_STEPS = 3  # not timed: kernel selection and allocator growth


@dataclass
class PhaseResult:
    phase: str
    steps: int
    sequences_per_step: int
    seq_len: int
    tokens_per_s: float
    seconds_per_step: float
    flops_per_token: float
    mfu: float | None
    peak_memory_gib: float | None
    loss_first: float
    loss_last: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per phase")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 2048; tiny: 128)")
    parser.add_argument("--sft-batch", type=int, default=4, help="sequences per SFT step")
    parser.add_argument("--dpo-batch", type=int, default=2, help="pairs per DPO step (two sequences each)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model shape (for CPU checks)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--peak-flops", type=float, default=None, help="card's bf16 peak (default by name)")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.seq_len is None:
        args.seq_len = 128 if args.tiny else 2048
    if min(args.steps, args.seq_len, args.sft_batch, args.dpo_batch) < 1:
        parser.error("--steps, --seq-len, --sft-batch and --dpo-batch must be at least 1")
    return args


def build_model(shape: dict, *, device, seed: int, gradient_checkpointing: bool):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**shape, max_position_embeddings=32768, tie_word_embeddings=True,
                         rope_theta=1000000.0, attn_implementation="sdpa")
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)  # fp32 master weights; compute runs under bf16 autocast
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    return model


def matmul_params(model) -> int:
    """N: parameters of every Linear layer, the LM head included (tied or not)."""
    import torch

    body = sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head"))
    return body + model.get_output_embeddings().weight.numel()


def flops_per_token(model, seq_len: int, *, training: bool) -> float:
    cfg = model.config
    n, attention = matmul_params(model), cfg.num_hidden_layers * seq_len * cfg.hidden_size
    return 6 * n + 12 * attention if training else 2 * n + 4 * attention


def completion_logps(model, ids, completion_start: int):
    """Summed log-probabilities of tokens from `completion_start` on, one value per sequence."""
    import torch

    logits = model(input_ids=ids).logits[:, completion_start - 1:-1].float()
    targets = ids[:, completion_start:]
    return torch.log_softmax(logits, dim=-1).gather(2, targets[..., None]).squeeze(-1).sum(-1)


def sft_loss(model, ids, completion_start: int):
    """Cross-entropy on the completion tokens only (transformers upcasts the logits to fp32 for it)."""
    labels = ids.clone()
    labels[:, :completion_start] = -100
    return model(input_ids=ids, labels=labels).loss


def dpo_loss(policy, reference, chosen, rejected, completion_start: int, beta: float):
    import torch

    both = torch.cat([chosen, rejected])
    policy_logps = completion_logps(policy, both, completion_start)
    with torch.no_grad():
        reference_logps = completion_logps(reference, both, completion_start)
    ratio = policy_logps - reference_logps
    chosen_ratio, rejected_ratio = ratio.chunk(2)
    return -torch.nn.functional.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()


def run_phase(name: str, step_fn, *, steps: int, tokens_per_step: int, flops_per_tok: float,
              peak: float | None, device) -> PhaseResult:
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses = [step_fn() for _ in range(WARMUP_STEPS)]
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    losses += [step_fn() for _ in range(steps)]
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    tokens_per_s = tokens_per_step / seconds
    return PhaseResult(
        phase=name, steps=steps, sequences_per_step=0, seq_len=0, tokens_per_s=round(tokens_per_s, 1),
        seconds_per_step=round(seconds, 4), flops_per_token=flops_per_tok,
        mfu=tokens_per_s * flops_per_tok / peak if peak else None,
        peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        loss_first=round(losses[0], 4), loss_last=round(losses[-1], 4))


def optimizer_step(model, optimizer, loss) -> float:
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = TINY if args.tiny else QWEN25_05B
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = args.peak_flops or next((v for k, v in PEAK_BF16_FLOPS.items() if k in card), None)
    report = {"device": card, "peak_bf16_flops": peak, "torch": torch.__version__, "shape": shape,
              "seq_len": args.seq_len, "gradient_checkpointing": args.gradient_checkpointing,
              "flops_formula": "per token: train 6N + 12*L*S*d, forward 2N + 4*L*S*d; "
                               "SFT = 6N + 12LSd, DPO = 8N + 16LSd (policy fwd+bwd, reference fwd)"}
    try:
        report |= run_check(args, shape, device, peak)
    except torch.OutOfMemoryError as exc:
        report["error"] = (f"out of memory ({str(exc).splitlines()[0]}); rerun with --gradient-checkpointing "
                           "or a smaller --sft-batch / --dpo-batch")
        print(json.dumps(report, indent=2))
        return 1
    print(json.dumps(report, indent=2))
    return 0


def run_check(args: argparse.Namespace, shape: dict, device, peak: float | None) -> dict:
    import torch
    import transformers

    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    model = build_model(shape, device=device, seed=args.seed, gradient_checkpointing=args.gradient_checkpointing)
    n = matmul_params(model)
    train_model = torch.compile(model) if args.compile else model
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, **fused)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    half = args.seq_len // 2  # the first half is the prompt, the second the critique

    def batch(rows: int):
        return torch.randint(0, shape["vocab_size"], (rows, args.seq_len), device=device, generator=generator)

    sft_ids = batch(args.sft_batch)

    def sft_step() -> float:
        with autocast:
            loss = sft_loss(train_model, sft_ids, half)
        return optimizer_step(model, optimizer, loss)

    sft = run_phase("sft", sft_step, steps=args.steps, tokens_per_step=args.sft_batch * args.seq_len,
                    flops_per_tok=flops_per_token(model, args.seq_len, training=True), peak=peak, device=device)
    sft.sequences_per_step, sft.seq_len = args.sft_batch, args.seq_len

    # DPO: the policy continues from the SFT weights; the reference is a frozen copy of them
    reference = build_model(shape, device=device, seed=args.seed, gradient_checkpointing=False)
    reference.load_state_dict(model.state_dict())
    reference.requires_grad_(False).eval()
    chosen, rejected = batch(args.dpo_batch), batch(args.dpo_batch)
    rejected[:, :half] = chosen[:, :half]  # a pair shares its prompt

    def dpo_step() -> float:
        with autocast:
            loss = dpo_loss(train_model, reference, chosen, rejected, half, args.beta)
        return optimizer_step(model, optimizer, loss)

    dpo_flops = (flops_per_token(model, args.seq_len, training=True)
                 + flops_per_token(model, args.seq_len, training=False))
    dpo = run_phase("dpo", dpo_step, steps=args.steps, tokens_per_step=2 * args.dpo_batch * args.seq_len,
                    flops_per_tok=dpo_flops, peak=peak, device=device)
    dpo.sequences_per_step, dpo.seq_len = 2 * args.dpo_batch, args.seq_len
    return {"transformers": transformers.__version__, "matmul_params": n,
            "total_params": sum(p.numel() for p in model.parameters()), "sft": asdict(sft), "dpo": asdict(dpo)}


if __name__ == "__main__":
    sys.exit(main())
