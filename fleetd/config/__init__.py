"""fleetd's one typed, frozen configuration: the public names of the config package.

    settings.py        setting(), ConfigSection, parsing and checking one key, ConfigError
    sections.py        the core sections ([daemon], [redis], [worker], ...)
    api_sections.py    the admin API's sections ([http], [auth], [events])
    datakeys.py        the "key_id:base64" form of [encryption] keys (sans-IO)
    durations.py       "1h30m" <-> seconds (sans-IO)
    plugin_sections.py the sections plugins declare (hook fleetd_config_sections)
    model.py           Config: core sections + plugin sections; the state directory
    loader.py          load_config(): file, TOML, FLEETD_<SECTION>_<KEY>, every error at once
    dump.py            config_to_dict(), dump_toml() for `fleetd config show`

Durations are float seconds in Python and strings such as "30s" in TOML. The annotated
defaults live in the repository's fleetd.toml, which a test pins to these.
"""

from fleetd.config.alert_rules import AlertRuleConfig
from fleetd.config.api_sections import (
    JWT_ALGORITHMS,
    MIN_SECRET_LENGTH,
    AuthConfig,
    EventsConfig,
    HttpConfig,
)
from fleetd.config.dump import config_to_dict, dump_toml, redacted
from fleetd.config.loader import (
    ENV_CONFIG_PATH,
    ENV_PREFIX,
    ENV_TOKEN,
    SEARCH_PATHS,
    load_config,
)
from fleetd.config.model import APP_DIR, Config, resolve_state_dir
from fleetd.config.sections import (
    CORE_SECTIONS,
    AlertsConfig,
    ArtifactsConfig,
    DaemonConfig,
    EncryptionConfig,
    MaintenanceConfig,
    PluginsConfig,
    RedisConfig,
    SchedulerConfig,
    WorkerConfig,
)
from fleetd.config.settings import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    ConfigError,
    ConfigSection,
    setting,
)
from fleetd.config.spool_section import SpoolConfig

__all__ = [
    "APP_DIR",
    "CORE_SECTIONS",
    "DAY",
    "ENV_CONFIG_PATH",
    "ENV_PREFIX",
    "ENV_TOKEN",
    "HOUR",
    "JWT_ALGORITHMS",
    "MINUTE",
    "MIN_SECRET_LENGTH",
    "SEARCH_PATHS",
    "SECOND",
    "AlertRuleConfig",
    "AlertsConfig",
    "ArtifactsConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "ConfigSection",
    "DaemonConfig",
    "EncryptionConfig",
    "EventsConfig",
    "HttpConfig",
    "MaintenanceConfig",
    "PluginsConfig",
    "RedisConfig",
    "SchedulerConfig",
    "SpoolConfig",
    "WorkerConfig",
    "config_to_dict",
    "dump_toml",
    "load_config",
    "redacted",
    "resolve_state_dir",
    "setting",
]
