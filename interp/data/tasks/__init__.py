"""Task data of the task-vector study (brief, section B): one JSON file per task.

A task maps an input (a word, or an embedded image concept) to an answer: ``robin -> bird``,
``cow -> calf``, ``banana -> yellow``, ``France -> Paris``. Each file holds the task's
instruction, its items with their split (``train`` = the pool of demonstrations, ``val``,
``test``), every accepted answer per item (scoring is exact match of the first answer token,
any accepted answer counts) and a ``sources`` note saying where the facts come from.
Image tasks (``image: true``) have an embedded image concept per item, so every item can be
posed as text or as an image. Files are written by ``python -m interp.data.tasks.build``.

    from interp.data.tasks import load_task, available_tasks
    task = load_task("hypernym")
    task.split("test")[0]        # TaskItem(input='sparrow', answers=('bird', 'animal'), concept=...)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskItem:
    """``input``: the text shown ("hot dog"); ``answers``: accepted answers, canonical first;
    ``concept``: the embedded image concept (image tasks) or None; ``split``: train/val/test."""

    input: str
    answers: tuple[str, ...]
    split: str
    concept: str | None = None

    @property
    def answer(self) -> str:
        return self.answers[0]


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    instruction: str
    image: bool
    sources: str
    items: tuple[TaskItem, ...]
    meta: dict = field(default_factory=dict, repr=False, compare=False)

    def split(self, name: str) -> list[TaskItem]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: valid splits are {list(SPLITS)}")
        return [it for it in self.items if it.split == name]

    def answer_set(self) -> list[str]:
        """Every accepted answer of the task, sorted (for set-restricted scoring)."""
        return sorted({a for it in self.items for a in it.answers})

    def counts(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in SPLITS}


def task_path(name: str, directory: str | Path | None = None) -> Path:
    return Path(directory or TASK_DIR) / f"{name}.json"


def available_tasks(directory: str | Path | None = None) -> list[str]:
    """Names of the task files in ``directory`` (default: the packaged ones)."""
    return sorted(p.stem for p in Path(directory or TASK_DIR).glob("*.json"))


def task_from_dict(d: dict) -> Task:
    items = []
    for i, it in enumerate(d["items"]):
        answers = tuple(it["answers"])
        if not answers or it["split"] not in SPLITS or not it["input"]:
            raise ValueError(f"task {d.get('name')!r} item {i} is malformed: {it}")
        items.append(TaskItem(it["input"], answers, it["split"], it.get("concept")))
    if d.get("image") and any(it.concept is None for it in items):
        raise ValueError(f"image task {d['name']!r} has items without an image concept")
    return Task(d["name"], d["description"], d["instruction"], bool(d.get("image")), d["sources"], tuple(items),
                {k: v for k, v in d.items() if k not in ("items",)})


def load_task(name: str, directory: str | Path | None = None) -> Task:
    """A task by name (packaged file) or by path to a task JSON file."""
    path = Path(name) if name.endswith(".json") else task_path(name, directory)
    if not path.exists():
        raise FileNotFoundError(f"no task {name!r} at {path}; available tasks: {available_tasks(directory)}")
    return task_from_dict(json.loads(path.read_text()))
