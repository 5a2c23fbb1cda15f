"""The rendered clip bank, with the real synthesizer of the default voice (flite's rms): loudness, click-free joins, the .qcv round trip, corruption caught by CRC,
the render cache, and the `qcat phrases` commands.

The 128 fragments are rendered once per test session (a session-scoped fixture) and reused.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

import phrases
from installation.cli import main
from installation.errors import FormatError, InputError, ToolMissing
from phrases import audio, voices
from phrases.bank import BANK_FILE, load_bank
from phrases.clipbank import (
    HEADER,
    INDEX_ENTRY,
    INDEX_OFFSET,
    N_CLIPS,
    SECTOR,
    ClipBank,
    clip_index,
    write_clip_bank,
)
from phrases.render import DEFAULT_VOICE, RenderStats, build_bank, render_clips
from phrases.verify import MAX_VERDICT_SECONDS, verify_durations, verify_text
from quantum.latent import N_VERDICTS

_DEFAULT_MISSING = voices.unavailable(voices.parse_voice(DEFAULT_VOICE))
pytestmark = [
    pytest.mark.slow,  # renders 128 fragments once per session (seconds to half a minute)
    pytest.mark.skipif(_DEFAULT_MISSING is not None,
                       reason=f"the default voice {DEFAULT_VOICE} cannot speak here: "
                              f"{_DEFAULT_MISSING} (`make test` installs it)"),
]

LOUDNESS_SPREAD_DB = 1.5
JOIN_WINDOW = 16  # samples either side of a join (1 ms at 16 kHz)
JOIN_STEP_MAX = 12  # LSB of 4096: the largest sample-to-sample step allowed near a join
SETTINGS = {"voice": DEFAULT_VOICE, "words_per_minute": 160, "pitch": 45, "sample_rate": 16000,
            "gap_ms": 90, "tempo": 1.18}  # the config defaults: a copied bank counts as current


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, RenderStats]:
    root = tmp_path_factory.mktemp("verdict-bank")
    stats = RenderStats()
    calls: list[tuple[int, int, str]] = []
    path = build_bank(root / "verdicts.qcv", root / "cache", stats=stats,
                      progress=lambda d, t, n: calls.append((d, t, n)), **SETTINGS)
    assert [c[0] for c in calls] == list(range(1, N_CLIPS + 1)) and calls[-1][1] == N_CLIPS
    return path, root / "cache", stats


@pytest.fixture(scope="session")
def bank(built: tuple[Path, Path, RenderStats]) -> ClipBank:
    return ClipBank.load(built[0])


def _level_db(samples12: np.ndarray, rate: int) -> float:
    """Active-speech RMS, computed here independently of phrases.audio: 20 ms frames, those
    within 30 dB of the loudest frame."""
    x = (samples12.astype(np.float64) - 2048) / 2047
    n = rate // 50
    frames = x[: x.size // n * n].reshape(-1, n)
    p = (frames ** 2).mean(axis=1)
    return float(10 * np.log10(p[p >= p.max() / 1000].mean()))


def test_build_rendered_every_fragment_into_a_sized_bank(built, bank: ClipBank) -> None:
    path, _, stats = built
    assert stats.rendered + stats.cached == N_CLIPS
    assert bank.sample_rate == 16000 and bank.gap_ms == 90 and bank.gap_samples == 1440
    data = path.read_bytes()
    header_bytes = HEADER.unpack_from(data, 0)[2]
    offsets = [INDEX_ENTRY.unpack_from(data, INDEX_OFFSET + i * INDEX_ENTRY.size)
               for i in range(N_CLIPS)]
    assert all(off % SECTOR == 0 and size % SECTOR == 0 for off, size, _, _ in offsets)
    assert len(data) == header_bytes + sum(size for _, size, _, _ in offsets) + SECTOR
    for clip in bank.clips:
        assert clip.dtype == np.uint16 and int(clip.max()) <= 4095
        assert 0.25 <= clip.size / bank.sample_rate <= 3.0
    prov = bank.provenance
    assert prov["voice"] == DEFAULT_VOICE == "flite:rms"
    assert (prov["synthesizer"], prov["synthesizer_version"]) == ("flite", stats.engine_version)
    assert stats.engine_version[:1].isdigit()  # parsed from `flite --version`
    assert prov["fragments"] == [t for *_, t in phrases.default_bank().all_fragments()]
    assert (prov["words_per_minute"], prov["pitch"], prov["sample_rate"]) == (160, 45, 16000)
    assert prov["tempo"] == 1.18


def test_loudness_spread_across_all_fragments(bank: ClipBank) -> None:
    levels = [_level_db(c, bank.sample_rate) for c in bank.clips]
    plain = [20 * np.log10(np.sqrt(np.mean(audio.to_float(c) ** 2))) for c in bank.clips]
    names = [t for *_, t in phrases.default_bank().all_fragments()]
    lo, hi = int(np.argmin(levels)), int(np.argmax(levels))
    assert levels[hi] - levels[lo] <= LOUDNESS_SPREAD_DB, (
        f"active RMS from {levels[lo]:.2f} dBFS ({names[lo]!r}) "
        f"to {levels[hi]:.2f} dBFS ({names[hi]!r})")
    assert max(plain) - min(plain) <= LOUDNESS_SPREAD_DB
    peaks = [np.max(np.abs(audio.to_float(c))) for c in bank.clips]
    assert 20 * np.log10(max(peaks)) <= audio.PEAK_CEILING_DBFS + 0.01


def test_every_clip_edge_is_click_free(bank: ClipBank) -> None:
    """Every join of every verdict is (end of a clip, idle gap, start of a clip), so checking
    both edges of all 128 clips covers the joins of all 131,072 verdicts."""
    for i, clip in enumerate(bank.clips):
        c = clip.astype(np.int32)
        assert c[0] == 2048 and c[-1] == 2048, f"clip {i} does not start and end at mid-scale"
        for edge in (c[:JOIN_WINDOW + 1], c[-JOIN_WINDOW - 1:]):
            step = int(np.max(np.abs(np.diff(edge))))
            assert step <= JOIN_STEP_MAX, f"clip {i}: a step of {step} LSB at its edge"


@pytest.mark.parametrize("code", [0, 1 << 16, N_VERDICTS - 1, 0x0ABCD, 0x1F00F, 77777])
def test_joined_verdicts_have_no_step_at_a_join(bank: ClipBank, code: int) -> None:
    clips = bank.verdict_clips(code)
    samples = bank.verdict_samples(code).astype(np.int32)
    gap = bank.gap_samples
    assert samples.size == sum(c.size for c in clips) + 3 * gap
    pos, joins = 0, []
    for c in clips[:-1]:
        pos += c.size
        joins += [pos, pos + gap]  # clip end -> gap, gap -> next clip
        assert np.all(samples[pos:pos + gap] == 2048)
        pos += gap
    for j in joins:
        window = samples[j - JOIN_WINDOW:j + JOIN_WINDOW + 1]
        step = int(np.max(np.abs(np.diff(window))))
        assert step <= JOIN_STEP_MAX, f"code {code}: a step of {step} LSB at sample {j}"
    assert samples[0] == samples[-1] == 2048  # starts and ends where the DAC idles


def test_spoken_durations_fit_a_few_seconds(bank: ClipBank) -> None:
    seconds = [c.size / bank.sample_rate for c in bank.clips]
    report = verify_durations(phrases.default_bank(), verify_text(phrases.default_bank()),
                              seconds, bank.gap_samples / bank.sample_rate)
    assert report.ok, report.failures
    assert report.longest_seconds is not None and report.longest_seconds <= MAX_VERDICT_SECONDS
    assert bank.verdict_seconds(report.longest_seconds_code) == pytest.approx(
        report.longest_seconds, abs=1e-3)


def test_clip_bank_round_trip_is_exact(built, bank: ClipBank, tmp_path: Path) -> None:
    _, cache, _ = built
    clips, stats = render_clips(cache, **{k: v for k, v in SETTINGS.items() if k != "gap_ms"})
    assert stats.rendered == 0 and stats.cached == N_CLIPS
    for i, (a, b) in enumerate(zip(clips, bank.clips, strict=True)):
        assert np.array_equal(a, b), f"clip {i} differs after the round trip"
    rng = np.random.default_rng(6)
    synthetic = [rng.integers(0, 4096, size=int(rng.integers(0, 3000)), dtype=np.uint16)
                 for _ in range(N_CLIPS)]
    path = write_clip_bank(tmp_path / "s.qcv", synthetic, 8000, 50, 400, {"tool": "test", "é": 1})
    back = ClipBank.load(path)
    assert (back.sample_rate, back.gap_ms, back.gap_samples) == (8000, 50, 400)
    assert back.provenance == {"tool": "test", "é": 1}
    for i, (a, b) in enumerate(zip(synthetic, back.clips, strict=True)):
        assert a.dtype == b.dtype and np.array_equal(a, b), f"synthetic clip {i} differs"
    assert np.array_equal(back.clip(1, 2, 3), synthetic[clip_index(1, 2, 3)])
    assert clip_index(1, 2, 3) == 64 + 32 + 3


def _corrupt(src: Path, dst: Path, at: int, xor: int = 0x01) -> Path:
    data = bytearray(src.read_bytes())
    data[at] ^= xor
    dst.write_bytes(bytes(data))
    return dst


def _entry(path: Path, i: int) -> tuple[int, int, int, int]:
    return INDEX_ENTRY.unpack_from(path.read_bytes(), INDEX_OFFSET + i * INDEX_ENTRY.size)


def test_a_corrupted_clip_is_caught_by_its_crc(built, tmp_path: Path) -> None:
    path = built[0]
    i = clip_index(1, 2, 7)  # motivated object 7
    offset, _, n, _ = _entry(path, i)
    bad = _corrupt(path, tmp_path / "bad.qcv", offset + 16 + n)  # one byte inside a sample
    with pytest.raises(FormatError, match=r"clip #103 \(motivated object 7\) fails its CRC-32") \
            as exc:
        ClipBank.load(bad)
    assert "qcat phrases build" in (exc.value.hint or "")


@pytest.mark.parametrize(("where", "says"), [
    ("magic", "wrong magic"),
    ("index", "header CRC"),
    ("trailer", "SHA-256"),
    ("truncate", "truncated"),
    ("version", "format version 9"),
])
def test_damaged_files_are_refused_with_one_sentence(built, tmp_path: Path, where: str,
                                                     says: str) -> None:
    path = built[0]
    data = bytearray(path.read_bytes())
    if where == "magic":
        data[0:8] = b"NOTCLIPS"
    elif where == "index":
        data[INDEX_OFFSET + 5 * INDEX_ENTRY.size + 8] ^= 1  # sample count of clip 5
    elif where == "trailer":
        data[-SECTOR + 16] ^= 1  # the stored digest
    elif where == "truncate":
        del data[-SECTOR:]
    elif where == "version":
        struct.pack_into("<H", data, 8, 9)
    bad = tmp_path / "bad.qcv"
    bad.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=says):
        ClipBank.load(bad)
    with pytest.raises(InputError, match="does not exist"):
        ClipBank.load(tmp_path / "absent.qcv")


def test_rebuild_renders_only_changed_fragments(built, tmp_path: Path) -> None:
    _, cache, _ = built
    text = BANK_FILE.read_text(encoding="utf-8")
    start = text.index("[bank]")
    edited = tmp_path / "bank.toml"
    edited.write_text(text[:start] + text[start:].replace('"Carry on."', '"Keep going."', 1),
                      encoding="utf-8")
    stats = RenderStats()
    out = build_bank(tmp_path / "v.qcv", cache, bank=load_bank(edited), stats=stats, **SETTINGS)
    assert (stats.rendered, stats.cached) == (1, N_CLIPS - 1)
    again = RenderStats()
    build_bank(tmp_path / "w.qcv", cache, bank=load_bank(edited), stats=again, **SETTINGS)
    assert (again.rendered, again.cached) == (0, N_CLIPS)
    assert ClipBank.load(out).provenance["fragments"][64 + 48 + 4] == "Keep going."


@pytest.mark.parametrize(("voice", "package"), [("en-us", "espeak-ng"),
                                               ("festival:kal_diphone", "festival"),
                                               ("flite:slt", "flite")])
def test_missing_engine_names_the_package(tmp_path: Path, monkeypatch, voice: str,
                                          package: str) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    with pytest.raises(ToolMissing, match=f"{package} is not installed") as exc:
        build_bank(tmp_path / "v.qcv", tmp_path / "cache", voice=voice)
    assert f"apt-get install {package}" in (exc.value.hint or "")
    assert not (tmp_path / "v.qcv").exists()


def test_unknown_voice_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no voice 'xx-nonexistent'") as exc:
        render_clips(tmp_path / "cache", voice="xx-nonexistent")
    assert "espeak-ng --voices" in (exc.value.hint or "")
    assert list((tmp_path / "cache").glob("*")) == []  # no half-written cache entry


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture
def home(built, tmp_path: Path) -> Path:
    """A qcat home whose clip cache is pre-filled (a build there runs no synthesizer)."""
    root = tmp_path / "home"
    shutil.copytree(built[1], root / "builds" / "clip-cache")
    return root


def test_cli_say_random_writes_a_playable_wav(home: Path, tmp_path: Path, capsys) -> None:
    wav = tmp_path / "x.wav"
    assert main(["--home", str(home), "phrases", "say", "--random", "--wav", str(wav)]) == 0
    out = capsys.readouterr()
    code_s, mood, text = out.out.splitlines()[0].split("\t")
    assert "built " in out.err and (home / "builds" / "verdicts.qcv").exists()
    code = int(code_s)
    assert phrases.verdict(code).text == text and mood == phrases.verdict(code).mood
    bank = ClipBank.load(home / "builds" / "verdicts.qcv")
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        s16 = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.array_equal(s16, (bank.verdict_samples(code).astype(np.int32) - 2048) * 16)
    if shutil.which("sox"):
        stat = subprocess.run(["sox", str(wav), "-n", "stat"], capture_output=True, text=True)
        seconds = float(stat.stderr.split("Length (seconds):")[1].split()[0])
        assert 3.0 < seconds <= MAX_VERDICT_SECONDS


def test_cli_say_code_twice_reuses_the_bank(home: Path, tmp_path: Path, capsys) -> None:
    args = ["--home", str(home), "phrases", "say", "65536", "--json", "--wav"]
    assert main([*args, str(tmp_path / "a.wav")]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*args, str(tmp_path / "b.wav")]) == 0
    captured = capsys.readouterr()
    assert "building" not in captured.err
    assert json.loads(captured.out)["text"] == first["text"] == phrases.verdict(65536).text
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_cli_say_without_audio_device_suggests_wav(home: Path, capsys) -> None:
    try:
        import sounddevice

        sounddevice.query_devices(kind="output")
    except Exception:
        pass
    else:
        pytest.skip("this machine has an audio output device")
    assert main(["--home", str(home), "phrases", "say", "0"]) == 3
    err = capsys.readouterr().err
    assert "qcat: error:" in err and "--wav" in err and "Traceback" not in err


def test_cli_say_usage_errors(home: Path, capsys) -> None:
    assert main(["--home", str(home), "phrases", "say"]) == 2
    assert main(["--home", str(home), "phrases", "say", "5", "--random"]) == 2
    assert main(["--home", str(home), "phrases", "say", "131072", "--wav", "x.wav"]) == 2
    assert "outside 0..131071" in capsys.readouterr().err


def test_cli_build_and_verify(home: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "card" / "v.qcv"
    # a folder that does not exist is refused, not created behind the user's back
    assert main(["--home", str(home), "phrases", "build", "--out", str(out), "--json"]) == 2
    assert "folder" in capsys.readouterr().err and not out.parent.exists()
    out.parent.mkdir()
    assert main(["--home", str(home), "phrases", "build", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rendered"] == 0 and summary["cached"] == N_CLIPS
    assert summary["bytes"] == out.stat().st_size and ClipBank.load(out).sha256 == summary["sha256"]
    assert main(["--home", str(home), "phrases", "verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["distinct_texts"] == N_VERDICTS
    assert 3.0 < report["longest_seconds"] <= MAX_VERDICT_SECONDS


def test_cli_verify_reports_data_file_errors_by_line(home: Path, tmp_path: Path, capsys) -> None:
    text = BANK_FILE.read_text(encoding="utf-8")
    start = text.index("[bank]")
    bad = tmp_path / "bad.toml"
    bad.write_text(text[:start] + text[start:].replace('"Carry on."', '"carry on"', 1),
                   encoding="utf-8")
    line = next(n for n, s in enumerate(bad.read_text().splitlines(), 1) if '"carry on"' in s)
    assert main(["--home", str(home), "phrases", "verify", "--bank", str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"{bad}:{line}: motivated closing:" in captured.out
    assert "2 problems" in captured.err


def test_cli_show_and_list(home: Path, capsys) -> None:
    assert main(["--home", str(home), "phrases", "show", "0x10000", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["code"] == 65536 and shown["mood"] == "motivated"
    assert shown["text"] == " ".join(shown["fragments"])
    assert main(["--home", str(home), "phrases", "show", shown["text"]]) == 0
    assert "code      65536 (0x10000)" in capsys.readouterr().out
    assert main(["--home", str(home), "phrases", "list", "--mood", "motivated",
                 "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[:2] for ln in lines] == [[str(65536 + i), "motivated"]
                                                   for i in range(3)]
    assert main(["--home", str(home), "phrases", "list"]) == 0
    every = capsys.readouterr().out.splitlines()
    assert len(every) == N_VERDICTS and every[-1].startswith("131071\tmotivated\t")
