"""The run's pictures say what they show: w1.png's title says how its tiles are scaled."""

import matplotlib.pyplot as plt
import torch

from lightning_ref.plots import plot_w1


def test_w1_picture_title_says_each_tile_is_scaled_to_its_own_range(tmp_path, monkeypatch):
    titles = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (titles.append(fig.get_suptitle()), close(fig)))
    plot_w1(torch.randn(3 * 4 * 4, 6), (3, 4, 4), tmp_path / "w1.png")
    (title,) = titles
    assert title.splitlines() == ["W1, one image per hidden unit (all units)", "each tile scaled to its own min..max"]
