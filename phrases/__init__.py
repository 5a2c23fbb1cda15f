"""The verdict bank: 2 moods x 4 slots x 16 fragments = 131,072 spoken verdicts, their rendering
to DAC clips with espeak-ng, the SD clip bank and playback through sounddevice.

    import phrases
    v = phrases.verdict(code)        # Verdict(code, mood, fragments, text), O(1)
    phrases.code_of(v.text) == code  # the inverse; InputError for an unknown text

Modules: `bank` (the text and the code <-> verdict mapping), `audio` (numpy DSP, WAV files,
playback), `render` (espeak-ng, the fragment cache, `build_bank`), `clipbank` (the `.qcv` SD
format, writer and reader). This package never imports torch, textual or the appliance layer
(only the leaf `installation.errors`); the audio modules are imported on demand, not here.
"""

from phrases.bank import (
    MOODS,
    SLOTS,
    Bank,
    Verdict,
    code_of,
    default_bank,
    load_bank,
    verdict,
)

__all__ = ["MOODS", "SLOTS", "Bank", "Verdict", "code_of", "default_bank", "load_bank", "verdict",
           "audio", "clipbank", "render"]


def __getattr__(name: str):  # `phrases.audio.write_wav(...)` works without importing it first
    if name in ("audio", "clipbank", "render"):
        import importlib

        return importlib.import_module(f"phrases.{name}")
    raise AttributeError(f"module 'phrases' has no attribute {name!r}")
