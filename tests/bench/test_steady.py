"""The steady-state windows are the rates between the marks they should be."""

import pytest

from optlab.bench.steady import window_rates


def test_windows_are_the_first_and_last_window_after_the_first_mark():
    # marks every 50 steps; 100 steps/s for the first 200 steps, then 50 steps/s
    marks, t = [], 0.0
    for step in range(50, 1001, 50):
        marks.append((step, t))
        t += 0.5 if step < 250 else 1.0
    w = window_rates(marks, 200)
    assert w.start_steps_per_s == pytest.approx(100.0)  # steps 50 → 250 in 2 s
    assert w.steady_steps_per_s == pytest.approx(50.0)  # steps 800 → 1000 in 4 s
    assert w.steady_vs_start == pytest.approx(0.5)


def test_a_run_too_short_for_two_windows_is_refused():
    with pytest.raises(ValueError, match="window"):
        window_rates([(50, 0.0), (100, 1.0), (150, 2.0)], 100)
