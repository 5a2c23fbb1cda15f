"""qcat's appliance layer: configuration, the `qcat` CLI, exhibit orchestration, the gallery
archive, the unit supervisor, the SD-card builder and the kiosk service.

Keep this file free of imports: lower packages import `installation.errors`, and that must not
drag the appliance layer (or textual, or torch) in with it.
"""

__version__ = "0.1.0"
