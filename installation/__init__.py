"""qcat's appliance layer: configuration, the `qcat` CLI, exhibit orchestration, the gallery
archive, the unit supervisor, the SD-card builder and the kiosk service.

Keep this file free of imports: lower packages import the ground modules below, and that must not
drag the appliance layer (or textual, or torch) in with it.
"""

__version__ = "0.1.0"

# The ground modules: they import nothing of qcat but each other (errors is the root), so every
# package (quantum, phrases, firmware, models) may import them. One helper of each kind lives
# here; `.importlinter` holds every other package to this list.
GROUND_MODULES = (
    "installation.errors",  # the exception tree
    "installation.files",  # atomic writes
    "installation.reading",  # reading a file someone handed us, with one clear sentence
    "installation.progress",  # the progress callback type (and the stderr bar)
    "installation.database",  # opening an SQLite database read-write or read-only
    "installation.words",  # numbers in sentences ("1 exhibit", "2 exhibits")
    "installation.faults",  # named crash points (QCAT_CRASH_AT) inside the pool's transactions
)
