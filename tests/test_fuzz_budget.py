"""The fuzzer's time budget in the gate (components/fuzzer/budget.py), on a fake clock."""
import pytest

from imgpipe.components.fuzzer import budget
from imgpipe.components.fuzzer.budget import MIN_INPUTS, Budget, Pace, budget_for
from imgpipe.contract import ImageSpec


@pytest.fixture(autouse=True)
def round_numbers(monkeypatch, request):
    """The pace plans for all of the budget and gives first looks all of the
    time left, except where a test is about those shares."""
    if "share" not in request.node.name:
        monkeypatch.setattr(budget, "PLANNED", 1.0)
        monkeypatch.setattr(budget, "FIRST_LOOKS", 1.0)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_budget_is_a_share_of_the_evaluation_paced_by_the_parity_check():
    found = budget_for(0.25, 20.0, parity_seconds=2.0, parity_inputs=1000)
    assert found.seconds == 5.0 and found.seconds_per_input == 0.002
    assert found.summary()["evaluation_seconds"] == 20.0
    assert budget_for(0.0, 20.0, 2.0, 1000) is None          # no limit asked for
    assert budget_for(0.25, 0.0, 2.0, 1000) is None          # nothing to measure it against


def test_auto_is_a_quarter_for_images_larger_than_thumbnails_and_none_for_thumbnails():
    assert budget.share_for("auto", ImageSpec(224, 224, 3)) == budget.AUTO_SHARE == 0.25
    assert budget.share_for("auto", ImageSpec(32, 32, 3)) == 0.0
    assert budget.share_for("auto", ImageSpec(64, 64, 3)) == 0.0      # the largest thumbnail
    assert budget.share_for(0.4, ImageSpec(32, 32, 3)) == 0.4          # a number is the share
    assert budget.share_for(0, ImageSpec(224, 224, 3)) == 0.0


def test_without_a_budget_every_row_gets_what_it_wants():
    pace = Pace(None, ["pixels"] * 20)
    assert pace.first_look(250) == 250 and pace.more("pixels", 250, 1000) == 1000


def test_each_first_look_gets_as_many_inputs_as_every_row_left_can_afford():
    clock = Clock()
    pace = Pace(Budget(seconds=4.0, seconds_per_input=0.01), ["pixels"] * 4, clock=clock)
    assert pace.first_look(1000) == 100             # 4 s / (4 rows x 10 ms)
    assert pace.first_look(50) == 50                # never more than it wants
    clock.now = 1.0
    pace.looked("pixels", asked=100, seconds=1.0)   # as estimated
    assert pace.first_look(1000) == 100             # 3 s / 3 rows


def test_the_measured_cost_replaces_the_estimate_per_kind_of_request():
    clock = Clock()
    pace = Pace(Budget(seconds=4.0, seconds_per_input=0.02), ["pixels", "pixels", "bytes", "bytes"],
                clock=clock)
    clock.now = 1.0
    pace.looked("pixels", asked=100, seconds=1.0)   # pixels: 10 ms an input
    assert pace.rate("pixels") == 0.01 and pace.rate("bytes") == 0.02   # bytes: the estimate
    assert pace.first_look(1000) == 60              # 3 s / (10 + 20 + 20 ms)
    clock.now = 2.0
    pace.looked("pixels", asked=100, seconds=1.0)
    assert pace.first_look(1000) == 50              # 2 s / (20 + 20 ms)
    clock.now = 3.0
    pace.looked("bytes", asked=25, seconds=1.0)     # bytes: 40 ms an input
    assert pace.rate("bytes") == 0.04 and pace.rate("pixels") == 0.01
    assert pace.first_look(1000) == 25              # 1 s left / 40 ms
    clock.now = 3.1
    pace.looked("bytes", asked=0, seconds=0.1)      # refused (or a reference): no rate from it
    assert pace.rate("bytes") == 0.04


def test_an_expensive_kind_to_come_leaves_fewer_inputs_for_every_row():
    pace = Pace(Budget(seconds=6.0, seconds_per_input=0.01), ["pixels", "pixels", "bytes"],
                clock=Clock())
    pace.spent("pixels", 100, 1.0)
    pace.spent("bytes", 100, 4.0)                   # measured: 10 and 40 ms
    assert pace.first_look(1000) == 100             # 6 s / (10 + 10 + 40 ms)


def test_a_further_look_gets_what_the_time_left_affords():
    clock = Clock()
    pace = Pace(Budget(seconds=10.0, seconds_per_input=0.01), ["pixels"], clock=clock)
    clock.now = 8.0                                 # 2 s left: 200 inputs more
    assert pace.more("pixels", 250, 1000) == 450
    assert pace.more("pixels", 250, 300) == 300     # never more than it wants
    clock.now = 11.0                                # over budget: nothing more
    assert pace.more("pixels", 250, 1000) == 250


def test_a_first_look_gets_the_fewest_inputs_that_could_show_harm_or_none_at_all():
    clock = Clock()
    pace = Pace(Budget(seconds=0.15, seconds_per_input=0.01), ["bytes"] * 10, clock=clock)
    assert pace.first_look(1000) == MIN_INPUTS      # 15 ms a row for all: the floor, for this one
    assert pace.first_look(4) == 4                  # a smaller sample is all there is
    clock.now = 0.1
    pace.looked("bytes", asked=10, seconds=0.1)
    assert pace.first_look(1000) == 0               # 50 ms left: 5 inputs, which judge nothing
    assert pace.first_look(4) == 4                  # the whole (tiny) sample still fits
    clock.now = 0.2
    assert pace.first_look(4) == 0                  # over budget: no row is sent any more


def test_the_pace_plans_for_a_share_of_the_budget_and_first_looks_for_a_share_of_that():
    clock = Clock()
    pace = Pace(Budget(seconds=10.0, seconds_per_input=0.01), ["pixels"], clock=clock)
    assert pace.ends == pytest.approx(10.0 * budget.PLANNED) and budget.PLANNED < 1
    assert pace.first_look(10_000) == int(budget.FIRST_LOOKS * budget.PLANNED * 10.0 / 0.01)
    started = Pace(Budget(seconds=10.0, seconds_per_input=0.01, started=-2.0), ["pixels"], clock=clock)
    assert started.ends == pytest.approx(-2.0 + 10.0 * budget.PLANNED)   # the clock ran before the rows
