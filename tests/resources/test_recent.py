"""The estimator's bounded cache of solved parts (:class:`hgq_fpga.resources.recent.Recent`)."""

from __future__ import annotations

import threading

from hgq_fpga.resources.recent import Recent


def test_the_least_recently_used_go_first_and_a_read_counts_as_a_use():
    kept = Recent(3)
    for key in "abc":
        assert kept.put(key, key.upper()) == key.upper()
    assert kept.get("a") == "A"  # a is now the most recent: b is the oldest
    kept.put("d", "D")
    assert [kept.get(k) for k in "abcd"] == ["A", None, "C", "D"] and len(kept) == 3
    assert kept.setdefault("c", list) == "C" and kept.setdefault("e", list) == []
    kept.trim()
    assert kept.get("a") is None and len(kept) == 3  # (setdefault keeps; trim drops the oldest)
    kept.clear()
    assert len(kept) == 0 and kept.get("c") is None


def test_a_weighted_cache_counts_its_values_sizes_and_keeps_the_newest_whatever_its_size():
    kept = Recent(10, weight=len)
    kept.put("six", [0] * 6)
    kept.put("four", [0] * 4)
    assert len(kept) == 2
    grown = kept.setdefault("five", list)
    grown.extend([0] * 5)  # a value that grows after it is kept
    kept.trim()  # 15 > 10: the oldest goes, 9 stay
    assert kept.get("six") is None and kept.get("four") is not None and kept.get("five") == [0] * 5
    kept.put("huge", [0] * 50)
    assert len(kept) == 1 and kept.get("huge") is not None  # alone over the size, but the most recent


def test_threads_reading_and_writing_at_once_never_see_a_broken_cache():
    kept = Recent(8)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(3000):
                key = (seed * 7 + i) % 20
                value = kept.get(key)
                assert value is None or value == key * 2
                kept.put(key, key * 2)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(kept) == 8
