"""System messages and hand-written few-shot seed examples for the LLM teacher (written for this project).

As in LLaVA Sec. 3.3, each response type has its own system message, and a few seed examples are replayed as
earlier user/assistant turns so the teacher copies the reply format. The seeds cover both a SynthWorld scene
(attributes, a sign) and a real-COCO-style street scene (categories only).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.data_engine.teachers import ResponseType

_SHARED_RULES = (
    "You are a visual assistant who can see one image. Instead of pixels you receive its captions and a list "
    "of objects, one per line, as category: [x1, y1, x2, y2] with coordinates as fractions of the image width "
    "and height measured from the top left corner; attributes, when known, follow in parentheses. Speak as if "
    "you were looking at the image yourself: never mention captions, boxes, coordinates or a list of objects. "
    "Only state what the given information supports; never invent objects that are not listed."
)

SYSTEM_MESSAGES: dict[ResponseType, str] = {
    ResponseType.CONVERSATION: (
        f"{_SHARED_RULES}\n\nWrite a conversation between a person asking about the image and you answering. "
        "Ask varied questions: what objects there are, how many, their colours and patterns, where they are, "
        "how they are placed relative to each other, and what any sign says. Ask only questions whose answer "
        "is certain from the information. Use 3 to 5 rounds. Put every question on a line starting with "
        "'Question:' and every answer on a line starting with 'Answer:', alternating, nothing else."
    ),
    ResponseType.DETAIL: (
        f"{_SHARED_RULES}\n\nWrite a detailed description of the image in one paragraph of several sentences: "
        "cover every object, its appearance and where it is, and how the objects are arranged. Reply with the "
        "description only."
    ),
    ResponseType.COMPLEX: (
        f"{_SHARED_RULES}\n\nAsk one question about the image that needs reasoning rather than naming what "
        "is visible (comparing, counting under a condition, spatial reasoning, what the scene suggests), then "
        "answer it step by step, explaining how the image supports the answer. Reply as a line starting with "
        "'Question:' followed by a line starting with 'Answer:'."
    ),
}


@dataclass(frozen=True)
class SeedExample:
    context: str
    response: str


_SYNTH_CONTEXT = """Captions:
A large red striped circle is in the top left, near a small blue star.
Three shapes and a sign on a light background.
A sign reading K7 stands at the bottom right.
A green checkered triangle sits in the center.
A small star is to the right of the big circle.

Objects (category: [x1, y1, x2, y2], fractions of image width/height from the top left):
circle: [0.050, 0.040, 0.420, 0.380] (large red striped)
star: [0.480, 0.100, 0.610, 0.230] (small blue plain)
triangle: [0.350, 0.400, 0.640, 0.700] (medium green checkered)
sign: [0.700, 0.800, 0.920, 0.900] (text "K7")"""

_STREET_CONTEXT = """Captions:
A man rides a bicycle past a red bus on a city street.
A cyclist and a bus share a busy road.
A person on a bike next to a large bus.
A city bus drives by as a man cycles along the road.
Traffic on a street with a bus, a car and a cyclist.

Objects (category: [x1, y1, x2, y2], fractions of image width/height from the top left):
person: [0.412, 0.301, 0.530, 0.780]
bicycle: [0.398, 0.520, 0.561, 0.842]
bus: [0.010, 0.152, 0.380, 0.690]
car: [0.640, 0.480, 0.900, 0.700]
traffic light: [0.810, 0.050, 0.850, 0.200]"""

SEED_EXAMPLES: dict[ResponseType, tuple[SeedExample, ...]] = {
    ResponseType.CONVERSATION: (
        SeedExample(
            _SYNTH_CONTEXT,
            "Question: What shapes can you see in the image?\n"
            "Answer: There are three shapes: a large red striped circle, a small blue star and a green "
            "checkered triangle. There is also a sign.\n"
            "Question: What does the sign say?\n"
            "Answer: The sign reads K7.\n"
            "Question: Where is the circle?\n"
            "Answer: The circle is in the top left of the image.\n"
            "Question: Is the star to the left or to the right of the circle?\n"
            "Answer: The star is to the right of the circle.",
        ),
        SeedExample(
            _STREET_CONTEXT,
            "Question: What is the man in the image doing?\n"
            "Answer: He is riding a bicycle along a city street.\n"
            "Question: Which vehicle is on the left side of the picture?\n"
            "Answer: A large bus occupies the left side of the picture.\n"
            "Question: How many cars are there?\n"
            "Answer: There is one car, on the right of the cyclist.\n"
            "Question: Is there a traffic light?\n"
            "Answer: Yes, there is a traffic light near the top right corner.",
        ),
    ),
    ResponseType.DETAIL: (
        SeedExample(
            _SYNTH_CONTEXT,
            "The image shows three shapes and a sign on a light background. In the top left there is a large "
            "red circle with stripes, the biggest object in the scene. To its right, higher up, sits a small "
            "plain blue star. A medium-sized green triangle with a checkered pattern occupies the center, "
            "below the star. In the bottom right corner a small rectangular sign carries the code K7.",
        ),
        SeedExample(
            _STREET_CONTEXT,
            "The picture captures a busy city street. A man rides a bicycle through the middle of the scene, "
            "his bike partly in front of him as he pedals. On the left, a large bus fills much of the frame, "
            "driving alongside the cyclist. A car is visible on the right, a little further along the road, "
            "and a traffic light hangs near the top right corner, suggesting an intersection ahead.",
        ),
    ),
    ResponseType.COMPLEX: (
        SeedExample(
            _SYNTH_CONTEXT,
            "Question: If the sign were moved next to the largest shape, which corner of the image would it "
            "have to move toward?\n"
            "Answer: The largest shape is the red striped circle, which sits in the top left. The sign is "
            "currently in the bottom right, so it would have to move diagonally across the image toward the "
            "top left corner, passing the green triangle in the center on the way.",
        ),
        SeedExample(
            _STREET_CONTEXT,
            "Question: What should the cyclist be careful about in this situation?\n"
            "Answer: The cyclist rides right beside a large bus, which has blind spots and needs a lot of room, "
            "so he should keep a safe distance from it. A car is also ahead on the right and a traffic light "
            "marks an intersection, so he should watch the signal and the car's movements before crossing.",
        ),
    ),
}


def build_messages(kind: ResponseType, context_text: str) -> list[dict[str, str]]:
    """System message, the seed examples as prior turns, then the image's symbolic context."""
    messages = [{"role": "system", "content": SYSTEM_MESSAGES[kind]}]
    for example in SEED_EXAMPLES[kind]:
        messages.append({"role": "user", "content": example.context})
        messages.append({"role": "assistant", "content": example.response})
    messages.append({"role": "user", "content": context_text})
    return messages
