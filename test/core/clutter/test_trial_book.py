"""The protocol's books of a trial (shared by the in-process runner and the ROS supervisor)."""

from __future__ import annotations

from gpr_ros.core.clutter.protocol import ProtocolConfig
from gpr_ros.core.clutter.session import TrialBook


def test_a_success_without_object_ids_removes_one_object_also_after_a_replay() -> None:
    book = TrialBook(ProtocolConfig.named('gpr'), trial=0, objects_total=3)
    first = book.attempt({'attempt': 0, 'lifted': []}, 'success', 0)  # real robot: no ids
    second = book.attempt({'attempt': 1, 'lifted': [4, 5]}, 'success', 2)  # a double pick
    third = book.attempt({'attempt': 2, 'lifted': []}, 'slip', 0)
    assert (book.attempts, book.successes, book.removed) == (3, 2, 3)
    assert book.end_reason(bin_empty=False) is None

    resumed = TrialBook(ProtocolConfig.named('gpr'), trial=0, objects_total=3)
    resumed.replay([first, second, third])
    assert (resumed.attempts, resumed.successes, resumed.removed) == (3, 2, 3)
    assert resumed.consecutive_failures == 1


def test_pile_ends_after_two_consecutive_failures_and_no_grasp_is_no_attempt() -> None:
    book = TrialBook(ProtocolConfig.named('pile'), trial=1, objects_total=5)
    book.attempt({}, 'collision', 0)
    assert book.end_reason(bin_empty=False) is None
    book.attempt({}, 'slip', 0)
    assert book.end_reason(bin_empty=False) == 'consecutive_failures'

    other = TrialBook(ProtocolConfig.named('pile'), trial=1, objects_total=5)
    record = other.no_grasp({'attempt': 0}, proposed=3)
    assert record['counted'] is False and other.attempts == 0
    assert other.end_reason(bin_empty=False) == 'no_grasp'
    assert TrialBook(ProtocolConfig.named('gpr'), 0, 2).end_reason(bin_empty=True) == 'cleared'
