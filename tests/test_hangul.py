"""Hangul in Latin letters for names a scan derives (cli/hangul.py): Revised Romanization, syllable by
syllable, with final ㄹ before initial ㄹ as "ll"; everything that is not a Hangul syllable passes through."""

from __future__ import annotations

import pytest

from edge_agent.cli.hangul import romanize


@pytest.mark.parametrize(
    ("korean", "latin"),
    [
        ("1층 열람실 온도", "1cheung yeollamsil ondo"),
        ("서울", "seoul"),
        ("급기 풍량", "geupgi pungryang"),  # sound changes other than ㄹㄹ are left out
        ("냉방 설정온도", "naengbang seoljeongondo"),
        ("상황실", "sanghwangsil"),
        ("이산화탄소", "isanhwatanso"),
        ("AHU-1 급기", "AHU-1 geupgi"),
        ("ㄱ", "ㄱ"),  # a lone jamo is not a syllable: left as it is
    ],
)
def test_romanize(korean: str, latin: str) -> None:
    assert romanize(korean) == latin
