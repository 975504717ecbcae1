"""PIE examples in the report: the thumbnail grid embedded in report.html, the table, and no PIE."""

import base64

import pytest
import torch

from prunekit.experiment.pie_step import PIE_PNG, write_pie
from prunekit.report import write_report
from prunekit.report.thumbnails import denormalize, thumbnail_grid

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def summary(pie: dict) -> dict:
    return {"run": {"name": "r", "id": "r-1", "model": "lenet5", "dataset": "mnist", "method": "magnitude"},
            "dense": {"accuracy": 0.99}, "pruned": {"accuracy": 0.98}, "per_class": {"dense": [1.0, 1.0], "pruned": [1.0, 0.5],
                                                                                     "classes": ["zero", "one"]},
            "pie": pie}


def test_denormalize_undoes_normalisation() -> None:
    raw = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    assert torch.allclose(denormalize((raw - 0.1307) / 0.3081, [0.1307], [0.3081]), raw, atol=1e-6)
    assert denormalize(torch.tensor([[[[-5.0, 5.0]]]]), [0.5], [0.25]).flatten().tolist() == [0.0, 1.0]  # clamped
    assert denormalize(torch.tensor([[[[2.0, 4.0]]]])).flatten().tolist() == [0.0, 1.0]  # no mean/std: own range
    with pytest.raises(ValueError, match="need 1 values"):
        denormalize(raw, [0.1, 0.2], [0.3, 0.4])
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        thumbnail_grid(torch.zeros(2, 1, 4, 4), ["a"])


def test_report_embeds_the_thumbnails(tmp_path) -> None:
    (tmp_path / "metrics.jsonl").write_text("")
    pie = {"count": 2, "seeds": 1, "examples": [{"index": 1, "label": 1, "dense": 1, "pruned": [0], "wrong_seeds": 1},
                                                 {"index": 3, "label": 0, "dense": 0, "pruned": [1], "wrong_seeds": 1}]}
    test = [(torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))]
    kept = write_pie(tmp_path, pie, test, ["zero", "one"], [0.5], [0.25])
    assert kept == {"count": 2, "seeds": 1, "file": "pie.json", "shown": pie["examples"], "thumbnails": PIE_PNG}
    png = (tmp_path / PIE_PNG).read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    md, page = write_report(tmp_path, summary(kept))
    html = page.read_text()
    assert f"<img class='pie' alt='PIE examples' src='data:image/png;base64,{base64.b64encode(png).decode()}'>" in html
    assert "PIE examples: 2 test examples wrong after pruning, right before" in html
    assert "| 1 | one | one | zero |" in md.read_text()
    assert f"![PIE examples]({PIE_PNG})" in md.read_text()


def test_no_pie_examples(tmp_path) -> None:
    (tmp_path / "metrics.jsonl").write_text("")
    kept = write_pie(tmp_path, {"count": 0, "seeds": 1, "examples": []}, [], [], None, None)
    assert kept == {"count": 0, "seeds": 1, "file": "pie.json", "shown": []}
    assert not (tmp_path / PIE_PNG).exists()
    md, page = write_report(tmp_path, summary(kept))
    assert "PIE examples: 0 test examples" in md.read_text()
    assert "class='pie'" not in page.read_text()
