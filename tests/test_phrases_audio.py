"""The clip DSP chain, the unit's join, WAV output and playback errors (no espeak-ng needed)."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from installation.errors import DeviceError, FormatError
from phrases import audio

RATE_IN, RATE_OUT = 22050, 16000


def _tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def _db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x * x))))


@pytest.mark.parametrize("freq", [220.0, 1000.0, 3400.0, 6000.0])
def test_resampler_keeps_the_passband(freq: float) -> None:
    x = _tone(freq, 0.5, RATE_IN)
    y = audio.resample(x, RATE_IN, RATE_OUT)
    assert y.size == round(x.size * RATE_OUT / RATE_IN)
    want = _tone(freq, y.size / RATE_OUT, RATE_OUT)[:y.size]
    inner = slice(200, -200)  # the edges see the zero padding
    err = np.max(np.abs(y[inner] - want[inner]))
    assert err < 2e-3, f"{freq} Hz: max error {err:.2e}"


@pytest.mark.parametrize("freq", [8500.0, 10000.0])
def test_resampler_removes_what_would_alias(freq: float) -> None:
    y = audio.resample(_tone(freq, 0.5, RATE_IN, amp=1.0), RATE_IN, RATE_OUT)
    assert _db(y[200:-200]) < -60.0, f"{freq} Hz leaks at {_db(y[200:-200]):.1f} dBFS"


def test_resampler_upsamples_and_is_identity_at_equal_rates() -> None:
    x = _tone(440.0, 0.2, 8000)
    y = audio.resample(x, 8000, 16000)
    assert y.size == 2 * x.size
    assert np.max(np.abs(y[200:-200:2] - x[100:-100])) < 2e-3  # even outputs sit on inputs
    np.testing.assert_array_equal(audio.resample(x, 8000, 8000), x)


def test_trim_keeps_speech_and_a_margin() -> None:
    rate = RATE_OUT
    x = np.concatenate([np.zeros(rate // 2), _tone(300, 0.3, rate), np.zeros(rate)])
    y = audio.trim_silence(x, rate)
    margin = rate * audio.TRIM_MARGIN_MS / 1000
    assert 0.3 * rate <= y.size <= 0.3 * rate + 2 * margin + 2 * rate * audio.TRIM_FRAME_MS / 1000
    assert np.max(np.abs(y)) == pytest.approx(0.5, abs=1e-3)
    assert audio.trim_silence(np.zeros(1000), rate).size == 0


def test_fades_end_exactly_at_zero_and_dc_is_removed() -> None:
    x = 0.3 + _tone(500, 0.2, RATE_OUT)
    y = audio.apply_fades(audio.remove_dc(x), RATE_OUT)
    assert y[0] == 0.0 and y[-1] == 0.0
    assert abs(np.mean(audio.remove_dc(x))) < 1e-12
    n = int(RATE_OUT * audio.FADE_MS / 1000)
    assert np.all(np.abs(y[:n]) <= np.abs(audio.remove_dc(x)[:n]) + 1e-12)
    mid = slice(n, -n)
    np.testing.assert_array_equal(y[mid], audio.remove_dc(x)[mid])


def test_normalize_hits_the_target_unless_the_peak_ceiling_wins() -> None:
    quiet = _tone(400, 0.5, RATE_OUT, amp=0.01)
    level = audio.active_rms_db(audio.normalize(quiet, RATE_OUT), RATE_OUT)
    assert level == pytest.approx(audio.TARGET_ACTIVE_RMS_DBFS, abs=0.01)
    spiky = quiet.copy()
    spiky[1000] = 0.5  # a crest factor no target can honour
    y = audio.normalize(spiky, RATE_OUT)
    assert np.max(np.abs(y)) == pytest.approx(10 ** (audio.PEAK_CEILING_DBFS / 20))


def test_active_level_ignores_pauses() -> None:
    word = _tone(300, 0.3, RATE_OUT, amp=0.2)
    pause = np.zeros(RATE_OUT // 2)
    one = audio.active_rms_db(word, RATE_OUT)
    two = audio.active_rms_db(np.concatenate([word, pause, word]), RATE_OUT)
    assert one == pytest.approx(two, abs=0.1)


def test_quantize12_is_right_aligned_unsigned_and_clipped() -> None:
    q = audio.quantize12(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 0.5]))
    assert q.dtype == np.uint16
    # -1.0 -> 1 keeps the scale symmetric about 2048; beyond full scale clips to 0 and 4095
    assert q.tolist() == [0, 1, 2048, 4095, 4095, 2048 + 1024]  # rint(0.5 * 2047) = 1024
    assert int(q.max()) < 1 << 12


def test_join_puts_idle_gaps_between_clips() -> None:
    a = np.array([2048, 2100, 2048], dtype=np.uint16)
    b = np.array([2048, 1990, 2000, 2048], dtype=np.uint16)
    joined = audio.join_clips([a, b, a], gap=5)
    assert joined.tolist() == a.tolist() + [2048] * 5 + b.tolist() + [2048] * 5 + a.tolist()
    assert audio.gap_samples(90, 16000) == 1440


def test_write_wav_is_16_bit_pcm_a_player_reads(tmp_path: Path) -> None:
    samples = audio.quantize12(_tone(440, 0.25, RATE_OUT, amp=0.5))
    (tmp_path / "out").mkdir()  # writers never create folders behind the caller's back
    path = audio.write_wav(tmp_path / "out" / "x.wav", samples, RATE_OUT)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE_OUT)
        s16 = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(s16, (samples.astype(np.int32) - 2048) * 16)
    x, rate = audio.read_wav(path)
    assert rate == RATE_OUT and np.max(np.abs(x)) == pytest.approx(0.5, abs=1e-3)
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]  # no temp file left
    if shutil.which("sox"):
        stat = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True)
        assert "Length (seconds):      0.250000" in stat.stderr


def test_read_wav_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....not a wav")
    with pytest.raises(FormatError, match="not a readable WAV"):
        audio.read_wav(junk)
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0" * 400)
    with pytest.raises(FormatError, match="not mono 16-bit"):
        audio.read_wav(stereo)


class _NoDevice:
    """Stands in for sounddevice on a machine without an output device."""

    def query_devices(self, kind: str) -> None:
        raise ValueError("No output device")


class _Recorder:
    def __init__(self) -> None:
        self.played: list[tuple[np.ndarray, int]] = []
        self.waited = False

    def query_devices(self, kind: str) -> dict[str, str]:
        return {"name": "fake"}

    def play(self, data: np.ndarray, samplerate: int, blocking: bool) -> None:
        self.played.append((data, samplerate))

    def wait(self) -> None:
        self.waited = True


def test_play_without_a_device_suggests_wav() -> None:
    with pytest.raises(DeviceError, match="no audio output device") as exc:
        audio.play(np.full(10, 2048, dtype=np.uint16), RATE_OUT, backend=_NoDevice())
    assert "--wav" in (exc.value.hint or "")


def test_play_hands_the_device_floats_around_zero() -> None:
    rec = _Recorder()
    audio.play(np.array([1, 2048, 4095], dtype=np.uint16), RATE_OUT, backend=rec)
    (data, rate), = rec.played
    assert rec.waited and rate == RATE_OUT and data.dtype == np.float32
    np.testing.assert_allclose(data, [-1.0, 0.0, 1.0], atol=1e-6)


def test_real_playback_on_a_machine_without_audio_is_a_device_error() -> None:
    try:
        import sounddevice

        sounddevice.query_devices(kind="output")
    except Exception:  # the expected case here and in CI: no PortAudio device
        pass
    else:
        pytest.skip("this machine has an audio output device")
    with pytest.raises(DeviceError) as exc:
        audio.play(np.full(160, 2048, dtype=np.uint16), RATE_OUT)
    assert "--wav" in (exc.value.hint or "")


def test_play_when_sounddevice_cannot_load_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "sounddevice", None)  # import now fails
    with pytest.raises(DeviceError, match="cannot load PortAudio") as exc:
        audio.play(np.full(10, 2048, dtype=np.uint16), RATE_OUT)
    assert "--wav" in (exc.value.hint or "") and "libportaudio2" in (exc.value.hint or "")


def test_normalize_balances_active_and_whole_clip_level() -> None:
    """A word with a long pause inside: the active level alone would leave the whole clip far
    quieter than a pauseless one; the balanced level puts the target between the two."""
    word = _tone(300, 0.3, RATE_OUT, amp=0.05)
    paused = np.concatenate([word, np.zeros(RATE_OUT // 2), word])
    y = audio.normalize(paused, RATE_OUT)
    active = audio.active_rms_db(y, RATE_OUT)
    whole = _db(y)
    assert active - whole > 2.5  # the pause takes 45 % of the clip: 10 log10(0.6 / 1.1)
    assert (active + whole) / 2 == pytest.approx(audio.TARGET_ACTIVE_RMS_DBFS, abs=0.01)
    assert audio.clip_level_db(word, RATE_OUT) == pytest.approx(audio.active_rms_db(word, RATE_OUT),
                                                                abs=0.05)
