"""The SynthWorld tokenizer's special tokens (fixed ids) and the vicuna_v1 system prompt, shared by the tokenizer
and the training corpus (which writes documents in the chat format the tokenizer's template renders)."""

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
IMAGE_TOKEN = "<image>"
# Order is the id assignment: <pad>=0, <s>=1, </s>=2, <unk>=3, <image>=4.
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, IMAGE_TOKEN)
IMAGE_TOKEN_ID = SPECIAL_TOKENS.index(IMAGE_TOKEN)
# Matches the tiny LM's max_position_embeddings; longer inputs are a caller error, not a silent truncation.
MODEL_MAX_LENGTH = 1024

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
