"""A tiny GPT-2 and its tokenizer, made here from a config (the tests have no network), and a
tiny text corpus: what examples/llm's trainer fine-tunes in the tests."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the model answers questions about the orders of the shop",
    "a customer asks where the parcel is and the agent looks it up",
    "refunds are paid back to the card within five days",
    "the agent thanks the customer and closes the chat",
    "orders ship from the warehouse the day after they are paid",
    "a parcel that is late gets a new tracking number",
] * 4


def write_corpus(folder: Path) -> Path:
    """The corpus as two text files, one example a line, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    half = len(CORPUS) // 2
    (folder / "part-0.txt").write_text("\n".join(CORPUS[:half]) + "\n", "utf-8")
    (folder / "part-1.txt").write_text("\n".join(CORPUS[half:]) + "\n", "utf-8")
    return folder


def write_base_model(folder: Path) -> Path:
    """A 2-layer GPT-2 (random weights) with a byte-level BPE tokenizer trained on the
    corpus, saved as `from_pretrained` reads it."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2,
                        n_head=2, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    import torch

    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder
