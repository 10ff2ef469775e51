"""Pure data steps of LM pretraining: held-out split, document packing, and the unigram baseline."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

import torch


def is_heldout(text: str, fraction: float) -> bool:
    """Deterministic split by content hash: identical texts always land on the same side.

    SynthWorld captions are templated, so many documents repeat verbatim; splitting by content (not by
    position) keeps every held-out string unseen in training, so held-out perplexity measures generalisation.
    """
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_heldout(texts: Iterable[str], fraction: float) -> tuple[list[str], list[str]]:
    """(train, heldout) lists, each in input order."""
    train: list[str] = []
    heldout: list[str] = []
    for text in texts:
        (heldout if is_heldout(text, fraction) else train).append(text)
    return train, heldout


def join_documents(docs: Iterable[Sequence[int]], eos_id: int) -> list[int]:
    """One token stream with ``eos_id`` after every document (not doubled when a document ends with it)."""
    stream: list[int] = []
    for ids in docs:
        stream.extend(ids)
        if not ids or ids[-1] != eos_id:
            stream.append(eos_id)
    return stream


def pack_blocks(stream: Sequence[int], block_size: int, *, keep_short: bool = False) -> torch.Tensor:
    """Cut ``stream`` into non-overlapping blocks ``[n_blocks, block_size]``; the ragged tail is dropped.

    With ``keep_short`` a stream shorter than one block becomes a single shorter block instead of nothing,
    so a tiny held-out split can still be evaluated.
    """
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        if keep_short and len(stream) >= 2:
            return torch.tensor([list(stream)], dtype=torch.long)
        return torch.empty((0, block_size), dtype=torch.long)
    return torch.tensor(stream[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


def evenly_spaced_rows(blocks: torch.Tensor, limit: int) -> torch.Tensor:
    """At most ``limit`` rows spread evenly over ``blocks`` (first and last included).

    The held-out stream is in corpus order (captions, pool, conversations); taking its first rows would
    score only captions, so the evaluation subset is spread over the whole stream instead.
    """
    if blocks.shape[0] <= limit:
        return blocks
    index = torch.linspace(0, blocks.shape[0] - 1, limit).round().long()
    return blocks[index]


def unigram_log_probs(train_blocks: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Add-one smoothed unigram log-probabilities ``[vocab_size]`` from the training tokens."""
    counts = torch.bincount(train_blocks.reshape(-1), minlength=vocab_size).double() + 1.0
    return (counts / counts.sum()).log()


def unigram_perplexity(train_blocks: torch.Tensor, heldout_blocks: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of the unigram baseline on exactly the tokens the LM is scored on (positions 1..T-1)."""
    targets = heldout_blocks[:, 1:].reshape(-1)
    if targets.numel() == 0:
        raise ValueError("held-out split has no tokens to score")
    nll = -unigram_log_probs(train_blocks, vocab_size)[targets].mean().item()
    return math.exp(nll)
