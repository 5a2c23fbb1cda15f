"""The entropy benchmark measures what it claims (sizes asserted; speeds only reported)."""

from __future__ import annotations

from quantum import bench


def test_bench_reports_bytes_per_request_and_draws(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "DRAW_SECONDS", 0.2)
    monkeypatch.setattr(bench, "REQUESTS_PER_KIND", 1)
    steps = []
    result = bench.run(progress=lambda d, t, n: steps.append((d, t)), workdir=tmp_path)
    by_kind = {k["kind"]: k for k in result["requests"]}
    assert by_kind["keyed uint8"]["usable_bytes"] == 1024
    assert by_kind["keyed hex16 size 10"]["usable_bytes"] == 20480
    assert by_kind["keyed hex16 size 10"]["vs_uint8"] == 20
    assert by_kind["legacy hex16 size 1024"]["usable_bytes"] == 1 << 20
    assert all(k["usable_bytes"] == k["planned_bytes"] for k in result["requests"])
    d = result["draws"]
    assert d["draws"] > 0 and d["draw_bytes"] == 203 and d["audit_ok"]
    assert steps[-1][0] == steps[-1][1]
    assert list(tmp_path.iterdir()) == []  # the temporary pool is gone
    text = "\n".join(bench.lines(result))
    assert "20x" in text and "draws/s" in text
