"""The SynthWorld tokenizer: byte-level BPE with LLaVA's special tokens and the vicuna_v1 chat template.

Byte-level BPE (GPT-2 style) never produces an unknown token and decodes back to the exact input, which
matters because sign codes such as "A7" and captions must survive a round trip unchanged. Case is NOT
normalised for the same reason.

Special tokens have fixed ids (``SPECIAL_TOKENS`` order = ids 0..4) so configs written before a tokenizer
is trained (pad/bos/eos ids in the LM config, the image token id in the LLaVA config) stay valid.
Encoding adds no special tokens: documents are separated by ``</s>`` explicitly (see ``lm_pretrain``) and
the chat template writes ``</s>`` after assistant turns, as in LLaVA's ``vicuna_v1`` (llava.md §4).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from trainer.foundation.corpus import CorpusError, iter_world_documents
from trainer.foundation.special_tokens import (
    BOS_TOKEN,
    EOS_TOKEN,
    IMAGE_TOKEN,
    MODEL_MAX_LENGTH,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    VICUNA_SYSTEM,
)
from vision_common.atomic import OutputNotWritableError, atomic_directory

# vicuna_v1 (llava.md §4): "SYS USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:".
# sep=" " follows the system text and user turns, sep2="</s>" follows assistant turns. Content may be a
# string (used verbatim) or a list of {"type": "image"} / {"type": "text", "text": ...} parts; every image
# part becomes "<image>\n" at the front of the turn, where LLaVA moves the marker. An empty system message
# renders no system block (LLaVA would leave a dangling " "), as llava_demo's builtin vicuna_v1 does.
VICUNA_V1_CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system_text = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system_text = '" + VICUNA_SYSTEM.replace("'", "\\'") + "' -%}{%- set turns = messages -%}"
    "{%- endif -%}"
    "{%- if system_text -%}{{- system_text + ' ' -}}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if message['content'] is string -%}{%- set body = message['content'] -%}"
    "{%- else -%}"
    "{%- set ns = namespace(images='', text='') -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set ns.images = ns.images + '" + IMAGE_TOKEN + "\\n' -%}"
    "{%- elif part['type'] == 'text' -%}{%- set ns.text = ns.text + part['text'] -%}"
    "{%- else -%}{{- raise_exception('unknown content part type: ' + part['type']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set body = ns.images + ns.text -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{- 'USER: ' + body + ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'ASSISTANT: ' + body + '" + EOS_TOKEN + "' -}}"
    "{%- else -%}{{- raise_exception('role must be user or assistant after an optional system message, "
    "got: ' + message['role']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)


class TokenizerLoadError(OSError):
    """A tokenizer directory is missing, incomplete or not a SynthWorld tokenizer; the message names it."""


def _special_added_tokens() -> list[AddedToken]:
    # normalized=False and no stripping: "<image>\nWhat" must keep its "\n", and the marker is matched on the
    # raw text before BPE runs, so it is never split and never merged with its neighbours.
    return [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in SPECIAL_TOKENS]


def _build_bpe_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    # add_prefix_space=False: a leading space would break decode(encode(x)) == x.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def wrap_tokenizer(raw: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a trained ``tokenizers.Tokenizer`` with the special-token roles and the chat template."""
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        actual = raw.token_to_id(token)
        if actual != expected_id:
            raise ValueError(f"special token {token!r} has id {actual}, expected {expected_id}")
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_input_names=["input_ids", "attention_mask"],
        chat_template=VICUNA_V1_CHAT_TEMPLATE,
        # The default clean-up rewrites " ." to "." and would break exact round trips.
        clean_up_tokenization_spaces=False,
        padding_side="right",
        model_max_length=MODEL_MAX_LENGTH,
    )


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on ``texts`` (case preserved) and return a ready transformers tokenizer."""
    min_vocab = 256 + len(SPECIAL_TOKENS)
    if vocab_size < min_vocab:
        raise ValueError(
            f"vocab_size must be at least {min_vocab} (256 bytes + special tokens), got {vocab_size}"
        )
    raw = _build_bpe_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=_special_added_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator((t for t in texts if t), trainer=trainer)
    raw.add_special_tokens(_special_added_tokens())
    return wrap_tokenizer(raw)


def save_tokenizer(tok: PreTrainedTokenizerFast, out_dir: str | os.PathLike[str]) -> Path:
    """Write the tokenizer (tokenizer.json, config, chat template) to ``out_dir`` atomically."""
    with atomic_directory(out_dir) as tmp:
        tok.save_pretrained(tmp)
    return Path(out_dir)


def load_tokenizer(tok_dir: str | os.PathLike[str]) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer from disk only (never the hub) and check its special-token ids."""
    path = Path(tok_dir)
    if not (path / "tokenizer.json").is_file():
        raise TokenizerLoadError(f"{path} has no tokenizer.json; train one with trainer.foundation.tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TokenizerLoadError(f"cannot load tokenizer from {path}: {type(exc).__name__}: {exc}") from exc
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if tok.convert_tokens_to_ids(token) != expected_id:
            raise TokenizerLoadError(f"{path}: special token {token!r} does not have id {expected_id}")
    return tok


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m trainer.foundation.tokenizer",
        description="Train the SynthWorld byte-level BPE tokenizer on a world's training text.",
    )
    parser.add_argument("--world", type=Path, required=True, help="SynthWorld directory (has manifest.json)")
    parser.add_argument(
        "--extra-json",
        type=Path,
        action="append",
        default=[],
        help="LLaVA conversation JSON to include (repeatable)",
    )
    parser.add_argument("--vocab-size", type=int, default=2048, help="target vocabulary size (default 2048)")
    parser.add_argument("--out", type=Path, required=True, help="output tokenizer directory")
    args = parser.parse_args(argv)

    try:
        texts = (doc.text for doc in iter_world_documents(args.world, args.extra_json))
        tok = train_tokenizer(texts, vocab_size=args.vocab_size)
        save_tokenizer(tok, args.out)
    except (CorpusError, OutputNotWritableError, ValueError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"tokenizer: {len(tok)} tokens -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
