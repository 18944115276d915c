"""Hidden rules for bench/efficacy.py's scripted users: what each user group wants from an answer.

Each rule is a pure function of the answer text. A rule's `reason` is what its users say with a 👎;
its `rewrite`, when it has one, turns an answer into one that satisfies the rule (the rewrite a user
would type into /api/demonstrations); rules without one get a sibling candidate that satisfies it.
`python bench/efficacy.py --base-rates` measures every rule here on the base model; the ones whose
base rate is 15-70 % are the benchmark's rules (BENCHMARKS.md lists them with their rates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # formatting, phrase, tone, length, content: the benchmark wants rules of different kinds
    wants: str  # the rule in words, for reports
    check: Callable[[str], bool]
    reason: str  # the 👎 reason its users give
    rewrite: Callable[[str], str] | None = None


def words(text: str) -> list[str]:
    return text.split()


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def has_list(text: str) -> bool:
    return len(_LIST_ITEM.findall(text)) >= 2


def as_list(text: str) -> str:
    """Every sentence as a bullet."""
    parts = sentences(text) or [text.strip() or "No."]
    if len(parts) == 1:
        parts = [p.strip() for p in re.split(r"[,;]\s+", parts[0]) if p.strip()] or parts
    if len(parts) == 1:
        parts = parts + ["That is all."]
    return "\n".join(f"- {p}" for p in parts)


def has_bold(text: str) -> bool:
    return re.search(r"\*\*[^*\n]+\*\*", text) is not None


def paragraphs(text: str) -> int:
    return len([p for p in re.split(r"\n\s*\n", text) if p.strip()])


def opens_with_affirmation(text: str) -> bool:
    return re.match(r"\s*(sure|certainly|of course|absolutely|yes|great question)\b", text, re.IGNORECASE) is not None


def says(*phrases: str) -> Callable[[str], bool]:
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b", re.IGNORECASE)
    return lambda text: pattern.search(text) is not None


def exclaims(text: str) -> bool:
    return "!" in text


def with_exclamation(text: str) -> str:
    body = text.rstrip()
    return (body[:-1] if body[-1:] in ".?" else body) + "!" if body else "Great!"


def asks_back(text: str) -> bool:
    return "?" in text


def word_band(low: int, high: int) -> Callable[[str], bool]:
    return lambda text: low <= len(words(text)) <= high


def cut_to_words(high: int) -> Callable[[str], str]:
    def cut(text: str) -> str:
        kept, total = [], 0
        for s in sentences(text):
            if total + len(words(s)) > high:
                break
            kept.append(s)
            total += len(words(s))
        return " ".join(kept) or " ".join(words(text)[:high])
    return cut


def has_number(text: str) -> bool:
    return re.search(r"\d", text) is not None


def ends_complete(text: str) -> bool:
    return text.rstrip()[-1:] in tuple(".!?)\"'")


def complete(text: str) -> str:
    kept = sentences(text)
    if kept and not ends_complete(kept[-1]):
        kept = kept[:-1]
    return " ".join(kept) or "I am not sure."


# One per kind, each with a base rate of 15-70 % (bench/results/efficacy-base-rates.json, 2026-12-04:
# 55 %, 21 %, 17 %, 26 %, 33 %): the rules bench/efficacy.py runs unless told otherwise.
BENCHMARK_RULES = ("paragraphs", "however", "asks_back", "words_40_120", "number")

RULES: dict[str, Rule] = {r.name: r for r in [
    Rule("list", "formatting", "a bulleted or numbered list (two or more items)", has_list,
         "Please use a list", as_list),
    Rule("bold", "formatting", "some **bold** text", has_bold, "Highlight the key point in bold"),
    Rule("paragraphs", "formatting", "three or more paragraphs", lambda t: paragraphs(t) >= 3,
         "Break it into paragraphs"),
    Rule("affirmation", "phrase", "opens with 'Sure', 'Certainly', 'Of course', 'Absolutely' or 'Yes'",
         opens_with_affirmation, "Start with 'Sure'", lambda t: "Sure! " + t.lstrip()),
    Rule("however", "phrase", "uses the word 'however'", says("however"), "Weigh both sides"),
    Rule("important", "phrase", "uses the word 'important'", says("important"), "Say what is important"),
    Rule("exclaims", "tone", "an exclamation mark somewhere", exclaims, "Sound more enthusiastic",
         with_exclamation),
    Rule("asks_back", "tone", "asks the user a question back", asks_back, "Ask me something back"),
    Rule("apologetic", "tone", "apologises ('sorry', 'apologize')", says("sorry", "apologize", "apologise"),
         "Be more apologetic"),
    Rule("hedges", "tone", "hedges ('might', 'perhaps', 'possibly')", says("might", "perhaps", "possibly"),
         "Be less certain"),
    Rule("words_40_120", "length", "40 to 120 words", word_band(40, 120), "Wrong length", cut_to_words(120)),
    Rule("words_under_80", "length", "at most 80 words", word_band(1, 80), "Too long", cut_to_words(80)),
    Rule("complete", "length", "ends on a finished sentence (not cut off)", ends_complete, "It was cut off",
         complete),
    Rule("number", "content", "contains a number (a digit)", has_number, "Give me concrete numbers"),
    Rule("example", "content", "gives an example ('for example', 'for instance', 'such as', 'e.g.')",
         says("for example", "for instance", "such as", "e.g"), "Give an example"),
    Rule("professional", "content", "points to a professional (doctor, therapist, lawyer, police, expert)",
         says("doctor", "therapist", "counselor", "counsellor", "lawyer", "police", "expert", "professional"),
         "Tell me who to ask"),
    Rule("safety", "content", "mentions safety or risk ('safe', 'safety', 'risk', 'danger')",
         says("safe", "safety", "risk", "risks", "danger", "dangerous"), "What about safety?"),
]}
