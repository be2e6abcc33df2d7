"""Beam runner layers (TOML), package data: `imgpipe compile --config <preset> --config <layer>`."""
