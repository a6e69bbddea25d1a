"""Plugins come through entry points alone: a test-only package adds an engine, a lyrics
provider and a zone, and cassetted renders a song with them and plays it in a room.

The package is written to a temporary folder as an installed distribution would be (a
`*.dist-info` with METADATA and entry_points.txt beside the module) and put on sys.path;
nothing in cassetted names it.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cassetted import config
from cassetted.contract import errors
from cassetted.contract.schemas import SongSpec
from cassetted.jobs.pipeline import Pipeline
from cassetted.library import lrc
from cassetted.lyrics.chain import build_chain
from cassetted.lyrics.plugin import LYRICS_PLUGINS
from cassetted.music.registry import ENGINE_PLUGINS, EngineRegistry, capabilities_of
from cassetted.playback.base import Track, ZoneStatus
from cassetted.playback.plugin import ZONE_PLUGINS
from cassetted.playback.registry import UnavailableZone, ZoneContext, create_zone
from cassetted.playback.settings import SnapcastPlaybackSettings
from cassetted.plugins import PluginError

REGISTRIES = (ENGINE_PLUGINS, LYRICS_PLUGINS, ZONE_PLUGINS)

# The test-only plugin package: a real engine (a tone per seed), a lyrics provider and a
# zone that keeps what it was asked to play in memory (no speaker, but a real Zone).
PLUGIN_MODULE = '''
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cassetted.contract.schemas import SongSpec
from cassetted.lyrics.base import LyricsResult
from cassetted.lyrics.plugin import LyricsCapabilities, LyricsPlugin
from cassetted.music.base import Audio
from cassetted.music.plugin import EngineCapabilities, EnginePlugin
from cassetted.playback.base import ZoneStatus
from cassetted.playback.plugin import ZoneCapabilities, ZonePlugin

PLAYED: list[tuple[str, str, str]] = []   # (room, speaker, song id) the zone was asked to play


class ToneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pitch_hz: float = Field(440.0, gt=20, lt=20000)


class ToneEngine:
    name = "tone"

    def __init__(self, settings: ToneSettings, rate: int) -> None:
        self.settings, self.rate = settings, rate

    def generate(self, spec: SongSpec, progress):
        frames = round(spec.duration_s * self.rate)
        t = np.arange(frames, dtype=np.float32) / self.rate
        x = (0.2 * np.sin(2 * np.pi * self.settings.pitch_hz * t)).astype(np.float32)
        progress(1.0, None)
        return Audio(np.stack([x, x], axis=1), self.rate)


def create_engine(settings, credentials=None):
    return ToneEngine(settings.plugin_settings(ToneSettings), settings.generation.sample_rate)


class VerseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chorus: str = "oh oh oh"


class VerseLyrics:
    def __init__(self, name, settings):
        self.name, self.settings = name, settings

    def write(self, spec):
        return LyricsResult(title="Plugged In", lyrics=f"[Verse]\\nfrom a plugin\\n[Chorus]\\n"
                            f"{self.settings.chorus}", style="tone", provider=self.name)


def create_lyrics(name, section, api_key):
    return VerseLyrics(name, section)


class RecorderRoom(BaseModel):
    model_config = ConfigDict(extra="forbid")
    speaker: str


class RecorderZone:
    def __init__(self, room_id, speaker):
        self.room_id, self.speaker = room_id, speaker
        self.status = ZoneStatus("idle")
        self._on_state = None

    async def start(self, on_state):
        self._on_state = on_state
        on_state(self.status)

    async def stop(self):
        self._on_state = None

    async def play_now(self, track):
        PLAYED.append((self.room_id, self.speaker, track.song_id))
        self.status = ZoneStatus("playing", song_id=track.song_id)
        self._on_state(self.status)

    async def set_queue(self, tracks, start_index=0, play=True):
        if play and tracks:
            await self.play_now(tracks[start_index])

    async def control(self, action, *, volume=None, position_s=None):
        pass


def create_zone(room_id, room, ctx):
    own = room.plugin_settings(RecorderRoom)
    return RecorderZone(room_id, own.speaker)


ENGINE = EnginePlugin(name="tone", factory=f"{__name__}:create_engine",
                      capabilities=EngineCapabilities(), settings_section="tone",
                      settings_model=ToneSettings)
LYRICS = LyricsPlugin(name="verse", factory=f"{__name__}:create_lyrics",
                      capabilities=LyricsCapabilities(offline=True), settings_section="verse",
                      settings_model=VerseSettings)
ZONE = ZonePlugin(name="recorder", factory=f"{__name__}:create_zone",
                  capabilities=ZoneCapabilities(volume=True), room_key="recorder",
                  room_model=RecorderRoom)
'''


def install(root: Path, dist: str, module: str, source: str, entry_points: str) -> None:
    """Lay out an installed distribution: the module plus its dist-info."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for test distributions; the registries forget them afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    for registry in REGISTRIES:
        registry.reload()
    yield root
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.startswith("cassetted_test_")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    for registry in REGISTRIES:
        registry.reload()


@pytest.fixture
def tone_package(plugin_path: Path) -> Path:
    install(plugin_path, "cassetted_test_tone", "cassetted_test_tone", PLUGIN_MODULE, """
        [cassetted.engines]
        tone = cassetted_test_tone:ENGINE

        [cassetted.lyrics]
        verse = cassetted_test_tone:LYRICS

        [cassetted.zones]
        recorder = cassetted_test_tone:ZONE
    """)
    return plugin_path


def test_the_built_ins_are_registered_through_entry_points() -> None:
    assert ENGINE_PLUGINS.names()[:3] == ("builtin", "acestep", "acestep_api")
    assert set(LYRICS_PLUGINS.names()) >= {"builtin", "ollama", "openai"}
    assert set(ZONE_PLUGINS.names()) >= {"mpd", "snapcast", "local", "homeassistant"}
    assert ENGINE_PLUGINS.get("acestep_api").capabilities.writes_lyrics  # type: ignore[union-attr]
    assert ZONE_PLUGINS.get("mpd").capabilities.playlists  # type: ignore[union-attr]


def test_the_templates_import_and_describe_a_plugin_of_their_kind() -> None:
    from cassetted.lyrics import _template as lyrics_template
    from cassetted.music import _template as engine_template
    from cassetted.playback.zones import _template as zone_template

    assert engine_template.PLUGIN.settings_model is engine_template.TemplateSettings
    assert lyrics_template.PLUGIN.capabilities.offline
    assert zone_template.PLUGIN.room_key == "template"


def test_a_third_party_engine_lyrics_provider_and_zone_render_and_play_a_song(
        tone_package: Path, tmp_path: Path) -> None:
    assert "tone" in ENGINE_PLUGINS.names() and "recorder" in ZONE_PLUGINS.names()
    assert "verse" in LYRICS_PLUGINS.names()
    file = tmp_path / "cassetted.toml"
    file.write_text(textwrap.dedent("""
        [generation]
        engine = "tone"
        sample_rate = 22050

        [tone]
        pitch_hz = 330.0

        [lyrics]
        chain = ["verse"]

        [lyrics.verse]
        chorus = "plug it in"

        [rooms.den]
        name = "Den"
        output = "recorder"

        [rooms.den.recorder]
        speaker = "shelf"
    """))
    settings = config.load(file, state_dir=tmp_path / "state")
    package = importlib.import_module("cassetted_test_tone")
    assert settings.plugin_settings(package.ToneSettings).pitch_hz == 330.0  # typed access
    engine = EngineRegistry(settings).get()
    assert engine.name == "tone" and capabilities_of(engine).tasks == frozenset({"text2music"})
    chain = build_chain(settings.lyrics)
    assert chain.names[0] == "verse"

    spec = SongSpec(genre="pop", mood="uplifting", bpm=100, key="C major", duration_s=10.0, seed=1)
    produced = Pipeline(tmp_path / "library", "wav").run(
        "song1", spec, chain.write, engine, lambda state, fraction: None, threading.Event())
    assert produced.engine == "tone" and produced.lyrics_provider == "verse"
    assert "plug it in" in produced.spec.lyrics
    audio = tmp_path / "library" / ".incoming" / produced.relative_file
    assert audio.stat().st_size > 10 * 22050 * 2  # ten seconds of 16-bit audio at least
    # No exact timings declared: the LRC beside it is the estimate, and it was written.
    assert lrc.sidecar_path(audio).exists()

    zone = create_zone("den", settings.rooms["den"], ZoneContext(SnapcastPlaybackSettings(), None))
    assert zone is not None and not isinstance(zone, UnavailableZone)
    states: list[ZoneStatus] = []

    async def play() -> None:
        await zone.start(states.append)
        await zone.play_now(Track("song1", audio, produced.spec.title, produced.spec.duration_s))
        await zone.stop()

    asyncio.run(play())
    assert package.PLAYED == [("den", "shelf", "song1")]
    assert states[-1].state == "playing" and states[-1].song_id == "song1"


def test_a_third_party_section_keeps_unknown_keys_an_error(tone_package: Path, tmp_path: Path) -> None:
    file = tmp_path / "cassetted.toml"
    file.write_text('[tone]\npitch = 330.0\n\n[rooms.den]\nname = "Den"\noutput = "recorder"\n'
                    '[rooms.den.recorder]\nspeakr = "shelf"\n')
    with pytest.raises(config.ConfigError) as caught:
        config.load(file)
    message = str(caught.value)
    assert "\n" not in message
    assert "tone.pitch: unknown key (did you mean 'pitch_hz'?)" in message
    assert "rooms.den.recorder.speakr: unknown key (did you mean 'speaker'?)" in message


def test_an_unknown_output_names_the_registered_zones(tmp_path: Path) -> None:
    file = tmp_path / "cassetted.toml"
    file.write_text('[rooms.den]\nname = "Den"\noutput = "sonos"\n')
    with pytest.raises(config.ConfigError) as caught:
        config.load(file)
    assert ("rooms.den.output: Value error, unknown output 'sonos' "
            "(outputs: mpd, snapcast, local, homeassistant, none)") in str(caught.value)


def test_an_unknown_engine_names_the_registered_ones(tone_package: Path) -> None:
    from cassetted.music.registry import engine_plugin

    with pytest.raises(errors.UnknownEngine) as caught:
        engine_plugin("musicgen")
    assert caught.value.message == "unknown engine 'musicgen' (engines: builtin, acestep, acestep_api, tone)"
    assert caught.value.field == "engine" and caught.value.code == "unknown_engine"


def test_a_duplicate_name_is_refused(plugin_path: Path) -> None:
    install(plugin_path, "cassetted_test_dup", "cassetted_test_dup",
            "from cassetted.music.plugin import EnginePlugin\n"
            "PLUGIN = EnginePlugin(name='builtin', factory='cassetted_test_dup:nothing')\n",
            "[cassetted.engines]\nbuiltin = cassetted_test_dup:PLUGIN\n")
    with pytest.raises(PluginError, match=r"two engine plugins are named 'builtin': "
                       r"cassetted\.music\.builtin\.plugin:PLUGIN and cassetted_test_dup:PLUGIN"):
        ENGINE_PLUGINS.all()


def test_a_broken_entry_point_is_one_clear_line(plugin_path: Path, tmp_path: Path) -> None:
    install(plugin_path, "cassetted_test_broken", "cassetted_test_broken",
            "import cassetted_no_such_module\n",
            "[cassetted.zones]\nsonos = cassetted_test_broken:PLUGIN\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(None, state_dir=tmp_path)
    assert str(caught.value) == (
        "cannot load the plugins: cassetted.zones entry point 'sonos' (cassetted_test_broken:PLUGIN) "
        "cannot be loaded: ModuleNotFoundError: No module named 'cassetted_no_such_module'")


def test_an_entry_point_that_is_no_descriptor_is_refused(plugin_path: Path) -> None:
    install(plugin_path, "cassetted_test_wrong", "cassetted_test_wrong", "PLUGIN = 42\n",
            "[cassetted.lyrics]\nodd = cassetted_test_wrong:PLUGIN\n")
    with pytest.raises(PluginError, match=r"'odd' \(cassetted_test_wrong:PLUGIN\) is a int, "
                                          r"not a LyricsPlugin"):
        LYRICS_PLUGINS.all()


def test_a_missing_built_in_says_to_install_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from cassetted.plugins import Registry

    registry = Registry("cassetted.nothing_here", "engine", object, ("builtin",))  # type: ignore[type-var]
    with pytest.raises(PluginError, match=r"built-in engine plugin\(s\) builtin not registered "
                                          r"in cassetted.nothing_here: .*pip install -e \."):
        registry.all()


def test_importing_a_registry_does_not_load_heavy_modules() -> None:
    code = ("import sys, cassetted.music.registry, cassetted.playback.registry; "
            "from cassetted.music.registry import ENGINE_PLUGINS; "
            "from cassetted.playback.plugin import ZONE_PLUGINS; "
            "ENGINE_PLUGINS.all(); ZONE_PLUGINS.all(); "
            "print(sorted(m for m in ('scipy', 'torch', 'mpd', 'sounddevice') if m in sys.modules))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert importlib.util.find_spec("cassetted.music.registry") is not None
