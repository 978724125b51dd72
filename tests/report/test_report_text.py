"""Report text that matches its figures: the overlay caption names a linear accuracy axis as
linear; lr_find's section uses today's name, max_stable_lr, not the deprecated lr_found."""
from __future__ import annotations

import re


def _report(gdexp, *sweep):
    code, _, err = gdexp(*sweep)
    assert code == 0, err
    code, out, err = gdexp("report", "--out", "rep")
    assert code == 0, err
    return open("rep/report.md").read()


def _overlay_caption(md: str) -> str:
    return re.search(r"Each group's .* against the learning rate, [^(]*\(", md).group(0)


def test_the_overlay_caption_of_a_classifier_says_its_accuracy_axis_is_linear(gdexp, store):
    md = _report(gdexp, "-m", "loss=mlp", "loss.dataset=iris", "loss.hidden=[4]", "optimizer.lr=0.1,1.0",
                 "stopping.maxiter=30")
    caption = _overlay_caption(md)
    assert "accuracy" in caption and "both axes log" not in caption
    assert "the learning rate on a log axis, val accuracy on a linear one" in caption


def test_the_overlay_caption_of_a_loss_says_both_axes_log(gdexp, store):
    md = _report(gdexp, "-m", "loss=booth", "optimizer.lr=0.01,0.1", "stopping.maxiter=30")
    assert "both axes log" in _overlay_caption(md)


def test_the_lr_find_section_says_max_stable_lr_not_lr_found(gdexp, store):
    md = _report(gdexp, "+sweep=lr_find", "loss=quadratic", "loss.eigenvalues=[3,7,50]", "stopping.maxiter=2000")
    section = md.split("lr_find", 1)[1]
    assert "lr_found" not in md
    assert re.search(r"The bracket closed at lo = [\d.]+ \(stable\) and hi = [\d.]+ \(diverged\), "
                     r"hi/lo = [\d.]+: max_stable_lr = [\d.]+\.", section)


def test_sweeps_alike_in_name_and_started_in_the_same_second_get_distinct_labels():
    """Two commands started together: same keys, same name, same second. Their labels still differ
    (a comparison's groups are categories and must be unique), and stay readable: name, time, id."""
    from types import SimpleNamespace

    from gdexp.report.select import sweep_labels

    def parent(run_id, ms):
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id, run_name="lr_grid", start_time=ms),
                               data=SimpleNamespace(tags={}))

    same = [parent("a" * 32, 1_765_000_000_100), parent("b" * 32, 1_765_000_000_900)]
    import pandas as pd

    runs = pd.DataFrame({"sweep_id": ["a" * 32, "b" * 32], "loss": ["booth", "booth"]})
    labels = sweep_labels(same, runs)
    assert len(set(labels.values())) == 2
    assert labels["a" * 32].startswith("lr_grid (started ") and "run aaaaaaaa" in labels["a" * 32]
    apart = [parent("a" * 32, 1_765_000_000_100), parent("b" * 32, 1_765_000_002_100)]
    assert all("run " not in v for v in sweep_labels(apart, runs).values())
