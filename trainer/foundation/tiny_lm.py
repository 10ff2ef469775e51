"""The tiny base LLM: a standard transformers ``LlamaForCausalLM`` sized to pretrain on 2 CPU cores.

Using the stock Llama class (not a custom module) means every downstream tool (``generate``, the KV cache,
``LlavaNextForConditionalGeneration``'s ``text_config``, SGLang) treats it like any other Llama checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TinyLMConfig:
    """Shape of the tiny Llama. ``vocab_size`` and the special ids come from the tokenizer at build time.

    Presets:
      * ``tiny``: hidden 32, 2 layers, 4 heads of 8 (about 37k params with a 512 vocab); for tests, builds
        and trains a few hundred steps in seconds.
      * ``default``: hidden 192, 4 layers, 6 heads of 32, MLP 512, tied embeddings (about 2.2M params with
        a 2048 vocab, ~9 MB fp32); the recipe pretrains it in <= 5 minutes on 2 CPU cores.
    """

    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 6
    num_kv_heads: int = 6
    intermediate_size: int = 512
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    # Tied input/output embeddings: at vocab 2048 x hidden 192 the embedding is ~18% of the model.
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TinyLMConfig.{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyLMConfig.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"TinyLMConfig.num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads}) for grouped-query attention"
            )
        if self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {self.head_dim}")
        if self.max_position_embeddings < 16:
            raise ValueError(
                f"max_position_embeddings must be at least 16, got {self.max_position_embeddings}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def tiny(cls) -> TinyLMConfig:
        return cls(
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            num_kv_heads=4,
            intermediate_size=64,
            max_position_embeddings=256,
        )

    @classmethod
    def default(cls) -> TinyLMConfig:
        return cls()

    @classmethod
    def from_preset(cls, name: str) -> TinyLMConfig:
        presets = {"tiny": cls.tiny, "default": cls.default}
        if name not in presets:
            raise ValueError(f"unknown TinyLM preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def llama_config(cfg: TinyLMConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """The ``LlamaConfig`` for ``cfg``, with vocabulary size and bos/eos/pad ids taken from ``tokenizer``."""
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id}
    missing = [name for name, value in ids.items() if value is None]
    if missing:
        raise ValueError(
            f"tokenizer has no {', '.join(missing)} token; train it with trainer.foundation.tokenizer"
        )
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_word_embeddings,
        initializer_range=cfg.initializer_range,
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )


def build_tiny_lm(cfg: TinyLMConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama (weights drawn from the global torch RNG: seed it first)."""
    model = LlamaForCausalLM(llama_config(cfg, tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def count_parameters(model: LlamaForCausalLM) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
