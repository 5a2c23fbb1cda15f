"""The Textual app: operator dashboard, gallery view and kiosk mode. Only the CLI imports it."""
