"""The units in the room: how qcat reaches them (see the modules)."""
