"""OpenAI CLIP image normalisation, shared by AnyRes pixels, the tiny CLIP and checkpoint conversion."""

# transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD; open_clip's OPENAI_DATASET_MEAN / OPENAI_DATASET_STD.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
