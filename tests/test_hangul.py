"""Names a scan derives from objects named in any script: Hangul in Latin letters (cli/hangul.py: Revised
Romanization, syllable by syllable, with final ㄹ before initial ㄹ as "ll"; everything that is not a Hangul
syllable passes through), the original kept as the point's label."""

from __future__ import annotations

import tomllib

import pytest

from edge_agent.cli.bacnet import snippet_text
from edge_agent.cli.bacnet_scan import ScannedDevice, ScannedObject, ScanRequest
from edge_agent.cli.hangul import romanize
from edge_agent.config import parse_config


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


def test_point_names_from_any_object_name_are_ascii_and_unique_within_the_device() -> None:
    def obj(name: str | None, instance: int) -> ScannedObject:
        return ScannedObject("analog-input", instance, name, "degrees-celsius", 21.0)

    objects = (
        obj("서고 온도", 1),
        obj("서고 온도", 2),
        obj("1", 3),
        obj(None, 4),
        obj("온도\t℃", 5),
        obj(" \n", 6),
    )
    device = ScannedDevice(
        5, "127.0.0.1:47808", 999, 1476, "noSegmentation", "서고", None, None, None, objects, ()
    )
    request = ScanRequest((), "0.0.0.0:0")
    data = tomllib.loads(snippet_text([device], request))
    (entry,) = data["devices"]
    assert entry["name"] == "seogo"
    assert [(p["name"], p.get("label")) for p in entry["points"]] == [
        ("seogo_ondo", "서고 온도"),
        ("seogo_ondo_2", "서고 온도"),  # the same name twice: still unique
        ("analog_input_3", "1"),  # nothing readable left: from the object's type and instance
        ("analog_input_4", None),
        ("ondo", "온도 ℃"),  # a control character in the name: a space in the label
        ("analog_input_6", None),
    ]
    assert parse_config(snippet_text([device], request), "snippet").devices[0].points[0].label == "서고 온도"
