"""Data sets for ``python -m bench nlu``: public many-intent sets where a registry
carries them, else a SYNTHETIC compositional set, each labelled as what it is.

Public sets (BANKING77, CC-BY-4.0; CLINC150, CC-BY-3.0, with its out-of-scope
queries; HWU64) are read from the files a user already has (``--clinc-json``: the
``data_full.json`` of clinc/oos-eval; ``--banking77-dir``: PolyAI's ``train.csv`` and
``test.csv``), never committed.  No package on PyPI or npm that carries them was
found from this machine (docs/benchmarks/nlu.md lists what was searched), so by
default only the synthetic set runs.

The synthetic set: 77 intents = 11 banking objects x 7 actions, phrased by
templates with synonyms; test phrasings use templates and synonyms the training
examples do not (held-out wording, same meaning), and out-of-scope queries put
the same templates around objects no intent handles.  Intents sharing an object
or an action are close neighbours, as in BANKING77.  It measures the mechanics
(calibration, coverage, rejection, load, memory, latency) honestly; its accuracy
is not a public benchmark's.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IntentData", "load_banking77", "load_clinc", "synthetic"]


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentData:
    name: str
    kind: str  # "public" or "SYNTHETIC"
    licence: str
    train: tuple[tuple[str, str], ...]  # (text, intent)
    test: tuple[tuple[str, str], ...]
    oos_train: tuple[str, ...] = ()
    oos_test: tuple[str, ...] = ()


def load_clinc(path: Path) -> IntentData:
    """CLINC150 from clinc/oos-eval's ``data_full.json`` (in-scope + out-of-scope)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return IntentData(name="CLINC150", kind="public", licence="CC-BY-3.0",
                      train=tuple((t, i) for t, i in raw["train"]),
                      test=tuple((t, i) for t, i in raw["test"]),
                      oos_train=tuple(t for t, _ in raw["oos_train"]),
                      oos_test=tuple(t for t, _ in raw["oos_test"]))


def load_banking77(folder: Path) -> IntentData:
    """BANKING77 from PolyAI's ``train.csv`` / ``test.csv`` (text,category)."""
    def rows(name: str) -> tuple[tuple[str, str], ...]:
        with (Path(folder) / name).open(encoding="utf-8", newline="") as f:
            return tuple((r["text"], r["category"]) for r in csv.DictReader(f))
    return IntentData(name="BANKING77", kind="public", licence="CC-BY-4.0",
                      train=rows("train.csv"), test=rows("test.csv"))


_OBJECTS = {
    "card": ("card", "bank card", "debit card", "plastic card"),
    "pin": ("PIN", "PIN code", "pin number", "card PIN"),
    "transfer": ("transfer", "bank transfer", "money transfer", "wire"),
    "top_up": ("top up", "top-up", "account top up", "balance top up"),
    "direct_debit": ("direct debit", "standing order", "recurring payment", "debit order"),
    "statement": ("statement", "monthly statement", "account statement", "bank statement"),
    "cheque": ("cheque", "check deposit", "paper cheque", "cheque payment"),
    "loan": ("loan", "personal loan", "credit", "borrowing"),
    "savings": ("savings", "savings pot", "savings account", "deposit account"),
    "card_payment": ("card payment", "purchase", "payment at a shop", "online payment"),
    "exchange": ("currency exchange", "foreign exchange", "exchange rate", "FX conversion"),
}
_ACTIONS = {
    "status": ("check the status of", "see what happened to", "track", "find out about"),
    "cancel": ("cancel", "stop", "call off", "revoke"),
    "change": ("change", "update", "modify", "edit"),
    "problem": ("report a problem with", "complain about", "get help with a broken",
                "fix an issue with"),
    "fee": ("know the fee for", "find out the charge for", "ask about the cost of",
            "understand the price of"),
    "activate": ("activate", "set up", "turn on", "start using"),
    "dispute": ("dispute", "challenge", "contest", "question a wrong"),
}
_TRAIN_TEMPLATES = ("I want to {a} my {o}", "how do I {a} my {o}", "can you help me {a} my {o}",
                    "I need to {a} the {o}", "please {a} my {o}", "{a} {o}",
                    "I'd like to {a} my {o} today", "is it possible to {a} the {o}",
                    "how can I {a} my {o} online", "I must {a} my {o} now",
                    "help me {a} my {o} please", "what do I do to {a} my {o}",
                    "I am trying to {a} my {o}")
_TEST_TEMPLATES = ("could you {a} my {o} for me", "I would really like to {a} my {o}",
                   "hi, can I {a} my {o}?", "what's the way to {a} a {o}",
                   "I'm calling to {a} my {o}", "tell me how to {a} my {o}")
_OOS_OBJECTS = ("pizza order", "flight booking", "gym membership", "phone contract",
                "car insurance", "hotel room", "concert tickets", "library book",
                "dentist appointment", "train ticket")


def synthetic(*, seed: int = 16) -> IntentData:
    """The 77-intent SYNTHETIC set (module docstring): 13 training phrasings per intent
    (train synonyms 0-1 of each word, test synonyms 2-3), 6 test phrasings per intent,
    out-of-scope queries on objects no intent handles."""
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for obj, obj_words in _OBJECTS.items():
        for act, act_words in _ACTIONS.items():
            intent = f"{act}_{obj}"
            for template in _TRAIN_TEMPLATES:
                text = template.format(a=rng.choice(act_words[:2]), o=rng.choice(obj_words[:2]))
                train.append((text, intent))
            for template in _TEST_TEMPLATES:
                text = template.format(a=rng.choice(act_words[2:]), o=rng.choice(obj_words[2:]))
                test.append((text, intent))
    oos = [template.format(a=rng.choice(words), o=other)
           for template in (*_TRAIN_TEMPLATES, *_TEST_TEMPLATES)
           for other, words in zip(_OOS_OBJECTS, (*_ACTIONS.values(),) * 2, strict=False)]
    rng.shuffle(oos)
    return IntentData(name="synthetic-77", kind="SYNTHETIC",
                      licence="generated here (bench/nlu_data.py)", train=tuple(train),
                      test=tuple(test), oos_train=tuple(oos[:40]), oos_test=tuple(oos[40:]))
