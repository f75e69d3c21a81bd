"""What a human study asks: question types, explanation conditions and the study design (a frozen dataclass).

The paper's study (SPADE, arXiv 2310.04519, section 5.2): an image with two marked patches and the class
neuron's visualisation, dense or SPADE; the participant chooses which patch drove the decision. Registries here
drive the designer page's select boxes and the tests alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

SIDES = ("left", "right")
UNDECIDED = "undecided"
CHOICES = (*SIDES, UNDECIDED)


@dataclass(frozen=True)
class Question:
    """A two-alternative question type shown to participants."""

    key: str
    title: str
    prompt: str
    option_label: str  # how one alternative is called on the choice buttons ("patch", "image")


@dataclass(frozen=True)
class Condition:
    """One explanation shown next to a trial: a visualisation or a saliency map, of the dense or SPADE model."""

    key: str
    title: str
    kind: str  # "vis" | "saliency" | "none"
    pruned: bool
    questions: tuple[str, ...]


QUESTIONS: dict[str, Question] = {
    "patch": Question(
        "patch",
        "Which of two marked patches drove the decision? (the paper's design)",
        "Which of the two marked patches made the network decide for this class?",
        "patch",
    ),
    "neuron": Question(
        "neuron",
        "Which of two images makes the neuron fire more?",
        "Which of the two images makes this neuron fire more?",
        "image",
    ),
}

CONDITIONS: dict[str, Condition] = {
    "dense_vis": Condition("dense_vis", "Neuron visualisation, dense model", "vis", False, ("patch", "neuron")),
    "spade_vis": Condition("spade_vis", "Neuron visualisation, SPADE-pruned model", "vis", True, ("patch", "neuron")),
    "dense_saliency": Condition("dense_saliency", "Saliency map, dense model", "saliency", False, ("patch",)),
    "spade_saliency": Condition("spade_saliency", "Saliency map, SPADE-pruned model", "saliency", True, ("patch",)),
    "none": Condition("none", "No explanation (control)", "none", False, ("patch", "neuron")),
}


def conditions_for(question: str) -> list[str]:
    """Condition keys that make sense for a question type."""
    return [k for k, c in CONDITIONS.items() if question in c.questions]


@dataclass(frozen=True)
class StudyDesign:
    """Everything that defines a study; stored as JSON in the `studies` table.

    Items are sample specs (see `spade_engine.study.samples`): `{"source": "testbed", "cls", "facet", "seed",
    "trojan"}` or `{"source": "file", "path"}`. For the "neuron" question an item also names the second image
    (`"other"`) and the neuron (`"neuron": {"layer", "channel"}`); for "patch" the neuron is the predicted class
    logit. Every item is shown in every condition across participants, in one condition per participant.
    """

    name: str
    model: str
    question: str = "patch"
    conditions: tuple[str, ...] = ("dense_vis", "spade_vis")
    items: tuple[dict, ...] = ()
    trials_per_participant: int = 10
    seed: int = 0
    sparsity: float = 0.9
    n_aug: int = 64
    saliency_method: str = ""
    vis_steps: int = 128
    vis_late_layers: bool = True  # visualisation conditions prune only the late layers (the reference's setting)
    patch_grid: int = 4
    allow_undecided: bool = True
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(self.conditions))
        object.__setattr__(self, "items", tuple(dict(i) for i in self.items))

    def validate(self) -> list[str]:
        """Problems that stop the design from being used (an empty list when it is fine)."""
        errors = []
        if self.question not in QUESTIONS:
            errors.append(f"Unknown question type '{self.question}'.")
        if len(self.conditions) < 1 or len(set(self.conditions)) != len(self.conditions):
            errors.append("Choose at least one condition, each once.")
        errors += [
            f"Condition '{c}' does not fit the '{self.question}' question."
            for c in self.conditions
            if c not in CONDITIONS or self.question not in CONDITIONS[c].questions
        ]
        if not self.items:
            errors.append("The study needs at least one item (sample).")
        if self.trials_per_participant < 1:
            errors.append("Each participant needs at least one trial.")
        if (
            any(CONDITIONS[c].kind == "saliency" for c in self.conditions if c in CONDITIONS)
            and not self.saliency_method
        ):
            errors.append("Saliency conditions need a saliency method.")
        if self.question == "neuron" and any("other" not in i or "neuron" not in i for i in self.items):
            errors.append("Every item of a 'neuron' study needs an 'other' image and a 'neuron'.")
        return errors

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict) -> StudyDesign:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def with_(self, **changes) -> StudyDesign:
        """A copy with some fields changed."""
        return replace(self, **changes)
