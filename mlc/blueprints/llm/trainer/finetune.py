"""Fine-tune a causal language model on the dataset ml.yaml names: one process per GPU,
started by torchrun on every node of the JobSet (docs/llm.md).

The step runtime runs `torchrun finetune.py` with the training contract's variables
(docs/training-contract.md): MLC_DATASET_URI / MLC_DATASET_KIND / MLC_DATASET_FORMAT say where
the data is, MLC_HYPERPARAMETERS the run's settings, HF_TOKEN (a secret) opens gated base
models, PET_* tell torchrun the nodes. Global rank 0 (node 0's first process, the only one
that gets MLFLOW_RUN_ID) writes the metrics to MLC_METRICS_FILE and logs the model into the
run with MLflow's transformers flavour; the register step then registers that model.
"""

from __future__ import annotations

import glob
import json
import math
import os
import random
import sys
from pathlib import Path

DEFAULTS = {"base_model": "sshleifer/tiny-gpt2", "max_steps": 200, "learning_rate": 5e-4,
            "batch_size": 8, "block_size": 128, "eval_share": 0.1, "seed": 0}


def hyperparameters(argv: list[str]) -> dict:
    """DEFAULTS, then the command's flags (`--base-model x` sets `base_model`), then the
    run's `hyperparameters` parameter (MLC_HYPERPARAMETERS), which wins."""
    hp = dict(DEFAULTS)
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        key = flag.removeprefix("--").replace("-", "_")
        if key not in DEFAULTS:
            raise SystemExit(f"unknown flag {flag}; known: {', '.join(DEFAULTS)}")
        hp[key] = type(DEFAULTS[key])(value)
    hp.update(json.loads(os.environ.get("MLC_HYPERPARAMETERS") or "{}"))
    return hp


def _lines(text: str, fmt: str) -> list[str]:
    if fmt == "jsonl":
        return [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
    if fmt == "json":
        return [row["text"] for row in json.loads(text)]
    return [line for line in text.splitlines() if line.strip()]


def read_texts() -> list[str]:
    """The dataset's texts: files (text, one example a line; jsonl/json with a `text`
    field), or a Hugging Face dataset saved with `save_to_disk` (its `text` column)."""
    uri, kind = os.environ["MLC_DATASET_URI"], os.environ["MLC_DATASET_KIND"]
    if kind == "huggingface":
        from datasets import load_from_disk

        return list(load_from_disk(uri)["text"])
    if "://" in uri:  # object storage: fsspec (s3fs, gcsfs in the image)
        import fsspec

        files = fsspec.open_files(uri if any(c in uri for c in "*?[") else uri + "/*", "rt")
        opened = [(f.path, f) for f in files]
    else:
        paths = sorted(glob.glob(uri)) if any(c in uri for c in "*?[") else (
            sorted(str(p) for p in Path(uri).iterdir()) if Path(uri).is_dir() else [uri])
        opened = [(p, open(p, encoding="utf-8")) for p in paths]  # noqa: SIM115
    texts: list[str] = []
    for path, handle in opened:
        fmt = os.environ.get("MLC_DATASET_FORMAT") or (
            "jsonl" if path.endswith(".jsonl") else "json" if path.endswith(".json") else "text")
        with handle as f:
            texts += _lines(f.read(), fmt)
    if not texts:
        raise SystemExit(f"no text in the dataset at {uri}")
    return texts


def blocks(tokenizer, texts: list[str], size: int) -> list[list[int]]:
    """The texts, tokenized and concatenated (an end-of-text token between them), cut into
    blocks of `size` tokens (the last, shorter one dropped unless it is the only one)."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text)["input_ids"] + ([eos] if eos is not None else [])
    out = [ids[i:i + size] for i in range(0, len(ids), size)]
    return [b for b in out if len(b) == size] or out[:1]


def main() -> None:
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hp = hyperparameters(sys.argv[1:])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if world > 1:  # NCCL between GPUs (over EFA or RDMA where the profile has them)
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    random.seed(hp["seed"])
    torch.manual_seed(hp["seed"])

    token = os.environ.get("HF_TOKEN") or None
    if rank == 0:
        print(f"base model {hp['base_model']}, {'with' if token else 'without'} a Hugging Face "
              f"token; {world} processes", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(hp["base_model"], token=token)
    model = AutoModelForCausalLM.from_pretrained(hp["base_model"], token=token).to(device)
    data = blocks(tokenizer, read_texts(), int(hp["block_size"]))
    held = max(1, int(len(data) * float(hp["eval_share"]))) if len(data) > 1 else 0
    train, evaluation = data[:len(data) - held], data[len(data) - held:] or data
    mine = train[rank::world] or train  # each process its share of the blocks

    wrapped = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[local] if cuda else None) if world > 1 else model
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=float(hp["learning_rate"]))
    size = int(hp["batch_size"])
    losses: list[list[float]] = []
    wrapped.train()
    for step in range(1, int(hp["max_steps"]) + 1):
        start = ((step - 1) * size) % len(mine)
        batch = torch.tensor([mine[(start + i) % len(mine)] for i in range(size)],
                             device=device)
        loss = wrapped(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()  # DDP averages the gradients of every process here
        optimizer.step()
        losses.append([step, float(loss.detach())])

    if world > 1:
        dist.barrier()
    if rank == 0:
        model.eval()
        with torch.no_grad():
            held_loss = sum(float(model(input_ids=torch.tensor([b], device=device),
                                        labels=torch.tensor([b], device=device)).loss)
                            for b in evaluation) / len(evaluation)
        steps = int(hp["max_steps"])
        metrics = {"train_loss": losses, "eval_loss": [[steps, held_loss]],
                   "perplexity": [[steps, math.exp(min(held_loss, 50.0))]]}
        Path(os.environ["MLC_METRICS_FILE"]).write_text(json.dumps(metrics), "utf-8")
        log_model(model.to("cpu"), tokenizer)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def log_model(model, tokenizer) -> None:
    """The fine-tuned model and its tokenizer into the step's MLflow run, with MLflow's
    transformers flavour (what a `huggingface` endpoint's vLLM serves)."""
    import mlflow
    import torch
    import transformers

    with mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"]):
        mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer}, name="model",
            task="text-generation",
            pip_requirements=[f"transformers=={transformers.__version__}",
                              f"torch=={torch.__version__.split('+')[0]}"])


if __name__ == "__main__":
    main()
