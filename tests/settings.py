"""pytest's settings: config.settings with debug on when it is imported.

DJANGO_DEBUG defaults to false (production), and with debug off the settings require a real
SECRET_KEY and redirect every request to HTTPS. Tests run as a development machine does, so
debug is on at import unless DJANGO_DEBUG is set (pytest-django still serves requests with
settings.DEBUG False). Set in the environment, so worker subprocesses inherit it as well.
tests/test_settings_defaults.py checks the production default itself in a fresh interpreter.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")

from config.settings import *  # noqa: E402, F403

# Every persona fixture and browser sign-in hashes a password: PBKDF2's 1,000,000 rounds cost
# seconds per test on a loaded 2-core machine. Tests prove access rules, not hash strength.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests roll their transactions back: a price row cached by one test could outlive it.
# tests/test_engine_core.py turns the cache on where it tests it.
PRICE_CACHE_SECONDS = 0
