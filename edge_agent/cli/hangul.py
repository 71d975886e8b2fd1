"""Hangul syllables in Latin letters (Revised Romanization of Korean, 2000), for configuration names a scan
derives from object names such as "1층 열람실 온도" (-> "1cheung yeollamsil ondo").

A precomposed syllable (U+AC00..U+D7A3) is decomposed arithmetically into its initial, vowel and final
jamo (Unicode's formula: 19 initials x 21 vowels x 28 finals), and each jamo is spelt as the Revised
Romanization spells it. One sound change is applied, the commonest in names: final ㄹ before initial ㄹ
is "ll" (열람실 -> yeollamsil); other assimilations are left out, so the spelling is a readable hint, not a
transcription. Characters that are not Hangul syllables pass through unchanged.
"""

from __future__ import annotations

FIRST, LAST = 0xAC00, 0xD7A3
VOWELS_TIMES_FINALS = 21 * 28

INITIALS = (
    "g",
    "kk",
    "n",
    "d",
    "tt",
    "r",
    "m",
    "b",
    "pp",
    "s",
    "ss",
    "",
    "j",
    "jj",
    "ch",
    "k",
    "t",
    "p",
    "h",
)
VOWELS = (
    "a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi",
    "yu", "eu", "ui", "i",
)  # fmt: skip
FINALS = (
    "", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m", "p", "p", "t", "t",
    "ng", "t", "t", "k", "t", "p", "t",
)  # fmt: skip
RIEUL_INITIAL, RIEUL_FINAL = 5, 8


def _jamo(char: str) -> tuple[int, int, int] | None:
    """The initial, vowel and final indexes of a precomposed syllable; None for anything else."""
    code = ord(char)
    if not FIRST <= code <= LAST:
        return None
    offset = code - FIRST
    return offset // VOWELS_TIMES_FINALS, offset % VOWELS_TIMES_FINALS // 28, offset % 28


def romanize(text: str) -> str:
    """`text` with every Hangul syllable in Latin letters; other characters unchanged."""
    out: list[str] = []
    previous_final = 0
    for char in text:
        parts = _jamo(char)
        if parts is None:
            out.append(char)
            previous_final = 0
            continue
        initial, vowel, final = parts
        lead = INITIALS[initial]
        if initial == RIEUL_INITIAL and previous_final == RIEUL_FINAL:
            lead = "l"
        out.append(lead + VOWELS[vowel] + FINALS[final])
        previous_final = final
    return "".join(out)
