"""Voices: the synthesizer adapters (real espeak-ng, flite, festival), the word-recall measure with
the real pocketsphinx, `qcat phrases voices`, the espeak-ng fallback, and the default's choice.

An engine that is not installed is skipped with the package to install; `make test` installs the
default voice's engine (DEB_PACKAGES) and pocketsphinx (the dev extra).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

import phrases
from installation import config as config_mod
from installation.errors import ConfigError, InputError
from installation.paths import Home
from installation.speech import ensure_clip_bank, is_current
from installation.workspace import Workspace
from phrases import audio, intelligibility, voices
from phrases.render import DEFAULT_TEMPO, DEFAULT_VOICE, build_bank, cache_key, spoken_text

REPO = Path(__file__).resolve().parent.parent
RATE = 16000
KNOWN_GOOD = "Nine lives were not enough."  # the default voice says it word for word (measured)
OTHER = "The cat would like its box back."
ENGINE_VOICES = ["espeak-ng:en-us", "espeak-ng:en-us+f3", "flite:rms", "flite:slt", "flite:kal16",
                 "festival:cmu_us_slt_arctic_hts", "festival:kal_diphone"]


def _skip_unless_speaks(spec: str) -> voices.Voice:
    voice = voices.parse_voice(spec)
    why = voices.unavailable(voice)
    if why:
        pytest.skip(f"{spec} cannot speak here: {why}")
    return voice


def _render(spec: str, texts: list[str], folder: Path, tempo: float = 1.0) -> list[np.ndarray]:
    """The DAC clips of `texts` spoken by `spec`, through one engine run (a batch where the
    engine has one)."""
    voice = _skip_unless_speaks(spec)
    engine = voices.engine_of(voice)
    items = [(spoken_text(t), folder / f"{i}.wav") for i, t in enumerate(texts)]
    folder.mkdir(parents=True, exist_ok=True)
    engine.synthesize_all(engine.require(), items, voice.name, voices.Prosody(160, 45, tempo))
    clips = []
    for _, wav in items:
        x, rate = audio.read_wav(wav)
        clips.append(audio.process_clip(x, rate, RATE))
    return clips


@pytest.fixture(scope="module")
def recogniser() -> intelligibility.PocketSphinx:
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is in the dev extra (make test)")
    return intelligibility.PocketSphinx()


# ----------------------------------------------------------------------------- names

def test_voice_names_plain_and_full() -> None:
    assert voices.parse_voice("en-us") == voices.Voice("espeak-ng", "en-us")  # the old config
    assert voices.canonical("en-us") == "espeak-ng:en-us"
    assert voices.canonical(" flite:slt ") == "flite:slt"
    assert str(voices.parse_voice("espeak-ng:en-us+f3")) == "espeak-ng:en-us+f3"
    assert voices.parse_voice(DEFAULT_VOICE).engine == "flite"


@pytest.mark.parametrize("bad", ["nosuch:voice", "flite:", ":slt", "festival"])
def test_a_bad_voice_name_is_one_sentence(bad: str) -> None:
    if bad == "festival":  # a plain name is an espeak-ng voice: valid, and espeak-ng says no
        assert voices.parse_voice(bad) == voices.Voice("espeak-ng", "festival")
        return
    with pytest.raises(InputError, match="is not a voice: a voice is ENGINE:VOICE with ENGINE "
                                         "one of espeak-ng, flite, festival") as exc:
        voices.parse_voice(bad)
    assert "\n" not in str(exc.value) and "festival:cmu_us_slt_arctic_hts" in (exc.value.hint or "")


def test_config_default_is_the_render_default_and_bad_engines_are_refused(tmp_path: Path) -> None:
    assert config_mod.KEYS["phrases.voice"].default == DEFAULT_VOICE
    assert config_mod.KEYS["phrases.tempo"].default == DEFAULT_TEMPO
    good = tmp_path / "good.toml"
    good.write_text('[phrases]\nvoice = "en-us"\n')  # an old file keeps working
    assert config_mod.load(good)["phrases.voice"] == "en-us"
    bad = tmp_path / "bad.toml"
    bad.write_text('[phrases]\nvoice = "sapi:david"\n')
    with pytest.raises(ConfigError, match=r"phrases.voice = 'sapi:david' is not ENGINE:VOICE"):
        config_mod.load(bad)


def test_ascii_folding_for_engines_that_read_bytes() -> None:
    assert voices.ascii_text("Schrödinger's cat") == "Schrodinger's cat"
    assert intelligibility.words("Schrödinger’s CAT, twice!") == ["schrodinger's", "cat", "twice"]


# ----------------------------------------------------------------------------- adapters

@pytest.mark.parametrize("spec", ENGINE_VOICES)
def test_each_engine_renders_a_clip_that_passes_the_dac_chain(spec: str, tmp_path: Path) -> None:
    (clip,) = _render(spec, ["A superposition of forty kittens"], tmp_path)
    c = clip.astype(np.int32)
    assert clip.dtype == np.uint16 and int(clip.max()) <= 4095
    assert c[0] == c[-1] == 2048  # starts and ends where the DAC idles: clean joins
    for edge in (c[:17], c[-17:]):
        assert int(np.max(np.abs(np.diff(edge)))) <= 12
    assert 0.8 <= clip.size / RATE <= 4.0, f"{spec}: {clip.size / RATE:.2f} s"
    level = audio.clip_level_db(audio.to_float(clip), RATE)
    assert level == pytest.approx(audio.TARGET_ACTIVE_RMS_DBFS, abs=0.5)
    assert 20 * np.log10(np.max(np.abs(audio.to_float(clip)))) <= audio.PEAK_CEILING_DBFS + 0.01


def test_festival_batch_gives_each_text_its_own_file(tmp_path: Path) -> None:
    """One festival run speaks many fragments; each file must hold its own text (a mix-up of
    outputs would pass every loudness check and still say the wrong words)."""
    both = _render("festival:cmu_us_slt_arctic_hts", [KNOWN_GOOD, OTHER], tmp_path / "batch")
    alone = _render("festival:cmu_us_slt_arctic_hts", [OTHER], tmp_path / "alone")
    assert np.array_equal(both[1], alone[0])
    assert not np.array_equal(both[0][:both[1].size], both[1][:both[0].size])


@pytest.mark.parametrize("spec", ["festival:cmu_us_slt_arctic_hts", "flite:slt"])
def test_tempo_speeds_up_festival_and_flite(spec: str, tmp_path: Path) -> None:
    text = "A superposition of forty kittens"
    (plain,) = _render(spec, [text], tmp_path / "plain", tempo=1.0)
    (fast,) = _render(spec, [text], tmp_path / "fast", tempo=1.25)
    assert fast.size < 0.9 * plain.size, (plain.size, fast.size)


def test_cache_key_holds_only_the_prosody_an_engine_uses() -> None:
    espeak, festival = voices.parse_voice("en-us"), voices.parse_voice("festival:kal_diphone")
    a, b = voices.Prosody(160, 45, 1.0), voices.Prosody(160, 45, 1.2)
    assert cache_key("x", espeak, a, "1.51") == cache_key("x", espeak, b, "1.51")
    assert cache_key("x", festival, a, "2.5.0") != cache_key("x", festival, b, "2.5.0")
    slower = voices.Prosody(150, 45, 1.0)
    assert cache_key("x", espeak, a, "1.51") != cache_key("x", espeak, slower, "1.51")
    assert cache_key("x", festival, a, "2.5.0") == cache_key("x", festival, slower, "2.5.0")
    assert cache_key("x", festival, a, "2.5.0") != cache_key("x", festival, a, "2.4.0")


@pytest.mark.parametrize("spec", ["flite:nosuch", "festival:nosuch"])
def test_unknown_voice_of_an_installed_engine_is_refused_before_writing(spec: str,
                                                                        tmp_path: Path) -> None:
    """flite would speak an unknown voice with its default one and exit 0; festival would exit 0
    with no file. Both are one sentence here, and nothing is left in the cache."""
    voice = voices.parse_voice(spec)
    engine = voices.engine_of(voice)
    if engine.find() is None:
        pytest.skip(f"{engine.binary} is not installed (apt-get install {engine.package})")
    with pytest.raises(InputError, match=f"{voice.engine} has no voice 'nosuch'"):
        build_bank(tmp_path / "v.qcv", tmp_path / "cache", voice=spec)
    assert not (tmp_path / "v.qcv").exists() and not list(tmp_path.glob("cache/*"))
    assert voices.unavailable(voice) is not None


# ----------------------------------------------------------------------------- recall

def test_recall_is_order_aware_over_normalised_words() -> None:
    assert intelligibility.word_recall("The math is brutal.", "the math is brutal") == 1.0
    assert intelligibility.word_recall("The math is brutal.", "math is rachel") == 0.5
    assert intelligibility.word_recall("The math is brutal.", "brutal is math the") == 0.25
    assert intelligibility.word_recall("The math is brutal.", "") == 0.0
    assert intelligibility.lcs_length(["a", "b", "c", "d"], ["x", "a", "c", "y", "d"]) == 3


def test_recall_of_a_known_good_clip_silence_noise_and_another_fragment(
        recogniser, tmp_path: Path) -> None:
    (good,) = _render(DEFAULT_VOICE, [KNOWN_GOOD], tmp_path)
    heard = recogniser.transcribe(good, RATE)
    assert intelligibility.word_recall(KNOWN_GOOD, heard) >= 0.8, heard
    # the same clip judged against the wrong text: a measure comparing the wrong texts fails here
    assert intelligibility.word_recall(OTHER, heard) <= 0.3, heard
    silence = np.full(2 * RATE, audio.DAC_MID, dtype=np.uint16)
    assert intelligibility.word_recall(KNOWN_GOOD, recogniser.transcribe(silence, RATE)) == 0.0
    rng = np.random.default_rng(5)
    noise = audio.quantize12(rng.normal(0, 0.1, 2 * RATE))
    assert intelligibility.word_recall(KNOWN_GOOD, recogniser.transcribe(noise, RATE)) <= 0.2
    # a clip at another DAC rate is resampled to the recogniser's 16 kHz first
    slow = audio.quantize12(audio.resample(audio.to_float(good), RATE, 8000))
    assert intelligibility.word_recall(KNOWN_GOOD, recogniser.transcribe(slow, 8000)) >= 0.6


def test_fragment_sample_spreads_over_moods_and_slots() -> None:
    picked = intelligibility.fragment_sample(8)
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == 127
    assert {i // 64 for i in picked} == {0, 1} and {(i // 16) % 4 for i in picked} == {0, 1, 2, 3}
    assert intelligibility.fragment_sample(None) == list(range(128))
    assert intelligibility.verdict_codes(3, 1) == intelligibility.verdict_codes(3, 1)
    assert intelligibility.verdict_codes(3, 1) != intelligibility.verdict_codes(3, 2)


# ----------------------------------------------------------------------------- the CLI

def test_cli_voices_json_shape(run_qcat, recogniser) -> None:
    _skip_unless_speaks("espeak-ng:en-us")
    # the old plain config value still names the espeak-ng voice
    result = run_qcat("phrases", "voices", "--voice", "en-us", "--verdicts", "2",
                      "--fragments", "3", "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert (doc["verdicts"], doc["seed"], doc["fragments"]) == (2, 1, 3)
    (v,) = doc["voices"]
    assert v["voice"] == "espeak-ng:en-us" and v["engine_version"][:1].isdigit()
    assert v["rendered"] == 128  # a fresh home: every fragment was rendered, then cached
    assert [f["text"] for f in v["fragments"]] == [
        t for i, (*_, t) in enumerate(phrases.default_bank().all_fragments())
        if i in intelligibility.fragment_sample(3)]
    codes = intelligibility.verdict_codes(2, 1)
    assert [x["code"] for x in v["verdicts"]] == codes
    assert [x["text"] for x in v["verdicts"]] == [phrases.verdict(c).text for c in codes]
    for item in v["fragments"] + v["verdicts"]:
        assert 0.0 <= item["recall"] <= 1.0 and isinstance(item["heard"], str)
    assert 0.0 <= v["fragment_recall"] <= 1.0 and 0.0 <= v["verdict_recall"] <= 1.0


def test_cli_voices_refuses_bad_names_in_one_sentence(run_qcat) -> None:
    result = run_qcat("phrases", "voices", "--voice", "sapi:david", "--verdicts", "0")
    assert result.code == 2 and "Traceback" not in result.err
    assert "'sapi:david' is not a voice" in result.err
    if voices.ENGINES["flite"].find() is not None:
        result = run_qcat("phrases", "voices", "--voice", "flite:nosuch")
        assert result.code == 2 and "the voice flite:nosuch cannot speak here: flite has no " \
                                    "voice 'nosuch'" in result.err
    listed = json.loads(run_qcat("phrases", "voices", "--list", "--json").out)
    assert listed["default"] == DEFAULT_VOICE
    assert set(listed["voices"]) <= set(voices.CANDIDATES)


def _synthetic_bank(path: Path) -> Path:
    """A real .qcv of the shipped verdict text with short synthetic clips (no synthesizer)."""
    from phrases.clipbank import N_CLIPS, write_clip_bank

    rng = np.random.default_rng(3)
    clips = [rng.integers(0, 4096, size=40 + i, dtype=np.uint16) for i in range(N_CLIPS)]
    texts = [t for *_, t in phrases.default_bank().all_fragments()]
    return write_clip_bank(path, clips, sample_rate=8000, gap_ms=10, gap_samples=80,
                           provenance={"fragments": texts})


def test_cli_say_seeded_verdicts_are_reproducible(run_qcat, tmp_path: Path) -> None:
    clips = _synthetic_bank(tmp_path / "synthetic.qcv")
    args = ["phrases", "say", "--random", "--seed", "7", "--count", "3", "--clips", str(clips),
            "--json", "--wav"]
    first = run_qcat(*args, tmp_path / "a.wav")
    assert first.code == 0, first.err
    again = run_qcat(*args, tmp_path / "b.wav")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    doc = json.loads(first.out)
    assert doc["verdicts"] == json.loads(again.out)["verdicts"] and len(doc["verdicts"]) == 3
    from phrases.clipbank import ClipBank

    bank = ClipBank.load(clips)
    pause = audio.gap_samples(700, bank.sample_rate)
    want = sum(bank.verdict_samples(v["code"]).size for v in doc["verdicts"]) + 2 * pause
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert w.getnframes() == want
    other = run_qcat("phrases", "say", "--random", "--seed", "8", "--count", "3", "--clips",
                     str(clips), "--json", "--wav", tmp_path / "c.wav")
    assert json.loads(other.out)["verdicts"] != doc["verdicts"]
    usage = run_qcat("phrases", "say", "5", "--count", "2", "--wav", tmp_path / "d.wav")
    assert usage.code == 2 and "--count and --seed go with --random" in usage.err


# ----------------------------------------------------------------------------- fallback

def _workspace(root: Path, voice: str) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "qcat.toml"
    cfg.write_text(f'[phrases]\nvoice = "{voice}"\n')
    return Workspace.open(Home(root), config_mod.load(cfg))


def test_missing_engine_falls_back_to_espeak_ng_with_one_logged_sentence(
        tmp_path: Path, monkeypatch, caplog) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    only_espeak = tmp_path / "bin"
    only_espeak.mkdir()
    (only_espeak / "espeak-ng").symlink_to(espeak)
    monkeypatch.setenv("PATH", str(only_espeak))  # flite is missing here
    ws = _workspace(tmp_path / "home", DEFAULT_VOICE)
    with caplog.at_level(logging.WARNING, logger="qcat.speech"):
        status = ensure_clip_bank(ws)
    assert status.built and status.bank is not None
    assert status.fallback == (f"the voice {DEFAULT_VOICE} cannot speak here (flite is not "
                               "installed (sudo apt-get install flite)); the verdicts use "
                               "espeak-ng:en-us instead")
    assert [r.getMessage() for r in caplog.records] == [status.fallback]
    assert status.bank.provenance["voice"] == "espeak-ng:en-us"
    assert status.bank.provenance["synthesizer"] == "espeak-ng"
    again = ensure_clip_bank(ws)  # the fallback bank is current while festival is missing
    assert not again.built and again.reason == "the clip bank is current" and again.fallback
    # the old plain config value 'en-us' counts that bank as its own
    assert is_current(again.bank, _workspace(tmp_path / "old", "en-us").speech)
    assert not is_current(again.bank, _workspace(tmp_path / "other", "festival:kal_diphone")
                          .speech)


def test_fallback_reasons_name_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    status = ensure_clip_bank(_workspace(tmp_path / "home", "festival:kal_diphone"))
    assert status.bank is None and not status.built
    assert status.reason == ("there is no clip bank yet and espeak-ng, which renders it, is not "
                             "installed")
    assert status.fallback.startswith("the voice festival:kal_diphone cannot speak here "
                                      "(festival is not installed")


# ----------------------------------------------------------------------------- the choice

def _deb_packages() -> set[str]:
    text = (REPO / "Makefile").read_text()
    block = re.search(r"^DEB_PACKAGES := (.*?)(?<!\\)\n", text, re.S | re.M)
    assert block, "the Makefile has no DEB_PACKAGES"
    return set(block.group(1).replace("\\\n", " ").split())


def test_the_default_is_the_best_measured_voice_a_fresh_machine_gets() -> None:
    """docs/voices.md holds the full measurement (`qcat phrases voices`, minutes per voice, so
    not run here): the default must be its best voice among those DEB_PACKAGES install, clearly
    ahead of espeak-ng's en-us, and its packages must be in DEB_PACKAGES."""
    rows = {}
    for line in (REPO / "docs" / "voices.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[2].endswith("%") and " " not in cells[0]:
            rows[cells[0]] = (float(cells[2][:-2]), float(cells[3][:-2]))
    debs = _deb_packages()

    def packages(spec: str) -> set[str]:
        voice = voices.parse_voice(spec)
        engine = voices.engine_of(voice)
        return {engine.package, engine.voice_packages.get(voice.name, engine.package)}

    assert packages(DEFAULT_VOICE) <= debs and "espeak-ng" in debs  # the fallback
    assert len(rows) >= 3 and "espeak-ng:en-us" in rows
    installable = {v: r for v, r in rows.items() if packages(v) <= debs}
    best = max(installable, key=lambda v: sum(installable[v]))
    assert best == DEFAULT_VOICE, f"docs/voices.md ranks {best} first"
    frag, verdict = rows[DEFAULT_VOICE]
    base_frag, base_verdict = rows["espeak-ng:en-us"]
    assert frag - base_frag >= 20 and verdict - base_verdict >= 20
