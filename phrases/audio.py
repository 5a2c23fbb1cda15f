"""Audio for the verdicts: the clip DSP chain, the unit's join, WAV files and playback.

The chain turns espeak-ng's 16-bit 22,050 Hz speech into what the cat unit's DAC plays:

    read WAV -> float64 in [-1, 1) -> resample (windowed-sinc, Kaiser) -> trim silence
    -> remove DC -> 5 ms raised-cosine fades -> normalise active-speech RMS, peak ceiling
    -> 12-bit unsigned, right-aligned in uint16 (mid-scale 2048 is silence)

Everything is numpy and deterministic (no dither), so the same WAV gives the same clip on every
machine. `join_clips` is the one definition of how the unit strings four clips together; playback
and WAV export go through it. Playback imports sounddevice lazily and turns every way it can fail
(no PortAudio, no device) into a DeviceError that suggests `--wav`. Never imports torch or the
appliance layer.
"""

from __future__ import annotations

import io
import math
import os
import wave
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from installation.errors import DeviceError, FormatError
from installation.files import write_atomic

# The DAC: 12-bit unsigned, right-aligned in 16 bits (CH32H417 DAC 12-bit right-aligned mode).
DAC_BITS = 12
DAC_MAX = (1 << DAC_BITS) - 1  # 4095
DAC_MID = 1 << (DAC_BITS - 1)  # 2048: the idle level and the value of silence
DAC_HALF_SCALE = DAC_MID - 1  # float 1.0 maps to 2048 + 2047

# Resampler: windowed sinc. Half-width in output-rate zero crossings of the low-pass filter,
# Kaiser beta for ~80 dB stop band, cutoff a little under the lower Nyquist for a transition band.
RESAMPLE_HALF_ZEROS = 24
RESAMPLE_KAISER_BETA = 8.6
RESAMPLE_CUTOFF = 0.92  # fraction of the lower of the two Nyquist frequencies
RESAMPLE_CHUNK = 8192  # output samples computed per vectorised block (bounds memory)

# Trimming: a frame is speech when its RMS is within TRIM_BELOW_PEAK_DB of the loudest frame.
TRIM_FRAME_MS = 10.0
TRIM_BELOW_PEAK_DB = 40.0
TRIM_MARGIN_MS = 15.0  # kept before the first and after the last speech frame (soft consonants)

FADE_MS = 5.0

# Loudness: RMS over the *active* frames (gated like a simple ITU-T P.56 active level), so a
# fragment with a pause inside is as loud as one without. The peak ceiling wins over the target.
# The level a clip is scaled by weighs that active level with the whole clip's RMS: voices with
# long pauses between words (festival's) would otherwise leave the whole-clip level of the
# fragments 1.7 dB apart; the balance keeps both measures within 1 dB across the bank.
LOUDNESS_FRAME_MS = 20.0
LOUDNESS_GATE_DB = 30.0  # frames more than this below the loudest frame are not speech
LOUDNESS_ACTIVE_WEIGHT = 0.5  # share of the active level (the rest: the whole clip's RMS), in dB
TARGET_ACTIVE_RMS_DBFS = -22.0  # speech crest factors reach ~20 dB; this leaves 1 dB
PEAK_CEILING_DBFS = -1.0

WAV_SAMPLE_WIDTH = 2  # bytes: 16-bit PCM


# ----------------------------------------------------------------------------- WAV in and out

def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A mono 16-bit PCM WAV as float64 in [-1, 1) and its sample rate."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != WAV_SAMPLE_WIDTH:
                raise FormatError(f"{path} is not mono 16-bit PCM "
                                  f"({w.getnchannels()} channels, {8 * w.getsampwidth()} bits)")
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise FormatError(f"{path} is not a readable WAV file ({exc})") from exc
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0, rate


def wav_bytes_from_12bit(samples12: np.ndarray, rate: int) -> bytes:
    """A 16-bit PCM mono WAV file (as bytes) of 12-bit DAC samples: (s - 2048) << 4."""
    s16 = ((samples12.astype(np.int32) - DAC_MID) << (16 - DAC_BITS)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(WAV_SAMPLE_WIDTH)
        w.setframerate(int(rate))
        w.writeframes(s16.tobytes())
    return buf.getvalue()


def write_wav(path: str | os.PathLike[str], samples12: np.ndarray, rate: int) -> Path:
    """Write a WAV a person can play; atomic (temp file + rename), never a partial file."""
    path = Path(path)
    data = wav_bytes_from_12bit(np.asarray(samples12), rate)
    write_atomic(path, data)
    return path


# ----------------------------------------------------------------------------- the DSP chain

def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by polyphase windowed-sinc interpolation.

    x: (n,) float64 at rate_in -> (round(n * rate_out / rate_in),) float64 at rate_out.
    Output sample j sits at input time t = j * rate_in / rate_out; its value is the sum of the
    input samples within the kernel's reach, weighted by a Kaiser-windowed sinc whose cutoff is
    RESAMPLE_CUTOFF of the lower Nyquist (so downsampling is also the anti-alias filter). With
    rates in the ratio L:M (lowest terms), t's fractional part takes only L values: the kernel is
    a table of L phases computed once per rate pair.
    """
    x = np.asarray(x, dtype=np.float64)
    if rate_in == rate_out or x.size == 0:
        return x.copy()
    n_out = int(round(x.size * rate_out / rate_in))
    table, offsets, up, down = _polyphase_table(rate_in, rate_out)
    half = -int(offsets[0]) + 1
    padded = np.concatenate([np.zeros(half), x, np.zeros(half + 1)])
    out = np.empty(n_out, dtype=np.float64)
    for start in range(0, n_out, RESAMPLE_CHUNK):
        j = np.arange(start, min(n_out, start + RESAMPLE_CHUNK), dtype=np.int64)
        base, phase = np.divmod(j * down, up)  # t = base + phase / up, exactly
        taps = padded[base[:, None] + offsets[None, :] + half]
        out[start:start + j.size] = np.einsum("ij,ij->i", taps, table[phase])
    return out


@lru_cache(maxsize=8)
def _polyphase_table(rate_in: int, rate_out: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(phases x taps kernel, tap offsets relative to floor(t), L, M) for rate_in -> rate_out."""
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    fc = RESAMPLE_CUTOFF * 0.5 * min(rate_in, rate_out) / rate_in  # cycles per input sample
    half = int(math.ceil(RESAMPLE_HALF_ZEROS / (2 * fc)))  # kernel half-width, input samples
    offsets = np.arange(-half + 1, half + 1)
    frac = np.arange(up) / up
    d = offsets[None, :] - frac[:, None]  # distance of each tap from t, in input samples
    table = 2 * fc * np.sinc(2 * fc * d) * _kaiser(d, half)
    table.setflags(write=False)
    return table, offsets, up, down


def _kaiser(d: np.ndarray, half: int) -> np.ndarray:
    """Kaiser window evaluated at continuous offsets d (zero outside |d| < half)."""
    r = np.clip(d / half, -1.0, 1.0)
    w = np.i0(RESAMPLE_KAISER_BETA * np.sqrt(1.0 - r * r)) / np.i0(RESAMPLE_KAISER_BETA)
    return np.where(np.abs(d) < half, w, 0.0)


def frame_rms_db(x: np.ndarray, rate: int, frame_ms: float) -> np.ndarray:
    """RMS of consecutive frames in dBFS (a partial last frame counts); -inf for digital zero."""
    n = max(1, int(round(rate * frame_ms / 1000)))
    pad = (-x.size) % n
    frames = np.concatenate([x, np.zeros(pad)]).reshape(-1, n)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    with np.errstate(divide="ignore"):
        return 20 * np.log10(rms)


def trim_silence(x: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading and trailing silence, keeping TRIM_MARGIN_MS around the speech."""
    if x.size == 0:
        return x
    db = frame_rms_db(x, rate, TRIM_FRAME_MS)
    if not np.isfinite(db.max()):
        return x[:0]
    active = np.nonzero(db >= db.max() - TRIM_BELOW_PEAK_DB)[0]
    n = int(round(rate * TRIM_FRAME_MS / 1000))
    margin = int(round(rate * TRIM_MARGIN_MS / 1000))
    lo = max(0, active[0] * n - margin)
    hi = min(x.size, (active[-1] + 1) * n + margin)
    return x[lo:hi]


def remove_dc(x: np.ndarray) -> np.ndarray:
    return x - x.mean() if x.size else x


def apply_fades(x: np.ndarray, rate: int, fade_ms: float = FADE_MS) -> np.ndarray:
    """Raised-cosine fade-in and fade-out; the first and last samples become exactly 0."""
    n = min(int(round(rate * fade_ms / 1000)), x.size // 2)
    y = x.copy()
    if n < 2:
        return y
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / (n - 1))  # 0 .. 1 inclusive
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def active_rms_db(x: np.ndarray, rate: int) -> float:
    """Loudness of speech: RMS over the frames within LOUDNESS_GATE_DB of the loudest frame."""
    if x.size == 0:
        return -math.inf
    n = max(1, int(round(rate * LOUDNESS_FRAME_MS / 1000)))
    pad = (-x.size) % n
    frames = np.concatenate([x, np.zeros(pad)]).reshape(-1, n)
    power = np.mean(frames * frames, axis=1)
    if power.max() <= 0:
        return -math.inf
    gate = power.max() * 10 ** (-LOUDNESS_GATE_DB / 10)
    return float(10 * np.log10(np.mean(power[power >= gate])))


def clip_level_db(x: np.ndarray, rate: int) -> float:
    """The level `normalize` aims at the target: active level and whole-clip RMS (dB), weighed
    by LOUDNESS_ACTIVE_WEIGHT. Equal to both for speech without pauses."""
    active = active_rms_db(x, rate)
    if not math.isfinite(active):
        return active
    whole = float(10 * np.log10(np.mean(x * x)))
    return LOUDNESS_ACTIVE_WEIGHT * active + (1 - LOUDNESS_ACTIVE_WEIGHT) * whole


def normalize(x: np.ndarray, rate: int) -> np.ndarray:
    """Scale the clip level (`clip_level_db`) to TARGET_ACTIVE_RMS_DBFS unless that would push a
    peak above PEAK_CEILING_DBFS."""
    level = clip_level_db(x, rate)
    if not math.isfinite(level):
        return x.copy()
    gain = 10 ** ((TARGET_ACTIVE_RMS_DBFS - level) / 20)
    peak = float(np.max(np.abs(x)))
    ceiling = 10 ** (PEAK_CEILING_DBFS / 20)
    if peak * gain > ceiling:
        gain = ceiling / peak
    return x * gain


def quantize12(x: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint16 holding 12-bit unsigned DAC codes (0 -> 2048); rint, clipped."""
    q = np.rint(np.asarray(x) * DAC_HALF_SCALE) + DAC_MID
    return np.clip(q, 0, DAC_MAX).astype(np.uint16)


def to_float(samples12: np.ndarray) -> np.ndarray:
    """12-bit DAC codes back to float64 around 0 (the inverse of quantize12, up to rounding)."""
    return (np.asarray(samples12, dtype=np.float64) - DAC_MID) / DAC_HALF_SCALE


def process_clip(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """The whole chain: espeak-ng float samples -> the DAC clip (uint16, 12-bit right-aligned)."""
    y = resample(x, rate_in, rate_out)
    y = trim_silence(y, rate_out)
    if y.size == 0:
        raise FormatError("the rendered fragment is silent")
    y = remove_dc(y)
    y = apply_fades(y, rate_out)
    y = normalize(y, rate_out)
    return quantize12(y)


# ----------------------------------------------------------------------------- the unit's join

def gap_samples(gap_ms: int, rate: int) -> int:
    return int(round(rate * gap_ms / 1000))


def join_clips(clips: list[np.ndarray] | tuple[np.ndarray, ...], gap: int) -> np.ndarray:
    """What the unit plays: the clips back to back, `gap` samples of mid-scale between them.

    No crossfade: every clip starts and ends at exactly DAC_MID (the fades), and the DAC idles at
    DAC_MID, so the joins and the start and end of a verdict are continuous by construction.
    """
    parts: list[np.ndarray] = []
    silence = np.full(gap, DAC_MID, dtype=np.uint16)
    for i, clip in enumerate(clips):
        if i:
            parts.append(silence)
        parts.append(np.asarray(clip, dtype=np.uint16))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


# ----------------------------------------------------------------------------- playback

def play(samples12: np.ndarray, rate: int, backend: Any = None) -> None:
    """Play through the default output device and wait; DeviceError (suggesting --wav) if none.

    `backend` is the sounddevice module or a stand-in with the same `query_devices`/`play`/`wait`
    (tests hand one in); None imports sounddevice, which itself fails without PortAudio.
    """
    hint = "write the verdict to a file instead with --wav OUT.wav"
    if backend is None:
        try:
            import sounddevice  # PortAudio is only needed to play, so import it late
        except (ImportError, OSError) as exc:
            raise DeviceError(f"audio playback is unavailable: sounddevice cannot load PortAudio "
                              f"({exc})", hint=hint + " (or install libportaudio2)") from exc
        backend = sounddevice
    try:
        backend.query_devices(kind="output")
    except Exception as exc:  # sounddevice raises PortAudioError or ValueError for "no device"
        raise DeviceError(f"there is no audio output device on this machine ({exc})",
                          hint=hint) from exc
    data = to_float(samples12).astype(np.float32)
    try:
        backend.play(data, samplerate=int(rate), blocking=False)
        backend.wait()
    except Exception as exc:
        raise DeviceError(f"playing the verdict failed on the audio device ({exc})",
                          hint=hint) from exc
