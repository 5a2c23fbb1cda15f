"""Speech synthesizers as voices: `ENGINE:VOICE` names, one small adapter per engine.

A voice is named `ENGINE:VOICE`: `espeak-ng:en-us`, `espeak-ng:en-us+f3`, `flite:slt`,
`festival:cmu_us_slt_arctic_hts`. A plain name (`en-us`, the config value before engines existed)
means espeak-ng, so old config files keep working. Each adapter turns one fragment's text into a
16-bit mono WAV at whatever rate its engine speaks; `phrases.audio.process_clip` then makes the DAC
clip exactly as for every other engine, so the loudness and join guarantees do not depend on the
engine.

The table `ENGINES` is the single place that knows the engines: executable, Debian package, how
to read the version (part of the render cache key) and which voices are installed. `CANDIDATES`
lists the English voices Debian ships that `qcat phrases voices` measures by default.

Text reaches every engine through stdin or a file, never as a command-line option (a fragment
that began with "-" would otherwise be read as one). flite and festival read bytes in Latin-1 at
best, so their text is folded to ASCII first ("Schrödinger" -> "Schrodinger"), which they then
pronounce as a word instead of spelling out two stray bytes.

Must never: print, read the config, or import the appliance layer (only its ground modules).
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from installation.errors import ExternalError, InputError, ToolMissing
from installation.files import atomic_path

SEPARATOR = ":"
ENGINE_TIMEOUT_S = 60.0  # one fragment takes well under a second; this only catches a hung process
VERSION_TIMEOUT_S = 20.0  # festival loads its Scheme init files before answering
WAV_HEADER_BYTES = 44  # a WAV no longer than its header holds no speech


@dataclass(frozen=True)
class Voice:
    """One voice of one engine; `str(voice)` is the full `ENGINE:VOICE` name."""

    engine: str
    name: str

    def __str__(self) -> str:
        return f"{self.engine}{SEPARATOR}{self.name}"


@dataclass(frozen=True)
class Prosody:
    """How fast and how high: espeak-ng takes words per minute and pitch (0..99); festival and
    flite take a tempo factor on their own pace (1.0: as the voice was recorded)."""

    words_per_minute: int = 160
    pitch: int = 45
    tempo: float = 1.0


@dataclass(frozen=True)
class Engine:
    """How to run one synthesizer. `synthesize(exe, text, voice, prosody, out)` writes a WAV."""

    name: str
    binary: str
    package: str  # the Debian package that installs `binary`
    synthesize: Callable[[str, str, str, Prosody, Path], None]
    list_voices: Callable[[str], tuple[str, ...]]
    version_command: tuple[str, ...]  # a program beside `binary` and its arguments
    version_pattern: str  # group 1 is the version in what that command prints
    # voices that come in a Debian package of their own (the rest ship with the engine)
    voice_packages: dict[str, str] = field(default_factory=dict)
    speed_and_pitch: bool = False  # phrases.words_per_minute / .pitch apply (else: .tempo)
    # many fragments in one run of the engine (festival spends a second loading its lexicon);
    # None: one `synthesize` call per fragment
    synthesize_many: Callable[[str, list[tuple[str, Path]], str, Prosody], None] | None = None

    def prosody_key(self, prosody: Prosody) -> dict[str, float]:
        """The prosody settings this engine uses (part of the render cache key)."""
        if self.speed_and_pitch:
            return {"wpm": prosody.words_per_minute, "pitch": prosody.pitch}
        return {"tempo": prosody.tempo}

    def find(self) -> str | None:
        return shutil.which(self.binary)

    def require(self) -> str:
        """The executable's path, or one sentence naming the Debian package."""
        exe = self.find()
        if exe is None:
            raise ToolMissing(f"{self.binary} is not installed; it speaks the verdicts with the "
                              f"{self.name} voices",
                              hint=f"install the Debian package: sudo apt-get install "
                                   f"{self.package}")
        return exe

    def synthesize_all(self, exe: str, items: list[tuple[str, Path]], voice: str,
                       prosody: Prosody) -> None:
        """Each (text, out) to a WAV at `out`, each file written atomically."""
        if self.synthesize_many is not None and len(items) > 1:
            self.synthesize_many(exe, items, voice, prosody)
            return
        for text, out in items:
            self.synthesize(exe, text, voice, prosody, out)

    def version(self, exe: str) -> str:
        """The engine's version: part of the render cache key and of the clip bank's provenance."""
        program = str(Path(exe).with_name(self.version_command[0]))
        return _version((program, *self.version_command[1:]), self.version_pattern)


# ----------------------------------------------------------------------------- helpers

def ascii_text(text: str) -> str:
    """Fold accents away ("Schrödinger" -> "Schrodinger") and drop what is left outside ASCII."""
    folded = unicodedata.normalize("NFKD", text)
    return folded.encode("ascii", "ignore").decode("ascii")


def _run(cmd: list[str], what: str, stdin: str | None = None,
         timeout: float = ENGINE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExternalError(f"{what} failed ({exc})") from exc


@functools.cache
def _version(cmd: tuple[str, ...], pattern: str) -> str:
    """e.g. 'eSpeak NG text-to-speech: 1.51 ...' -> '1.51'; the whole first line of the banner
    when the pattern does not match (still a fine cache key). Cached: festival takes 0.3 s."""
    proc = _run(list(cmd), " ".join(cmd), timeout=VERSION_TIMEOUT_S)
    out = (proc.stdout + proc.stderr).strip()
    found = re.search(pattern, out)
    if found:
        return found.group(1)
    return out.splitlines()[0] if out else "unknown"


def _check_output(tmp: Path, engine: str, text: str, proc: subprocess.CompletedProcess[str]
                  ) -> None:
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size <= WAV_HEADER_BYTES:
        err = " ".join((proc.stderr or "").split())[:200]
        raise ExternalError(f"{engine} failed on {text!r} (exit {proc.returncode}: {err})")


def _unknown_voice(engine: Engine, exe: str, voice: str) -> None:
    """flite speaks an unknown voice with its default one and exits 0; festival exits 0 with no
    file. Both are caught here, before anything is written, as one sentence."""
    known = engine.list_voices(exe)
    if voice not in known:
        package = engine.voice_packages.get(voice)
        raise InputError(f"{engine.name} has no voice {voice!r} (it has {', '.join(known)})",
                         hint=f"install it: sudo apt-get install {package}" if package else
                         "pick one of `qcat phrases voices --list`")


# ----------------------------------------------------------------------------- espeak-ng

def _espeak_voices(exe: str) -> tuple[str, ...]:
    """espeak-ng's voices as `-v` takes them: the language and the voice-name columns of
    `espeak-ng --voices`, without the mbrola ones, which need mbrola (not in Debian main)."""
    proc = _run([exe, "--voices"], "espeak-ng --voices")
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    names = [name for r in rows if len(r) >= 5 and not r[4].startswith("mb/")
             for name in (r[1], r[3])]
    return tuple(dict.fromkeys(names))


def _espeak_synthesize(exe: str, text: str, voice: str, prosody: Prosody, out: Path) -> None:
    with atomic_path(out) as tmp:
        cmd = [exe, "-v", voice, "-s", str(prosody.words_per_minute), "-p", str(prosody.pitch),
               "-z", "-w", str(tmp), "--stdin"]
        proc = _run(cmd, f"espeak-ng on {text!r}", stdin=text)
        err = (proc.stderr or "").strip()
        if "voice" in err.lower():  # espeak-ng says so on stderr and may still exit 0
            raise InputError(f"espeak-ng has no voice {voice!r} ({err.splitlines()[0]})",
                             hint="list the voices with `espeak-ng --voices` and set "
                                  "phrases.voice")
        _check_output(tmp, "espeak-ng", text, proc)


# ----------------------------------------------------------------------------- flite

def _flite_voices(exe: str) -> tuple[str, ...]:
    """`flite -lv`: 'Voices available: kal awb_time kal16 awb rms slt'. awb_time is a talking
    clock (it can only say times), so it is left out."""
    proc = _run([exe, "-lv"], "flite -lv")
    words = (proc.stdout + proc.stderr).split(":", 1)[-1].split()
    return tuple(w for w in words if not w.endswith("_time"))


def _flite_synthesize(exe: str, text: str, voice: str, prosody: Prosody, out: Path) -> None:
    _unknown_voice(ENGINES["flite"], exe, voice)
    with atomic_path(out) as tmp:
        src = tmp.with_name(tmp.name + ".txt")
        src.write_text(ascii_text(text) + "\n", encoding="ascii")
        try:
            proc = _run([exe, "-voice", voice, "--setf", f"duration_stretch={1 / prosody.tempo:.4f}",
                         "-f", str(src), "-o", str(tmp)], f"flite on {text!r}")
        finally:
            src.unlink(missing_ok=True)
        _check_output(tmp, "flite", text, proc)


# ----------------------------------------------------------------------------- festival

def _festival_voices(exe: str) -> tuple[str, ...]:
    """`(voice.list)` as festival prints it: '(cmu_us_slt_arctic_hts ked_diphone kal_diphone)'."""
    proc = _run([exe, "-b", "(print (voice.list))"], "festival (voice.list)",
                timeout=VERSION_TIMEOUT_S)
    found = re.search(r"\(([^()]*)\)", proc.stdout)
    return tuple(found.group(1).split()) if found else ()


def _scheme_string(text: str) -> str:
    """A Scheme string literal of `text` (backslashes and double quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_synthesize(exe: str, text: str, voice: str, prosody: Prosody, out: Path) -> None:
    _festival_synthesize_many(exe, [(text, out)], voice, prosody)


def _festival_synthesize_many(exe: str, items: list[tuple[str, Path]], voice: str,
                              prosody: Prosody) -> None:
    """One festival process speaks every item: a Scheme script selects the voice (checked
    first, so it is a known voice's name) and saves one utterance per fragment. The tempo is
    the HTS engine's speed rate (-r) for HTS voices and Duration_Stretch for the others."""
    _unknown_voice(ENGINES["festival"], exe, voice)
    if not items:
        return
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(out)) for _, out in items]
        script = tmps[0].with_name(tmps[0].name + ".scm")
        lines = [f"(voice_{voice})",
                 f"(Parameter.set 'Duration_Stretch {1 / prosody.tempo:.4f})",
                 "(defvar hts_engine_params nil)",  # bound by HTS voices only
                 f"(set! hts_engine_params (append hts_engine_params "
                 f"(list (list \"-r\" {prosody.tempo:.4f}))))"]
        lines += [f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(ascii_text(text))})) "
                  f"{_scheme_string(str(tmp))} 'riff)" for (text, _), tmp in zip(items, tmps,
                                                                                  strict=True)]
        script.write_text("\n".join(lines) + "\n", encoding="ascii")
        try:
            proc = _run([exe, "-b", str(script)], f"festival on {len(items)} fragments",
                        timeout=ENGINE_TIMEOUT_S * len(items))
        finally:
            script.unlink(missing_ok=True)
        if "SIOD ERROR" in (proc.stderr or ""):  # festival's Scheme errors still exit 0
            proc = subprocess.CompletedProcess(proc.args, 1, proc.stdout, proc.stderr)
        for (text, _), tmp in zip(items, tmps, strict=True):
            _check_output(tmp, "festival", text, proc)


# ----------------------------------------------------------------------------- the table

ENGINES: dict[str, Engine] = {
    "espeak-ng": Engine("espeak-ng", "espeak-ng", "espeak-ng", _espeak_synthesize,
                        _espeak_voices, ("espeak-ng", "--version"), r"text-to-speech: (\S+)",
                        speed_and_pitch=True),
    "flite": Engine("flite", "flite", "flite", _flite_synthesize, _flite_voices,
                    ("flite", "--version"), r"version: flite-(\S+)"),
    # the voices are Debian packages of their own
    "festival": Engine("festival", "festival", "festival", _festival_synthesize,
                       _festival_voices, ("festival", "--version"),
                       r"Synthesis System: ([0-9][^:\s]*)",
                       synthesize_many=_festival_synthesize_many,
                       voice_packages={"cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
                                       "kal_diphone": "festvox-kallpc16k",
                                       "ked_diphone": "festvox-kdlpc16k"}),
}
FALLBACK_ENGINE = "espeak-ng"  # the engine every machine with speech has (DEB_PACKAGES)
FALLBACK_VOICE = Voice("espeak-ng", "en-us")

# The English voices Debian ships (bookworm), measured by `qcat phrases voices` when no --voice
# is named. mbrola voices are not in Debian main, so they are not here.
CANDIDATES: tuple[str, ...] = (
    "espeak-ng:en-us", "espeak-ng:en-us+f3", "espeak-ng:en-us+m3", "espeak-ng:en-gb",
    "espeak-ng:en-gb-x-rp",
    "flite:slt", "flite:kal16", "flite:kal", "flite:awb", "flite:rms",
    "festival:cmu_us_slt_arctic_hts", "festival:kal_diphone", "festival:ked_diphone",
)


def parse_voice(spec: str) -> Voice:
    """`ENGINE:VOICE` -> Voice; a plain name is an espeak-ng voice (the old config value).

    An unknown engine or an empty part is one sentence naming the engines there are."""
    spec = spec.strip()
    engine, sep, name = spec.partition(SEPARATOR)
    if not sep:
        engine, name = FALLBACK_ENGINE, spec
    if engine not in ENGINES or not name or not engine:
        raise InputError(f"{spec!r} is not a voice: a voice is ENGINE:VOICE with ENGINE one of "
                         f"{', '.join(ENGINES)}",
                         hint="e.g. festival:cmu_us_slt_arctic_hts or espeak-ng:en-us; "
                              "`qcat phrases voices --list` shows the installed ones")
    return Voice(engine, name)


def canonical(spec: str) -> str:
    """The full `ENGINE:VOICE` name of a voice spec ('en-us' -> 'espeak-ng:en-us')."""
    return str(parse_voice(spec))


def engine_of(voice: Voice) -> Engine:
    return ENGINES[voice.engine]


def engine_available(voice: Voice) -> bool:
    return engine_of(voice).find() is not None


def unavailable(voice: Voice) -> str | None:
    """Why `voice` cannot speak on this machine (its engine or its voice is not installed,
    with the Debian package to install), or None when it can."""
    engine = engine_of(voice)
    exe = engine.find()
    if exe is None:
        return f"{engine.binary} is not installed (sudo apt-get install {engine.package})"
    base = voice.name.split("+")[0]  # espeak-ng variants (+f3) ride on a base voice
    if base not in engine.list_voices(exe):
        if base in engine.voice_packages:
            return f"{engine.name} has no voice {base!r} (sudo apt-get install " \
                   f"{engine.voice_packages[base]})"
        return f"{engine.name} has no voice {base!r}"
    return None


def installed(candidates: tuple[str, ...] = CANDIDATES) -> list[Voice]:
    """The candidates whose engine and voice are both installed here, in table order."""
    found: list[Voice] = []
    listed: dict[str, tuple[str, ...]] = {}
    for spec in candidates:
        voice = parse_voice(spec)
        engine = engine_of(voice)
        exe = engine.find()
        if exe is None:
            continue
        if voice.engine not in listed:
            listed[voice.engine] = engine.list_voices(exe)
        base = voice.name.split("+")[0]  # espeak-ng variants (+f3) ride on a base voice
        if base in listed[voice.engine]:
            found.append(voice)
    return found
