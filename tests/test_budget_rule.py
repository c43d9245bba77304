"""The budget's survival rule: equal cost, ties, crossing curves (sweep/budget/rule.py)."""

from __future__ import annotations

import math

import pytest

from sweep.budget.rule import Curve, allotment, decide, frozen_range, new_evidence, switches


def curve(
    epoch_s: float,
    scores: list[float],
    complete: bool = False,
    frozen: int | None = None,
    most: int | None = None,
    switches: bool = False,
) -> Curve:
    return Curve.from_epochs([epoch_s] * len(scores), scores, complete, (frozen, most), switches)


def test_allotment_grows_by_eta_per_rung() -> None:
    assert [allotment(10, 3, k) for k in (1, 2, 3)] == [10, 30, 90]


def test_value_is_the_best_so_far_linear_between_epoch_ends() -> None:
    c = curve(2.0, [0.2, 0.1, 0.4])
    assert c.value_at(1.0) == pytest.approx(0.1)  # halfway from (0, 0) to (2, 0.2)
    assert c.value_at(3.0) == pytest.approx(0.2)  # the dip to 0.1 is not a loss: best.pt keeps 0.2
    assert c.value_at(5.0) == pytest.approx(0.3)
    assert c.value_at(100.0) == pytest.approx(0.4)


def test_cut_keeps_the_first_epoch_that_reached_the_allotment() -> None:
    c = curve(2.0, [0.1, 0.2, 0.3, 0.4])
    assert c.cut(3.0).scores == (0.1, 0.2)
    assert c.cut(4.0).scores == (0.1, 0.2)
    assert c.cut(100.0) == c


def test_compares_at_equal_cost_not_equal_epochs() -> None:
    # Per epoch "slow" is better (0.42 vs 0.30, then 0.43 vs 0.40), but "fast" trains 3 epochs in
    # the seconds "slow" needs for one, and is better at equal training time.
    candidates = {"fast": [curve(1.0, [0.3, 0.4, 0.45, 0.46, 0.46, 0.46])], "slow": [curve(3.0, [0.42, 0.43])]}
    decision = decide(candidates, rung=1, allotment_s=6.0, eta=2, tolerance=0.0)
    assert decision.compared_at_s == pytest.approx(6.0)
    assert decision.kept == ("fast",)
    assert "slow" in decision.stopped and "rung 1" in decision.stopped["slow"]


def test_after_one_epoch_the_slope_is_the_average_rate_since_the_start() -> None:
    assert curve(3.0, [0.42]).slope() == pytest.approx(0.14)
    assert curve(1.0, [0.4, 0.4]).slope() == 0.0
    assert curve(1.0, [0.4, 0.5], complete=True).slope() == 0.0


def test_keeps_ceil_n_over_eta_plus_ties_within_tolerance() -> None:
    scores = {"a": 0.50, "b": 0.49, "c": 0.485, "d": 0.40, "e": 0.30}
    candidates = {name: [curve(1.0, [s / 2, s, s])] for name, s in scores.items()}  # flat at the end: no slope
    assert decide(candidates, 1, 3.0, eta=3, tolerance=0.0).kept == ("a", "b")
    assert decide(candidates, 1, 3.0, eta=3, tolerance=0.01).kept == ("a", "b", "c")


def test_a_steep_late_learner_is_kept_when_its_slope_could_overtake() -> None:
    frozen = curve(1.0, [0.40, 0.45, 0.47, 0.48])  # fast early, levelling off
    unfrozen = curve(2.0, [0.10, 0.30])  # slower epochs, steep
    middling = curve(1.0, [0.20, 0.22, 0.23, 0.235])
    decision = decide({"frozen": [frozen], "unfrozen": [unfrozen], "mid": [middling]}, 1, 4.0, eta=3, tolerance=0.0)
    assert decision.kept == ("frozen", "unfrozen")
    assert decision.kept_for_slope == ("unfrozen",)
    assert list(decision.stopped) == ["mid"]
    assert decision.projected["unfrozen"] > decision.projected["frozen"]


def test_replicates_are_one_candidate_scored_by_their_mean() -> None:
    candidates = {
        "x": [curve(1.0, [0.5, 0.5]), curve(1.0, [0.1, 0.1])],  # mean 0.3
        "y": [curve(1.0, [0.35, 0.35]), curve(1.0, [0.35, 0.35])],
    }
    decision = decide(candidates, 1, 2.0, eta=2, tolerance=0.0)
    assert decision.values["x"] == pytest.approx(0.3)
    assert decision.kept == ("y",) and list(decision.stopped) == ["x"]


def test_a_complete_variant_is_never_stopped_and_keeps_its_final_value() -> None:
    done = curve(1.0, [0.2, 0.3], complete=True)  # finished its 2 epochs after 2 s
    running = curve(2.0, [0.25, 0.26, 0.27])
    decision = decide({"done": [done], "running": [running]}, 1, 5.0, eta=2, tolerance=0.0)
    assert decision.compared_at_s == pytest.approx(6.0)
    assert decision.values["done"] == pytest.approx(0.3)
    assert decision.kept == ("done",)
    assert list(decision.stopped) == ["running"]
    alone = decide({"done": [done], "also": [curve(1.0, [0.1, 0.1], complete=True)]}, 1, 5.0, 2, 0.0)
    assert alone.stopped == {}


def test_a_re_run_with_longer_histories_decides_as_the_first_run() -> None:
    first = {"a": [curve(1.0, [0.3, 0.4])], "b": [curve(2.0, [0.35])]}
    later = {"a": [curve(1.0, [0.3, 0.4, 0.6, 0.7])], "b": [curve(2.0, [0.35])]}  # a trained on in rung 2
    assert decide(first, 1, 2.0, 2, 0.0).as_record() == decide(later, 1, 2.0, 2, 0.0).as_record()


def test_record_is_json_ready() -> None:
    import json

    decision = decide({"a": [curve(1.0, [0.3])], "b": [curve(1.0, [0.1])]}, 1, 1.0, 2, 0.0)
    record = json.loads(json.dumps(decision.as_record()))
    assert record["kept"] == ["a"] and set(record["stopped"]) == {"b"} and not math.isnan(record["compared_at_s"])


def test_a_variant_that_trains_more_is_kept_until_one_that_trains_as_much_is_ahead() -> None:
    # The demo at 16 epochs: the frozen level leads early, the schedule to none (0 layers frozen in
    # its last stage) is behind and no steeper, and overtakes from about 20 s on. No slope shows it
    # this early; freezing's order does: only one that trains more can put it out.
    flat = [0.40, 0.45, 0.45, 0.45]
    candidates = {
        "all_but_head": [curve(1.0, [0.40, 0.50, 0.50, 0.50], frozen=22)],
        "all_but_head -> none @2": [curve(1.0, flat, frozen=0, switches=True)],
        "backbone": [curve(1.0, [0.30, 0.40, 0.40, 0.40], frozen=10)],
        "backbone -> none @2": [curve(1.0, [0.30, 0.42, 0.42, 0.42], frozen=0, switches=True)],
    }
    decision = decide(candidates, rung=1, allotment_s=4.0, eta=4, tolerance=0.01)
    assert decision.kept == ("all_but_head", "all_but_head -> none @2", "backbone -> none @2")
    assert decision.kept_for_capacity == ("all_but_head -> none @2", "backbone -> none @2")
    # backbone (10 frozen) is behind a kept variant that freezes none: it may not overtake it
    assert "all_but_head -> none @2 is ahead and freezes no more layers" in decision.stopped["backbone"]
    assert list(decision.stopped) == ["backbone"]
    assert decision.as_record()["kept_for_capacity"] == ["all_but_head -> none @2", "backbone -> none @2"]


def test_schedules_that_end_training_the_same_layers_do_not_put_each_other_out() -> None:
    # The demo at 64 epochs: both schedules end at none; all_but_head -> none @2 led by 0.01-0.04
    # from the first rung to 40 s, backbone -> none @2 ended 0.006 ahead. A lead left over from
    # different first stages washes out: the one behind stays, however far behind it is now.
    leader = curve(1.0, [0.45, 0.55, 0.60, 0.62], frozen=0, switches=True)
    behind = curve(1.0, [0.40, 0.44, 0.47, 0.49], frozen=0, switches=True)
    decision = decide({"abh -> none @2": [leader], "bb -> none @2": [behind]}, 1, 4.0, eta=3, tolerance=0.01)
    assert decision.kept == ("abh -> none @2", "bb -> none @2") and decision.stopped == {}
    assert decision.kept_for_capacity == ("bb -> none @2",)
    # the same between a schedule and the fixed level it ends at, whichever leads
    fixed_none = curve(1.0, [0.45, 0.55, 0.60, 0.62], frozen=0)
    decision = decide({"none": [fixed_none], "bb -> none @2": [behind]}, 1, 4.0, eta=3, tolerance=0.01)
    assert decision.stopped == {}
    decision = decide(
        {"abh -> none @2": [leader], "none": [curve(1.0, [0.4, 0.44, 0.47, 0.49], frozen=0)]}, 1, 4.0, 3, 0.01
    )
    assert decision.stopped == {}


def test_fixed_levels_that_freeze_the_same_layers_are_still_halved() -> None:
    # Two learning rates at freeze=none: neither switches, the lead is theirs to keep; the one
    # behind by the tolerance goes (otherwise a budget over anything but freezing would stop nothing).
    candidates = {
        "none lr0=0.01": [curve(1.0, [0.45, 0.55, 0.60, 0.62], frozen=0)],
        "none lr0=0.001": [curve(1.0, [0.40, 0.44, 0.47, 0.49], frozen=0)],
    }
    decision = decide(candidates, 1, 4.0, eta=3, tolerance=0.01)
    assert decision.kept == ("none lr0=0.01",)
    assert "none lr0=0.01 is ahead and freezes no more layers" in decision.stopped["none lr0=0.001"]


def test_a_schedule_behind_one_that_trains_strictly_more_in_the_end_is_put_out() -> None:
    candidates = {
        "none": [curve(1.0, [0.45, 0.55, 0.60, 0.62], frozen=0)],
        "all_but_head -> backbone @2": [curve(1.0, [0.40, 0.44, 0.47, 0.49], frozen=10, switches=True)],
    }
    decision = decide(candidates, 1, 4.0, eta=3, tolerance=0.01)
    assert decision.kept == ("none",) and list(decision.stopped) == ["all_but_head -> backbone @2"]


def test_without_frozen_layers_known_the_capacity_rule_keeps_nothing() -> None:
    candidates = {"a": [curve(1.0, [0.4, 0.5, 0.5, 0.5])], "b": [curve(1.0, [0.3, 0.4, 0.4, 0.4], frozen=0)]}
    assert decide(candidates, 1, 4.0, eta=2, tolerance=0.0).kept == ("a", "b")  # b: no kept ahead is known
    candidates["b"] = [curve(1.0, [0.3, 0.4, 0.4, 0.4])]
    assert decide(candidates, 1, 4.0, eta=2, tolerance=0.0).kept == ("a",)


def test_frozen_range_reads_a_schedules_last_stage_autos_prefix_and_max_or_the_level() -> None:
    assert frozen_range({"freeze_schedule": "[[1,[0,1,2]],[5,[]]]", "frozen_layers": "3"}, {}) == (0, 0)
    auto = {"frozen_layers": "0", "freeze_auto": '{"start":0,"max":22,"threshold":0.5,"patience":2}'}
    assert frozen_range(auto, {"frozen_layers": 5.0}) == (5, 22)  # at epoch 6: 5 frozen, may go up to 22
    assert frozen_range({"frozen_layers": "10"}, {}) == (10, 10)
    assert frozen_range({}, {}) == (None, None)
    assert frozen_range({"freeze_schedule": "not json"}, {}) == (None, None)
    assert switches({"freeze_schedule": "[[1,[0,1,2]],[5,[]]]"}) and switches(auto)
    assert not switches({"frozen_layers": "10"})


def test_auto_ahead_puts_out_only_what_trains_less_than_it_may_end_up_training() -> None:
    # auto has frozen 2 layers so far but may freeze up to 10: a fixed 22 behind it trains less than
    # auto will in any case, so auto puts it out; a fixed 10 may end up training as much as auto
    # (auto's lead then a leftover of its earlier stages), so it stays, and so does a fixed 5.
    candidates = {
        "auto": [curve(1.0, [0.4, 0.5, 0.5, 0.5], frozen=2, most=10, switches=True)],
        "10": [curve(1.0, [0.3, 0.41, 0.41, 0.41], frozen=10)],
        "5": [curve(1.0, [0.3, 0.4, 0.4, 0.4], frozen=5)],
        "22": [curve(1.0, [0.3, 0.39, 0.39, 0.39], frozen=22)],
    }
    decision = decide(candidates, 1, 4.0, eta=4, tolerance=0.0)
    assert decision.kept == ("auto", "10", "5") and decision.kept_for_capacity == ("10", "5")
    assert list(decision.stopped) == ["22"]
    assert "auto is ahead and freezes no more layers" in decision.stopped["22"]


def test_a_rung_in_which_nothing_trained_on_decides_nothing() -> None:
    """A budget below an epoch's time: rungs pass with every variant still at its first epoch. Cutting
    there again would be equal-epoch halving on one epoch; only a rung with a new epoch end decides."""
    slow = Curve.from_epochs([1.0, 1.0, 1.0], [0.2, 0.3, 0.4])
    fast = Curve.from_epochs([0.5, 0.5, 0.5], [0.3, 0.35, 0.36])
    field = {"slow": [slow], "fast": [fast]}
    assert new_evidence(field, 0.01, 0.02) is False  # both at their first epoch since rung 1
    assert new_evidence(field, 0.32, 0.64) is True  # fast's second epoch ended at 1.0 s: first to reach 0.64
    assert new_evidence({"slow": [slow]}, 0.32, 0.64) is False
    done = Curve.from_epochs([1.0], [0.2], complete=True)
    assert new_evidence({"a": [done], "b": [done]}, 0.01, 0.02) is True  # final values: decide on them
    assert new_evidence({"a": [done], "slow": [slow]}, 0.01, 0.02) is False  # slow has more to show
