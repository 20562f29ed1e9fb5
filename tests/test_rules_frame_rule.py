"""The frame rule on timestamps alone (lsld_engine/media/frame_rule.py): FFmpeg's rounding helpers,
the ``-r`` grid's duplicate / drop / hold / vscfr branches, duration estimates, windows and the
sample-and-hold grid, each on a case small enough to work out by hand (the working is in the
comments). No media, no ffmpeg: the ffmpeg comparisons are in tests/test_frame_rule.py.

Written to kill the mutants of ``scripts/mutation.py frame_rule`` (docs/testing.md).
"""
from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from lsld_engine.media.frame_rule import (AVFMT_NOTIMESTAMPS, AVFMT_TS_DISCONT, DEFAULT_FRAME_RULE, FRAME_RULES,
                                          CfrGrid, FrameClock, HoldGrid, _rescale, _rint_f32, cfr_grid, check_rule,
                                          estimate_duration, grid_start_us, hold_indices, linspace_pick, picks,
                                          window_positions)


def test_constants():
    assert FRAME_RULES == ("official", "hold") and DEFAULT_FRAME_RULE == "official"
    assert (AVFMT_NOTIMESTAMPS, AVFMT_TS_DISCONT) == (0x80, 0x200)


def test_rescale_rounds_halves_away_from_zero():
    assert _rescale(1, F(1, 2), F(1)) == 1 and _rescale(-1, F(1, 2), F(1)) == -1
    assert _rescale(5, F(1, 10), F(1)) == 1 and _rescale(-5, F(1, 10), F(1)) == -1
    assert _rescale(1, F(1, 3), F(1)) == 0 and _rescale(2, F(1, 3), F(1)) == 1
    assert _rescale(-1, F(1, 3), F(1)) == 0 and _rescale(-2, F(1, 3), F(1)) == -1
    assert _rescale(1, F(3, 2), F(1, 4)) == 6 and _rescale(0, F(1, 7), F(1, 3)) == 0
    assert _rescale(-21333, F(1, 1_000_000), F(1, 12800)) == -273   # -273.06 -> -273
    assert _rescale(7, F(2, 3), F(5, 7)) == 7                          # 98/15 = 6.53 -> 7


def test_rint_f32_is_single_precision_then_half_to_even():
    assert _rint_f32(2.5) == 2 and _rint_f32(3.5) == 4 and _rint_f32(-2.5) == -2 and _rint_f32(1.4999) == 1
    assert _rint_f32(2.5000000001) == 2          # rounds to 2.5f first (double rint would give 3)
    assert isinstance(_rint_f32(1.0), int)


def test_sync_time_exact_integers_and_nudged_halves():
    g = CfrGrid(F(1, 8), 0, False, 8)
    assert g.sync_time(3) == 3.0 and g.sync_time(0) == 0.0
    h = CfrGrid(F(1, 16), 0, False, 8)
    assert h.sync_time(1) == 0.5 + 2 ** -17      # an exact half is moved off it, away from zero
    assert h.sync_time(2) == 1.0
    # the file's start time shifts every pts: 1 s at 1/16 s ticks = 16 ticks
    s = CfrGrid(F(1, 16), 1_000_000, False, 8)
    assert s.shift == -16
    assert s.sync_time(15) == -0.5 - 2 ** -17 and s.sync_time(16) == 0.0
    assert CfrGrid(F(1, 16), None, False, 8).shift == 0
    # precision: 16 extra bits below 1/8 s (29 - log2(8) = 26, capped at 16), fewer for a fine grid
    assert g.extra == 1 << 16 and g.fine == F(1, 8 << 16)
    assert CfrGrid(F(1, 8), 0, False, 1 << 20).extra == 1 << 9


def test_push_one_frame_per_slot_then_nothing_at_the_end():
    g = CfrGrid(F(1, 8), 0, False, 8)
    assert [g.push(i, 1) for i in range(4)] == [[0], [1], [2], [3]]
    assert g.finish() == [] and g.written == 4 and g.next_pts == 4 and g.count == 4


def test_push_duplicates_a_slow_frame_round_delta_times():
    g = CfrGrid(F(1, 4), 0, False, 8)            # 4 fps: each frame lasts two 1/8-s slots
    assert g.push(0, 1) == [0, 0] and g.push(1, 1) == [1, 1]
    assert g.written == 4 and g.hist == [0, 0, 0]
    assert g.finish() == []


def test_push_holds_the_previous_frame_over_a_gap_and_finish_repeats_the_median():
    g = CfrGrid(F(1, 4), 0, False, 8)
    assert g.push(0, 1) == [0, 0]                # slots 0, 1
    # frame 1 at 0.75 s = slot 6: delta0 = 4 > 1.1, delta = 6; the first rint(3.4) = 3 show frame 0
    assert g.push(3, 1) == [0, 0, 0, 1, 1, 1]
    assert g.hist == [3, 0, 0] and g.finish() == []   # median of (3, 0, 0) = 0
    g = CfrGrid(F(1, 4), 0, False, 8)
    g.push(0, 1)
    g.push(3, 1)                                 # next slot 8
    assert g.push(6, 1) == [1, 1, 1, 2, 2, 2]    # at slot 12: again 3 held
    assert g.hist == [3, 3, 0]
    assert g.finish() == [2, 2, 2]               # median 3: the last frame three more times
    assert g.written == 2 + 6 + 6 + 3 and g.next_pts == g.written


def test_push_drops_frames_more_than_1_1_slots_behind():
    g = CfrGrid(F(1, 8), 0, False, 8)
    # the same pts again and again: delta = 1, 0, -1 (each still written), then -2 < -1.1 (dropped)
    assert [g.push(0, 1) for _ in range(4)] == [[0], [1], [2], []]
    assert g.written == 3 and g.count == 4


def test_frame_overlapping_a_slot_counts_from_it():
    # a 16-fps frame at 0.5 slots after slot 1 was opened: delta0 < 0 < delta -> delta0 = 0
    g = CfrGrid(F(1, 16), 0, False, 8)
    assert g.push(0, 1) == [0] and g.next_pts == 1
    assert g.push(1, 1) == [1] and g.next_pts == 2   # written once though it mostly precedes the slot


def test_first_frame_late_single_stream_starts_the_grid_there():
    # first frame at 0.5 s = slot 4, lasting one slot
    multi = CfrGrid(F(1, 8), 0, False, 8)
    assert multi.push(4, 1) == [0] * 5            # duplicated back to the start (no previous frame)
    solo = CfrGrid(F(1, 8), 0, True, 8)
    assert solo.push(4, 1) == [0] and solo.next_pts == 5
    assert solo.push(5, 1) == [1]
    # exactly half a slot late counts as late (>= 0.5); a frame on time does not move the grid
    half = CfrGrid(F(1, 16), 0, True, 8)
    assert half.push(1, 2) == [0] and half.next_pts == 2   # grid starts at slot round(0.5+) = 1
    ontime = CfrGrid(F(1, 8), 0, True, 8)
    assert ontime.push(0, 2) == [0, 0] and ontime.next_pts == 2
    # only the first output: later gaps are filled as usual
    assert ontime.push(5, 1) == [0, 0, 1, 1]      # delta0 = 3: rint(2.4) = 2 held, 4 in all


def test_cfr_grid_is_push_then_finish():
    pts, dur = [0, 3, 6], [1, 1, 1]
    g = cfr_grid(pts, dur, F(1, 4), 0, False, 8)
    assert g.dtype == np.int64
    assert g.tolist() == [0, 0] + [0, 0, 0, 1, 1, 1] + [1, 1, 1, 2, 2, 2] + [2, 2, 2]
    assert cfr_grid([], [], F(1, 8), 0, False, 8).tolist() == []
    assert cfr_grid(np.array([0, 1]), np.array([1, 1]), F(1, 8), None, True, 8).tolist() == [0, 1]


def test_estimate_duration_order():
    assert estimate_duration(5, 5, 0, 0, 0) == 5                 # its own duration
    assert estimate_duration(1, 3, 0, 0, 0) == 3                 # 1 tick next to a longer step: made up
    assert estimate_duration(1, 2, 0, 0, 0) == 1                 # ... unless the step is <= 2
    assert estimate_duration(5, 7, 4, 0, 0, True) == 4           # no timestamps: the codec's rate
    assert estimate_duration(5, 7, 0, 0, 0, True) == 7           # ... else the pts step
    assert estimate_duration(0, -1, 3, 6, 0) == 3                # unknown: codec, then guessed
    assert estimate_duration(0, -1, 0, 6, 0) == 6
    assert estimate_duration(0, 4, 3, 6, 0) == 4                 # a pts step beats the rates
    assert estimate_duration(2, -1, 0, 0, 0, True) == 2          # untrusted and nothing else: its own
    assert estimate_duration(0, 0, 0, 0, 9) == 9                 # the previous estimate
    assert estimate_duration(0, 0, 0, 0, 0) == 1                 # at least one tick
    assert estimate_duration(0, 0, 0, 0, -3) == 1


def test_grid_start_us():
    tb = F(1, 90000)
    assert grid_start_us(100, 180000, tb, AVFMT_TS_DISCONT) == 2_000_000
    assert grid_start_us(100, 180000, tb, AVFMT_TS_DISCONT | AVFMT_NOTIMESTAMPS) == 2_000_000
    assert grid_start_us(100, 180000, tb, 0) == 100
    assert grid_start_us(100, 180000, tb, AVFMT_NOTIMESTAMPS) == 100
    assert grid_start_us(None, 180000, tb, AVFMT_TS_DISCONT) == 0
    assert grid_start_us(100, None, tb, AVFMT_TS_DISCONT) == 100
    assert grid_start_us(None, None, tb, 0) == 0
    assert grid_start_us(0, 90000, F(1, 90000), AVFMT_TS_DISCONT) == 1_000_000


def test_frame_clock():
    c = FrameClock(F(1, 12800), codec_rate=F(25), guessed_rate=F(50))
    assert (c.codec, c.guessed, c.ts_unreliable) == (512, 256, False)
    assert c(0, 512) == (0, 512) and c.last == 512
    assert c(None, None) == (512, 0) and c.last == 512            # placed after the previous one
    assert c(2048, 0) == (2048, 0) and c.last == 1536             # the pts step
    assert c(None, 0) == (3584, 0)
    assert isinstance(c(4096.0, 512.0)[0], int)
    first = FrameClock(F(1, 100))
    assert (first.codec, first.guessed) == (0, 0)
    assert first(None, 0) == (0, 0) and first.last == 1
    assert first(None, 0) == (1, 0)
    zero = FrameClock(F(1, 100), codec_rate=F(0), guessed_rate=None)
    assert zero.codec == 0
    raw = FrameClock(F(1, 1000), codec_rate=F(30), flags=AVFMT_NOTIMESTAMPS)
    assert raw.ts_unreliable and raw.codec == 33
    raw(0, 40)
    assert raw.last == 33                                         # raw streams: the codec's rate
    assert raw(None, 40) == (33, 40)
    other = FrameClock(F(1, 1000), flags=AVFMT_TS_DISCONT)
    assert not other.ts_unreliable


def test_linspace_pick():
    assert linspace_pick(1, 4).tolist() == [0, 0, 0, 0]
    assert linspace_pick(3, 5).tolist() == [0, 0, 1, 2, 2]        # 0, .5, 1, 1.5, 2 (halves to even)
    assert linspace_pick(82, 80).dtype == np.int64


def test_window_positions_official_and_hold():
    k = 80
    assert window_positions("official", 170, 0, 3, k).tolist() == list(range(80))
    assert window_positions("official", 170, 1, 3, k).tolist() == list(range(80, 160))
    last = window_positions("official", 170, 2, 3, k)
    assert last.tolist() == list(range(160, 170)) + [169] * 70    # short last window: held, not stretched
    full_last = window_positions("official", 242, 2, 3, k)      # last window owns 82 images: official pick
    assert full_last.tolist() == (160 + linspace_pick(82, k)).tolist()
    assert window_positions("official", 50, 0, 1, k).tolist() == linspace_pick(50, k).tolist()   # stretched
    assert window_positions("official", 100, 2, 3, k).tolist() == [99] * 80   # past the grid: its last image
    # a middle window of a grid that ends inside it: not the last window, so its images are held too
    assert window_positions("official", 120, 1, 3, k).tolist() == list(range(80, 120)) + [119] * 40
    assert window_positions("hold", 100, 1, 2, k).tolist() == list(range(80, 100)) + [99] * 60
    assert window_positions("hold", 300, 1, 2, k).tolist() == list(range(80, 160))
    assert window_positions("official", 170, 2, 3, k).dtype == np.int64


def test_picks_and_check_rule():
    p = picks("official", 170, 3, 80)
    assert p.shape == (240,) and p[:160].tolist() == list(range(160)) and p[-1] == 169
    assert picks("official", 82, 1, 80).tolist() == linspace_pick(82, 80).tolist()
    assert picks("hold", 5, 1, 8).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    with pytest.raises(ValueError) as e:
        picks("official", 0, 1, 80)
    assert str(e.value) == "no frames to pick from"
    with pytest.raises(ValueError):
        picks("official", -1, 1, 80)
    assert picks("official", 1, 1, 80).tolist() == [0] * 80
    assert check_rule("hold") == "hold"
    with pytest.raises(ValueError) as e:
        check_rule("nearest")
    assert str(e.value) == "unknown frame rule 'nearest' (choose from official, hold)"
    with pytest.raises(ValueError):
        window_positions("Official", 100, 0, 1, 80)


def test_hold_grid():
    g = HoldGrid(limit=5, eps=1e-4, fps=8)
    assert g.push(0.0) == []                     # the first frame completes nothing yet
    assert g.push(0.25) == [0, 0]                # entries 0, 1 (times 0, 0.125 < 0.25 - eps)
    assert g.push(0.3) == [1]                    # entry 2 (0.25)
    assert g.push(1.0) == [2, 2]                 # entries 3, 4: the limit
    assert g.push(1.2) == [] and g.finish() == [] and g.written == 5
    h = HoldGrid(limit=10, eps=1e-4, fps=8)
    h.push(0.0)
    assert h.push(0.125) == [0]                  # entry 1 at 0.125 is not before 0.125 - eps
    assert h.push(0.12505) == []                 # nor within eps after it
    assert h.finish() == [2] and h.written == 2
    assert HoldGrid(3, 1e-4, 8).finish() == []   # no frame at all


def test_hold_indices():
    got = hold_indices([0.0, 0.5, 0.99], 1, 1e-4, 8, 16)
    assert got.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
    # a frame within eps after the wanted time still counts; before the first frame: frame 0
    assert hold_indices([0.1, 0.12505], 1, 1e-4, 8, 3).tolist() == [0, 1, 1]
    assert hold_indices([0.0, 0.125], 2, 1e-4, 8, 2).tolist() == [0, 1, 1, 1]
    assert hold_indices([0.0, 0.12], 1, 0.0, 8, 2).tolist() == [0, 1]


def test_estimate_duration_one_tick_boundaries():
    assert estimate_duration(5, 7, 1, 0, 0, True) == 1     # a 1-tick codec duration is still used
    assert estimate_duration(0, 1, 0, 6, 0) == 1           # a pts step of 1 tick is still used
    assert estimate_duration(0, 0, 1, 6, 0) == 1           # the first known of the rates, even 1 tick


def test_frame_clock_first_frame_and_its_own_duration():
    c = FrameClock(F(1, 100), guessed_rate=F(25))          # 4 ticks per frame
    assert c(0, 0) == (0, 0) and c.last == 4                # first frame: no pts step, the guessed rate
    assert c(None, 0) == (4, 0)
    d = FrameClock(F(1, 100), codec_rate=F(25))
    assert d(0, 7) == (0, 7) and d(None, 0) == (7, 0)       # a frame's own duration places the next


def test_cfr_grid_passes_single_stream_on():
    assert cfr_grid([4], [1], F(1, 8), 0, True, 8).tolist() == [0]
    assert cfr_grid([4], [1], F(1, 8), 0, False, 8).tolist() == [0] * 5


def test_two_window_video_pads_its_short_last_window():
    assert window_positions("official", 100, 1, 2, 80).tolist() == list(range(80, 100)) + [99] * 60


def test_hold_grid_and_indices_at_exactly_eps():
    g = HoldGrid(limit=10, eps=0.125, fps=8)
    g.push(0.0)
    assert g.push(0.25) == [0]                  # entry 1 (0.125) is not before 0.25 - 0.125
    t1 = 0.125 + 1e-4                            # a frame exactly at entry 1's time + eps is shown
    assert hold_indices([0.0, t1], 1, 1e-4, 8, 2).tolist() == [0, 1]


def test_rescale_returns_exact_ints():
    assert type(_rescale(7, F(2, 3), F(5, 7))) is int and type(_rescale(-7, F(2, 3), F(5, 7))) is int


def test_grid_details_start_time_precision_and_a_frame_before_the_start():
    assert CfrGrid(F(1, 1_000_000), None, False, 8).shift == 0       # no start time: no shift at all
    assert CfrGrid(F(1, 8), 0, False, 1 << 30).extra == 1             # no extra bits left: 2**0
    solo = CfrGrid(F(1, 8), 0, True, 8)
    assert solo.push(-1, 2) == [0] and solo.next_pts == 1            # overlaps slot 0: counted from it
    assert cfr_grid([], [], F(1, 8), 0, False, 8).dtype == np.int64


def test_a_frame_two_slots_late_holds_the_previous_frame_once():
    g = CfrGrid(F(1, 8), 0, False, 8)
    assert g.push(0, 1) == [0]
    assert g.push(3, 1) == [0, 1, 1]       # delta0 = 2 > 1.1: rint(1.4) = 1 slot shows frame 0
