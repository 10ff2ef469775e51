"""The tiny base LLM: config presets, data packing, pretraining, offline reload, cached generation, corpus."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM

from trainer.foundation.corpus import CorpusError, iter_world_documents, render_vicuna_v1
from trainer.foundation.lm_data import (
    evenly_spaced_rows,
    join_documents,
    pack_blocks,
    split_heldout,
    unigram_perplexity,
)
from trainer.foundation.lm_pretrain import (
    PretrainConfig,
    encode_stream,
    learning_rate_at,
    main,
    pretrain,
    resolve_precision,
    run_pretraining,
)
from trainer.foundation.tiny_lm import TinyLMConfig, build_tiny_lm, count_parameters, llama_config
from trainer.foundation.tokenizer import train_tokenizer

MEMORISED = "the sign on the left reads A7 and the star is red."
OTHERS = [
    "a small blue circle is at the top right.",
    "a large green striped square is below a pink ring.",
    "there are three shapes and one sign reading QX3.",
    "the vorn is a purple dotted crescent.",
    "a yellow hexagon is right of an orange cross.",
    "a gray diamond sits in the center of the image.",
    "two stars, one cyan and one brown, are at the bottom.",
    "a checkered pentagon is above a red triangle.",
]
CORPUS = [MEMORISED, *OTHERS] * 12


def grammar_captions(n: int, seed: int = 0) -> list[str]:
    """Seeded caption-like sentences: structured enough that held-out text is predictable."""
    rng = random.Random(seed)
    colors = ["red", "blue", "green", "yellow", "purple", "gray"]
    shapes = ["circle", "square", "star", "ring", "hexagon", "cross"]
    places = ["top left", "top right", "center", "bottom left", "bottom right"]
    out = []
    for _ in range(n):
        a, b = f"{rng.choice(colors)} {rng.choice(shapes)}", f"{rng.choice(colors)} {rng.choice(shapes)}"
        out.append(
            rng.choice(
                [
                    f"a {a} is at the {rng.choice(places)} of the image.",
                    f"a {a} is left of a {b}.",
                    f"there are {rng.randrange(2, 6)} shapes, including a {a}.",
                ]
            )
        )
    return out


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def trained(tok):
    torch.set_num_threads(1)
    cfg = replace(PretrainConfig.tiny(), heldout_fraction=0.3, max_steps=120)
    model, metrics = run_pretraining(CORPUS, tok, TinyLMConfig.tiny(), cfg, show_progress=False)
    return model, metrics


# --- config ---------------------------------------------------------------------------------------------


def test_default_preset_is_the_recipe_shape_with_tokenizer_ids(tok):
    cfg = TinyLMConfig.from_preset("default")
    llama = llama_config(cfg, tok)
    assert (llama.hidden_size, llama.num_hidden_layers, llama.num_attention_heads, llama.head_dim) == (
        192,
        4,
        6,
        32,
    )
    assert (llama.intermediate_size, llama.max_position_embeddings) == (512, 1024)
    assert llama.tie_word_embeddings and llama.rope_parameters["rope_theta"] == 10000.0
    assert llama.vocab_size == len(tok)
    assert (llama.bos_token_id, llama.eos_token_id, llama.pad_token_id) == (1, 2, 0)


def test_parameter_count_matches_hand_formula(tok):
    cfg = TinyLMConfig.tiny()
    model = build_tiny_lm(cfg, tok)
    v, h, i, n = len(tok), cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
    # tied embedding + per layer (q,k,v,o + gate,up,down + 2 RMSNorms) + final norm
    expected = v * h + n * (4 * h * h + 3 * h * i + 2 * h) + h
    assert count_parameters(model) == expected
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 30}, "divisible by num_heads"),
        ({"num_kv_heads": 3}, "multiple of num_kv_heads"),
        ({"num_layers": 0}, "num_layers must be positive"),
        ({"hidden_size": 36, "num_heads": 12, "num_kv_heads": 12}, "even head_dim"),
    ],
)
def test_contradictory_model_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        replace(TinyLMConfig.tiny(), **overrides)


def test_contradictory_pretrain_configs_raise():
    with pytest.raises(ValueError, match="warmup_steps"):
        replace(PretrainConfig.tiny(), warmup_steps=100, max_steps=100)
    with pytest.raises(ValueError, match="heldout_fraction"):
        replace(PretrainConfig.tiny(), heldout_fraction=0.0)
    with pytest.raises(ValueError, match="precision"):
        replace(PretrainConfig.tiny(), precision="fp16")
    with pytest.raises(ValueError, match="unknown"):
        TinyLMConfig.from_preset("huge")
    assert resolve_precision("fp32") == "fp32" and resolve_precision("auto") in ("fp32", "bf16")


def test_learning_rate_schedule_hand_values():
    cfg = replace(PretrainConfig.tiny(), learning_rate=1.0, min_lr_ratio=0.1, warmup_steps=4, max_steps=100)
    assert learning_rate_at(0, 0.0, cfg) == pytest.approx(0.25)
    assert learning_rate_at(3, 0.03, cfg) == pytest.approx(1.0)
    assert learning_rate_at(4, 0.0, cfg) == pytest.approx(1.0)
    assert learning_rate_at(50, 0.5, cfg) == pytest.approx(0.55)
    assert learning_rate_at(99, 1.0, cfg) == pytest.approx(0.1)
    assert learning_rate_at(99, 7.0, cfg) == pytest.approx(0.1)  # progress past the budget is clamped


# --- data -----------------------------------------------------------------------------------------------


def test_join_and_pack_hand_example():
    stream = join_documents([[5, 6], [7, 2], [], [8]], eos_id=2)
    assert stream == [5, 6, 2, 7, 2, 2, 8, 2]  # a document already ending in </s> is not doubled
    blocks = pack_blocks(stream, 3)
    assert blocks.tolist() == [[5, 6, 2], [7, 2, 2]]  # ragged tail dropped
    assert pack_blocks([9, 2], 4).shape == (0, 4)
    assert pack_blocks([9, 2], 4, keep_short=True).tolist() == [[9, 2]]


def test_encode_stream_matches_tokenizer_and_joins_with_eos(tok):
    texts = [MEMORISED, "<image>\nWhat is A7?", "x</s>"]
    expected = []
    for text in texts:
        ids = tok(text)["input_ids"]
        expected += ids if ids[-1] == tok.eos_token_id else [*ids, tok.eos_token_id]
    assert encode_stream(tok, texts, chunk=2) == expected
    assert expected.count(tok.eos_token_id) == 3


def test_evaluation_rows_are_spread_over_the_stream():
    blocks = torch.arange(10).view(10, 1)
    assert evenly_spaced_rows(blocks, 4).view(-1).tolist() == [0, 3, 6, 9]
    assert evenly_spaced_rows(blocks, 20).shape == (10, 1)


def test_split_is_by_content_and_deterministic():
    texts = [f"caption {i}" for i in range(200)] * 2
    train, heldout = split_heldout(texts, 0.2)
    assert len(train) + len(heldout) == 400
    assert not set(train) & set(heldout)  # duplicates never straddle the split
    assert 40 <= len(heldout) <= 120
    assert split_heldout(texts, 0.2) == (train, heldout)


def test_unigram_perplexity_hand_value():
    train = torch.tensor([[0, 0, 1, 1]])
    heldout = torch.tensor([[1, 0, 2]])  # scored targets: 0 and 2
    # add-one counts over vocab 3: [3, 3, 1] / 7
    expected = math.exp(-(math.log(3 / 7) + math.log(1 / 7)) / 2)
    assert unigram_perplexity(train, heldout, vocab_size=3) == pytest.approx(expected)


# --- training, saving, generation -------------------------------------------------------------------------


def test_loss_decreases_on_repeated_corpus(trained):
    _, metrics = trained
    history = metrics["loss_history"]
    assert metrics["steps"] == 120
    assert history[-1]["loss"] < 0.3 * history[0]["loss"]


def test_heldout_perplexity_far_below_unigram_on_structured_text():
    torch.set_num_threads(1)
    texts = grammar_captions(600)
    tok = train_tokenizer(texts, vocab_size=300)
    cfg = replace(PretrainConfig.tiny(), heldout_fraction=0.1, max_steps=150)
    _, metrics = run_pretraining(texts, tok, TinyLMConfig.tiny(), cfg, show_progress=False)
    assert metrics["documents"]["heldout"] > 20
    assert metrics["heldout_perplexity"] < 0.3 * metrics["unigram_perplexity"]


def test_time_budget_stops_training(tok):
    torch.set_num_threads(1)
    blocks = pack_blocks(encode_stream(tok, CORPUS), 32)
    cfg = replace(PretrainConfig.tiny(), max_steps=1_000_000, warmup_steps=5, precision="bf16")
    torch.manual_seed(0)
    model = build_tiny_lm(TinyLMConfig.tiny(), tok)
    started = time.perf_counter()
    result = pretrain(model, blocks, cfg, deadline=started + 1.5, show_progress=False)
    assert time.perf_counter() - started < 5.0
    assert 1 <= result["steps"] < 1_000_000 and result["precision"] == "bf16"


def test_bf16_still_learns(tok):
    # A fixed number of updates, not a time budget: how far a budget gets depends on the machine's load.
    torch.set_num_threads(1)
    blocks = pack_blocks(encode_stream(tok, CORPUS), 32)
    cfg = replace(PretrainConfig.tiny(), max_steps=120, warmup_steps=5, precision="bf16")
    torch.manual_seed(0)
    model = build_tiny_lm(TinyLMConfig.tiny(), tok)
    result = pretrain(model, blocks, cfg, show_progress=False)
    assert result["steps"] == 120 and result["precision"] == "bf16"
    assert result["loss_history"][-1]["loss"] < 0.5 * result["loss_history"][0]["loss"]


def _greedy(model, tok, prompt: str, *, use_cache: bool) -> str:
    ids = torch.tensor([tok(prompt)["input_ids"]])
    out = model.generate(ids, max_new_tokens=20, do_sample=False, use_cache=use_cache)
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_saved_model_reloads_offline_and_generates_memorised_continuation(trained, tok, tmp_path):
    from trainer.foundation.lm_pretrain import save_pretrained_lm

    model, metrics = trained
    save_pretrained_lm(model, tok, dict(metrics), tmp_path / "lm")
    assert (tmp_path / "lm" / "model.safetensors").is_file()
    assert not list((tmp_path / "lm").glob("*.bin"))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "lm", local_files_only=True)
    probe = torch.tensor([tok(MEMORISED)["input_ids"]])
    torch.testing.assert_close(reloaded(probe).logits, model(probe).logits)
    prefix = "the sign on the left reads"
    assert _greedy(reloaded, tok, prefix, use_cache=True) == MEMORISED[len(prefix) :]
    saved = json.loads((tmp_path / "lm" / "metrics.json").read_text())
    assert saved["heldout_perplexity"] == metrics["heldout_perplexity"] and saved["size_mb"] > 0


@pytest.mark.parametrize("which", ["trained", "random"])
def test_kv_cache_and_no_cache_greedy_generation_identical(trained, tok, which):
    if which == "trained":
        model = trained[0]
    else:
        torch.manual_seed(1)
        model = build_tiny_lm(TinyLMConfig.tiny(), tok).eval()
    for prompt in ("a large green", "there are", MEMORISED):
        assert _greedy(model, tok, prompt, use_cache=True) == _greedy(model, tok, prompt, use_cache=False)


# --- corpus + CLI -----------------------------------------------------------------------------------------


def _write_world(root, captions_train, captions_test, pool_rows):
    ann = root / "scenes" / "annotations"
    ann.mkdir(parents=True)
    for name, caps in (("captions_train.json", captions_train), ("captions_test.json", captions_test)):
        annotations = [{"image_id": img, "id": aid, "caption": c} for img, aid, c in caps]
        (ann / name).write_text(json.dumps({"images": [], "annotations": annotations}))
    (root / "pool").mkdir()
    keys, captions = zip(*pool_rows)
    n = len(keys)
    table = pa.table(
        {"key": list(keys), "image_path": ["x.png"] * n, "caption": list(captions), "url": [""] * n,
         "width": [64] * n, "height": [64] * n}
    )  # fmt: skip
    pq.write_table(table, root / "pool" / "pool.parquet")


def test_world_documents_order_sources_and_exclusions(tmp_path, tok):
    _write_world(
        tmp_path / "w",
        captions_train=[(2, 11, "second image"), (1, 10, " first image "), (2, 9, "second image, first ann")],
        captions_test=[(3, 1, "HELD-OUT SCENE")],
        pool_rows=[("b", "pool two"), ("a", "pool one")],
    )
    record = {
        "id": "r1",
        "image": "x.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is red?"},
            {"from": "gpt", "value": "The star."},
            {"from": "human", "value": "Where?"},
            {"from": "gpt", "value": "Top left."},
        ],
    }
    conv = tmp_path / "instruct.json"
    conv.write_text(json.dumps([record]))
    docs = list(iter_world_documents(tmp_path / "w", [conv]))
    texts = [d.text for d in docs]
    assert texts[:5] == ["first image", "second image, first ann", "second image", "pool one", "pool two"]
    assert "HELD-OUT SCENE" not in " ".join(texts)
    assert [d.source for d in docs] == ["captions_train.json"] * 3 + ["pool.parquet"] * 2 + ["instruct.json"]
    # The Python rendering is pinned to the tokenizer's Jinja chat template.
    messages = [
        {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
        for t in record["conversations"]
    ]
    assert texts[5] == tok.apply_chat_template(messages, tokenize=False)


def test_corpus_errors_name_the_file_and_record(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        list(iter_world_documents(tmp_path / "nowhere"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "r7", "conversations": [{"from": "robot", "value": "hi"}]}]))
    with pytest.raises(CorpusError, match=r"bad.json record 'r7': conversations\[0\].from"):
        list(iter_world_documents(None, [bad]))
    with pytest.raises(CorpusError, match="value must be a string"):
        render_vicuna_v1([{"from": "human", "value": 3}], where="x")


def test_cli_end_to_end_writes_model_tokenizer_and_metrics(tmp_path, tok):
    from trainer.foundation.tokenizer import save_tokenizer

    captions = [(i, i, text) for i, text in enumerate(grammar_captions(300))]
    _write_world(tmp_path / "w", captions, [], [(f"{i:03d}", t) for i, t in enumerate(OTHERS)])
    save_tokenizer(tok, tmp_path / "tok")
    out = tmp_path / "lm"
    argv = ["--world", str(tmp_path / "w"), "--tokenizer", str(tmp_path / "tok"), "--out", str(out)]
    assert main([*argv, "--preset", "tiny", "--max-steps", "10", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["params"] > 0
    assert metrics["heldout_perplexity"] > 1 and metrics["unigram_perplexity"] > 1
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in out.iterdir()
    }


def test_cli_reports_bad_input_as_one_line(tmp_path, capsys):
    from trainer.foundation.tokenizer import main as tokenizer_main

    assert (
        main(
            ["--world", str(tmp_path / "nowhere"), "--tokenizer", str(tmp_path), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "TokenizerLoadError" in capsys.readouterr().err
    assert tokenizer_main(["--world", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CorpusError") and "nowhere" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "t").exists()
