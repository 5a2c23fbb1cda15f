"""Where qcat keeps its state: everything lives under one home folder.

The home is `--home DIR`, else `$QCAT_HOME`, else the platform's user data folder. Tests and
scripts isolate themselves by pointing it at a temporary folder; nothing is ever written outside.
Lower packages never look paths up themselves: the appliance hands them the paths from here.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from installation.errors import InputError

HOME_ENV = "QCAT_HOME"
# errno values that mean "this medium or folder cannot be written", not "something broke".
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
CONFIG_ENV = "QCAT_CONFIG"


def default_home() -> Path:
    """The platform's user data folder for qcat (XDG on Linux, the usual places elsewhere)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "qcat"


@dataclass(frozen=True)
class Home:
    """The layout of a qcat home folder. Creating the object touches nothing on disk."""

    root: Path

    @classmethod
    def resolve(cls, cli_value: str | os.PathLike[str] | None = None) -> Home:
        value = cli_value or os.environ.get(HOME_ENV)
        return cls(Path(value).expanduser().absolute() if value else default_home())

    def check(self) -> Home:
        """The home must be a folder (or not exist yet): a file named by mistake is one sentence."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"the qcat home {self.root} is a file, not a folder",
                             hint=f"point --home (or {HOME_ENV}) at a folder; qcat creates it "
                                  "when it does not exist")
        return self

    def prepare(self) -> bool:
        """Create the home's folders where missing; False when the home cannot be written (an
        archive on read-only media), which only the commands that write to it mind."""
        try:
            self.ensure()
        except OSError as exc:
            if exc.errno not in READ_ONLY_ERRNOS:
                raise
            return False
        # access(2) answers EROFS for a read-only mount even to root
        return os.access(self.root, os.W_OK)

    def ensure(self) -> Home:
        """Create the home folder (and its fixed sub-folders) if missing (OSError on read-only
        media: the caller decides what that means)."""
        for path in (self.root, self.logs_dir, self.builds_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def config_file(self) -> Path:
        return self.root / "qcat.toml"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "qcat.log"

    @property
    def pool_db(self) -> Path:
        """The SQLite entropy pool (quantum bytes, exactly once)."""
        return self.root / "entropy.sqlite"

    @property
    def gallery_db(self) -> Path:
        """The SQLite gallery archive (one row per exhibit)."""
        return self.root / "gallery.sqlite"

    @property
    def gallery_dir(self) -> Path:
        """Image and audio files of archived exhibits."""
        return self.root / "gallery"

    @property
    def builds_dir(self) -> Path:
        """Built artifacts: weight images, clip banks, compiled engines, caches."""
        return self.root / "builds"

    @property
    def clip_cache_dir(self) -> Path:
        """Rendered verdict fragments, keyed by text, voice and parameters."""
        return self.builds_dir / "clip-cache"

    def config_path(self, cli_value: str | os.PathLike[str] | None = None) -> Path:
        """The config file: `--config`, else `$QCAT_CONFIG`, else `<home>/qcat.toml`."""
        value = cli_value or os.environ.get(CONFIG_ENV)
        return Path(value).expanduser().absolute() if value else self.config_file
