"""Whisper's token layout and a stand-in ``tokenizer.json`` with the real vocabulary size.

Whisper (tiny/base/small, v1/v2 token layout) has a byte-level BPE text
vocabulary followed by special tokens at fixed ids:

================================  ===============  ==================
token                             English-only     multilingual
================================  ===============  ==================
text tokens (byte-level BPE)      0 .. 50255       0 .. 50256
``<|endoftext|>``                 50256            50257
``<|startoftranscript|>``         50257            50258
99 language tokens (``<|en|>``)   50258 .. 50356   50259 .. 50357
``<|translate|>``                 50357            50358
``<|transcribe|>``                50358            50359
``<|startoflm|>``                 50359            50360
``<|startofprev|>``               50360            50361
``<|nocaptions|>``                50361            50362
``<|notimestamps|>``              50362            50363
1501 timestamps ``<|0.00|>`` ..   50363 .. 51863   50364 .. 51864
vocabulary size                   51864            51865
================================  ===============  ==================

:func:`build_tokenizer` makes a ``tokenizers`` tokenizer with exactly this
layout.  Its text part is not OpenAI's BPE: the 256 byte tokens come in GPT-2's
``bytes_to_unicode`` order (so ``"Ġ"``, a space, is id 220 as in Whisper) and the
rest are lowercase pseudo-words (``"Ġab"``, ``"xyz"``, ...) built by valid merges,
so encoding and decoding work and random token ids decode to word-like text.
As in OpenAI's multilingual vocabulary, its last text token (50256) is the empty
string, which is how CTranslate2 tells a multilingual model from an English one.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LANGUAGES",
    "TIMESTAMP_TOKENS",
    "WhisperTokenLayout",
    "build_tokenizer",
    "bytes_to_unicode",
    "non_speech_ids",
    "token_layout",
]

LANGUAGES: tuple[str, ...] = tuple(
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta "
    "no th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk "
    "sq sw gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb "
    "my bo tl mg as tt haw ln ha ba jw su".split()
)
"""The 99 language codes of Whisper v1/v2, in token order."""

TIMESTAMP_TOKENS = 1501
"""``<|0.00|>`` to ``<|30.00|>`` in 20 ms steps."""

_TEXT_TOKENS = {False: 50257, True: 50258}  # text tokens + <|endoftext|>, by multilingual
_TASK_TOKENS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)


@dataclass(frozen=True, slots=True)
class WhisperTokenLayout:
    """Ids of Whisper's special tokens for one variant (see the module table)."""

    multilingual: bool
    eot: int
    sot: int
    first_language: int
    translate: int
    transcribe: int
    sot_lm: int
    sot_prev: int
    no_speech: int
    no_timestamps: int
    timestamp_begin: int
    vocabulary_size: int

    @property
    def language_ids(self) -> list[int]:
        """Ids of the 99 language tokens."""
        return list(range(self.first_language, self.first_language + len(LANGUAGES)))

    def special_tokens(self) -> list[str]:
        """Every token from ``<|endoftext|>`` to the last timestamp, in id order."""
        languages = [f"<|{code}|>" for code in LANGUAGES]
        timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMP_TOKENS)]
        return ["<|endoftext|>", "<|startoftranscript|>", *languages, *_TASK_TOKENS, *timestamps]


def token_layout(*, multilingual: bool) -> WhisperTokenLayout:
    """The special token ids of the English-only or the multilingual vocabulary."""
    eot = _TEXT_TOKENS[multilingual] - 1
    first_language = eot + 2
    translate = first_language + len(LANGUAGES)
    no_timestamps = translate + len(_TASK_TOKENS) - 1
    return WhisperTokenLayout(
        multilingual=multilingual,
        eot=eot,
        sot=eot + 1,
        first_language=first_language,
        translate=translate,
        transcribe=translate + 1,
        sot_lm=translate + 2,
        sot_prev=translate + 3,
        no_speech=translate + 4,
        no_timestamps=no_timestamps,
        timestamp_begin=no_timestamps + 1,
        vocabulary_size=no_timestamps + 1 + TIMESTAMP_TOKENS,
    )


def bytes_to_unicode() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in GPT-2 token id order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(shifted))]


def _pseudo_words() -> Iterator[tuple[str, str]]:
    """``(left, right)`` merges, shortest first, so every left part already exists."""
    letters = string.ascii_lowercase
    for length in itertools.count(1):
        for prefix in ("Ġ", ""):
            for chars in itertools.product(letters, repeat=length):
                word = prefix + "".join(chars)
                if len(word) >= 2:
                    yield word[:-1], word[-1]


def build_tokenizer(*, multilingual: bool) -> Any:
    """A ``tokenizers.Tokenizer`` with Whisper's special ids and vocabulary size."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    layout = token_layout(multilingual=multilingual)
    vocab: dict[str, int] = {token: i for i, token in enumerate(bytes_to_unicode())}
    merges: list[tuple[str, str]] = []
    last_filler = layout.eot - 1 if multilingual else layout.eot
    for left, right in _pseudo_words():
        if len(vocab) == last_filler:
            break
        vocab[left + right] = len(vocab)
        merges.append((left, right))
    if multilingual:  # OpenAI's multilingual vocabulary ends its text part with ""
        vocab[""] = len(vocab)  # (CTranslate2 tells multilingual models by this token)
    specials = layout.special_tokens()
    for token in specials:
        vocab[token] = len(vocab)
    if len(vocab) != layout.vocabulary_size:
        raise AssertionError(f"vocabulary has {len(vocab)} tokens, not {layout.vocabulary_size}")
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in specials])
    return tokenizer


def non_speech_ids(tokenizer: Any) -> list[int]:
    """First token of each symbol Whisper suppresses (as faster-whisper computes them)."""
    symbols = [*'"#()*+/:;<=>@[\\]^_`{|}~「」『』']
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    ids = {
        tokenizer.encode(" -", add_special_tokens=False).ids[0],
        tokenizer.encode(" '", add_special_tokens=False).ids[0],
    }
    for symbol in [*symbols, *"♩♪♫♬♭♮♯"]:
        for text in (symbol, " " + symbol):
            ids.add(tokenizer.encode(text, add_special_tokens=False).ids[0])
    return sorted(ids)
