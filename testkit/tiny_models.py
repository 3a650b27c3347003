"""Tiny transformers with random weights, built from a config (no download), for fast tests.

The vocabulary is written here, so word-piece splitting is known: "unbelievable" has no
entry of its own and splits into "un", "##bel", "##iev", "##able".
"""

from __future__ import annotations

import inspect
from pathlib import Path

WORDS = """the a an of to in and is was for on with at by from it this that movie film good bad
great awful terrible excellent boring fun love hate best worst plot actor story sports game team
win won lose lost match score world war peace president minister government country market stock
shares price bank company profit business science space research computer software tech internet
john smith mary paris london berlin germany france google apple microsoft reuters said says new
york city he she they we i you not very really too so but or no yes be are were has have had
un ##bel ##iev ##able ##s ##ing ##ed ##ly . , ! ? ' " - ( ) : ; 0 1 2 3 4 5 6 7 8 9""".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_bert(folder: str | Path, hidden: int = 32, layers: int = 1, heads: int = 2, seed: int = 0) -> Path:
    """Write a random-weight BERT (config, safetensors weights, fast tokenizer) to `folder`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n", encoding="utf-8")
    tokens = SPECIAL + WORDS
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    else:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


if __name__ == "__main__":  # python -m testkit.tiny_models DIR
    import sys

    print(write_tiny_bert(sys.argv[1]))
