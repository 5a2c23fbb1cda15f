"""The dashboard's cold start and memory (`qcat bench`), and the promise behind the fast start:
the dashboard, with units attached, never imports torch (DESIGN §2)."""

from __future__ import annotations

import pytest

from installation import tui_bench


def test_dashboard_with_two_units_measured_beside_a_bare_textual_app() -> None:
    r = tui_bench.run(runs=1)
    assert r["units_attached"], "the memory was read before both units were attached"
    assert r["torch_imported"] is False, "the dashboard imported torch"
    # a fresh interpreter cannot draw a frame in under 50 ms, nor take minutes
    assert 50 < r["qcat_first_frame_ms"] < 60_000 and 50 < r["peer_first_frame_ms"] < 60_000
    assert r["first_frame_ratio"] == pytest.approx(
        r["qcat_first_frame_ms"] / r["peer_first_frame_ms"], abs=0.01)
    # both resident sizes were read: at least an interpreter's worth
    assert r["qcat_rss_mib"] > 10 and r["peer_rss_mib"] > 10
    assert "textual hello-world" in "\n".join(tui_bench.lines(r))


def test_the_tui_process_never_imports_torch(tmp_path) -> None:
    """The probe's own check, in a fresh interpreter that imported the CLI, the station and the
    whole app and drew its first frame (no units: the import graph is the point)."""
    result = tui_bench.probe(["--home", str(tmp_path / "home")])
    assert result["first_frame_at"] is not None
    assert result["torch_imported"] is False
