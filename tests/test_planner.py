"""The read planner: the fewest requests a device allows, never a forbidden register."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import ModbusPoint, RegisterRange
from edge_agent.protocols.modbus.planner import PlanLimits, plan_reads

SDM630_MAP = [0x00, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x34, 0x3E, 0x46, 0x48, 0x4A, 0x54, 0x56, 0x156]


def points(addresses: list[int], table: str = "input") -> list[ModbusPoint]:
    return [ModbusPoint(name=f"p{a}", table=table, address=a) for a in addresses]  # type: ignore[arg-type]


def test_a_meter_in_three_requests_not_fifteen() -> None:
    """The SDM630 answers at most 40 parameters (80 registers) a request."""
    blocks = plan_reads(points(SDM630_MAP), PlanLimits(max_registers=80, max_gap=40))
    assert [(b.start, b.count) for b in blocks] == [(0x00, 0x4C), (0x54, 4), (0x156, 2)]


def test_gap_limit_splits() -> None:
    blocks = plan_reads(points([0, 10, 40]), PlanLimits(max_gap=7))  # 8 unused registers: too many
    assert [(b.start, b.count) for b in blocks] == [(0, 2), (10, 2), (40, 2)]
    blocks = plan_reads(points([0, 10, 40]), PlanLimits(max_gap=28))
    assert [(b.start, b.count) for b in blocks] == [(0, 42)]


def test_per_device_maximum_splits() -> None:
    blocks = plan_reads(points(list(range(0, 200, 2))), PlanLimits(max_registers=80, max_gap=0))
    assert [b.count for b in blocks] == [80, 80, 40]


def test_forbidden_range_is_never_read() -> None:
    forbidden = (RegisterRange(table="input", start=20, end=29),)
    blocks = plan_reads(points([0, 10, 30, 40]), PlanLimits(max_gap=50, forbidden=forbidden))
    assert [(b.start, b.end) for b in blocks] == [(0, 12), (30, 42)]


def test_tables_are_planned_apart() -> None:
    mixed = points([0, 2]) + points([0, 2], table="holding")
    assert [(b.table, b.count) for b in plan_reads(mixed)] == [("input", 4), ("holding", 4)]


def test_points_read_alone_get_a_request_each() -> None:
    blocks = plan_reads(points([0, 2, 4, 6]), alone={"p2"})
    assert [(b.start, b.count) for b in blocks] == [(2, 2), (0, 8)] or [
        (b.start, b.count) for b in blocks
    ] == [
        (0, 8),
        (2, 2),
    ]
    assert sum(1 for b in blocks if [p.name for p in b.points] == ["p2"]) == 1
    assert all("p2" not in [p.name for p in b.points] or len(b.points) == 1 for b in blocks)


@given(
    st.lists(st.integers(0, 2000), min_size=1, max_size=60, unique=True),
    st.integers(0, 30),
    st.integers(2, 125),
    st.tuples(st.integers(0, 2000), st.integers(0, 50)),
)
def test_every_plan_covers_each_point_once_within_limits(
    addresses: list[int], gap: int, maximum: int, hole: tuple[int, int]
) -> None:
    forbidden_range = RegisterRange(table="input", start=hole[0], end=hole[0] + hole[1])
    wanted = [
        p
        for p in points(addresses)
        if not (p.address <= forbidden_range.end and forbidden_range.start < p.address + 2)
    ]
    limits = PlanLimits(max_registers=maximum, max_gap=gap, forbidden=(forbidden_range,))
    blocks = plan_reads(wanted, limits)
    covered = [p.name for b in blocks for p in b.points]
    assert sorted(covered) == sorted(p.name for p in wanted)
    for block in blocks:
        assert block.count <= max(maximum, 2)
        assert not limits.crosses_forbidden("input", block.start, block.end)
        assert all(block.start <= p.address and p.address + p.registers <= block.end for p in block.points)


def test_config_refuses_a_point_inside_a_forbidden_range() -> None:
    from pydantic import ValidationError

    from edge_agent.config import ModbusTcpDevice

    with pytest.raises(ValidationError, match="lies in a forbidden range"):
        ModbusTcpDevice(
            name="m",
            protocol="modbus-tcp",
            host="10.0.0.1",
            points=points([24]),
            forbidden=[RegisterRange(table="input", start=20, end=29)],
        )
