"""The simulated clock keeps its time as datetime64[ns] and as integer nanoseconds (the simulator
compares the integers at every cycle): the two always say the same time, whatever unit it is given."""

from __future__ import annotations

import numpy as np
import pytest

from framework.clock import SimClock


def test_the_integer_time_follows_every_move_of_the_clock():
    c = SimClock(np.datetime64("2024-01-02T14:30:00", "s"))
    assert c.now() == np.datetime64("2024-01-02T14:30:00") and c.now().dtype == np.dtype("datetime64[ns]")
    assert c.now_ns() == int(c.now().astype(np.int64))
    c.advance(np.datetime64("2024-01-02T14:30:00.000001", "us"))
    assert c.now_ns() == int(np.datetime64("2024-01-02T14:30:00.000001", "ns").astype(np.int64))
    c.sleep(1.5)
    assert c.now() == np.datetime64("2024-01-02T14:30:01.500001", "ns") and c.now_ns() == int(c.now().astype(np.int64))
    c.advance(c.now())                       # the same time again is not going back
    with pytest.raises(ValueError, match="cannot go back"):
        c.advance(np.datetime64("2024-01-02T14:30:01", "ns"))
    assert c.now_ns() == int(np.datetime64("2024-01-02T14:30:01.500001", "ns").astype(np.int64))


def test_days_before_the_epoch_are_floored_as_numpy_floors_them():
    """The simulator's day of a time is ``ns // one day``: the same day numpy's cast gives, before 1970 too."""
    for t in ("1969-12-31T23:59:59.999999999", "1970-01-01T00:00:00", "2000-02-29T12:00:00"):
        c = SimClock(np.datetime64(t, "ns"))
        assert c.now_ns() // 86_400_000_000_000 == int(np.datetime64(c.now(), "D").astype(np.int64))


def test_not_a_time_is_refused():
    c = SimClock(np.datetime64("2024-01-02", "ns"))
    with pytest.raises(ValueError, match="needs a time"):
        c.advance(np.datetime64("NaT", "ns"))
