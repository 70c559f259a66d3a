"""Configuration lives in `scheduler.config` (packaged with the app); this module keeps
`from config import Config` working for code and tests run from the repository root."""

from scheduler.config import INSTANCE, ROOT, Config, TestConfig

__all__ = ["INSTANCE", "ROOT", "Config", "TestConfig"]
