"""Response-format prompts from the dissertation (LLaVA-1.5, Sec. 4): short instructions appended to a
question that steer the answer's format. Shared by the data engine (training data), the eval sets and the app's
presets, so the exact strings live in one place."""

SHORT_ANSWER = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE = "Answer with the option's letter from the given choices directly."
YES_NO = "Please answer yes or no."
# LLaVA-1.5's remedy for hallucinating on false premises: ask the model to check the question first.
VERIFY_QUESTION = (
    "First check whether the question can be answered from the image; if it rests on something that is not in "
    "the image, say so instead of guessing."
)
JSON_OUTPUT = "Answer with a single JSON object and nothing else."
