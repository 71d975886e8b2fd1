"""The backlog's rate limit: messages/s and bytes/s, whichever is tighter, on an injected clock."""

from __future__ import annotations

import pytest

from edge_agent.uplink.token_bucket import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sent_within(bucket: TokenBucket, clock: Clock, size: int, seconds: float, step: float = 0.01) -> int:
    """Messages of `size` bytes let through in `seconds` of clock time by a sender that never stops."""
    sent = 0
    end = clock.now + seconds
    while clock.now < end:
        if bucket.wait_s(size) == 0:
            bucket.spend(size)
            sent += 1
        else:
            clock.now += step
    return sent


def test_message_rate_limits_small_messages() -> None:
    clock = Clock()
    bucket = TokenBucket(messages_per_s=5, bytes_per_s=1_000_000, clock=clock)
    sent = sent_within(bucket, clock, 100, 10.0)
    assert 50 <= sent <= 56  # 5/s for 10 s, plus the first second's burst


def test_byte_rate_limits_large_messages() -> None:
    clock = Clock()
    bucket = TokenBucket(messages_per_s=1000, bytes_per_s=10_000, clock=clock)
    sent = sent_within(bucket, clock, 2_500, 10.0)
    assert 40 <= sent <= 45  # 10 kB/s over 2.5 kB messages: 4/s, plus the burst


def test_oversized_message_waits_for_a_full_bucket_then_goes() -> None:
    clock = Clock()
    bucket = TokenBucket(messages_per_s=10, bytes_per_s=1_000, clock=clock)
    assert bucket.wait_s(5_000) == 0  # full at start
    bucket.spend(5_000)  # leaves the bucket 4 s in debt
    assert bucket.wait_s(5_000) == pytest.approx(5.0)
    clock.now += 5.0
    assert bucket.wait_s(5_000) == 0


def test_rates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0, 100)
