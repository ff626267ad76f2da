# A tiny settings module for the tutorial's design: no database, no auth.
# The channel layer is the same kind, and configured like the project's
# (project/settings.py), so that the consumer design is what differs:
# BENCH_REDIS_URL set -> channels_redis.core.RedisChannelLayer with the
# prefix BENCH_REDIS_PREFIX; unset -> InMemoryChannelLayer.
import os
import secrets

SECRET_KEY = os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(40)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE = []
ROOT_URLCONF = "bench.tutorial.urls"
ASGI_APPLICATION = "bench.tutorial.asgi.application"
DATABASES = {}
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 30,
                        "socket_connect_timeout": 5,
                        "max_connections": 2000,
                        "health_check_interval": 15,
                    }
                ],
                "prefix": os.environ["BENCH_REDIS_PREFIX"] + ":asgi",
                "capacity": 1000,
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
