"""Configuration: one TOML file, loaded and validated once into frozen dataclasses.

Every problem becomes a :class:`ConfigError` naming the file, the dotted key and what is wrong.
Secrets come from the file or from the environment (``password_env``) and are held in
:class:`Secret`, whose repr and str are masked.
"""

from archiver.config.model import (
    DEFAULT_RETRY_DELAYS_S,
    LOG_FORMATS,
    LOG_LEVELS,
    Account,
    ArchiveConfig,
    CommandHook,
    Config,
    GwsConfig,
    HookConfig,
    HookFilters,
    HooksConfig,
    LogConfig,
    PollConfig,
    PushConfig,
    PythonHook,
    ReconcileConfig,
    RetryPolicy,
    Secret,
    ServerConfig,
    TeamConfig,
    WebhookHook,
    is_loopback,
    split_listen,
    webhook_key,
)
from archiver.config.parse import load_config, parse_config

__all__ = [
    "DEFAULT_RETRY_DELAYS_S",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "Account",
    "ArchiveConfig",
    "CommandHook",
    "Config",
    "GwsConfig",
    "HookConfig",
    "HookFilters",
    "HooksConfig",
    "LogConfig",
    "PollConfig",
    "PushConfig",
    "PythonHook",
    "ReconcileConfig",
    "RetryPolicy",
    "Secret",
    "ServerConfig",
    "TeamConfig",
    "WebhookHook",
    "is_loopback",
    "load_config",
    "parse_config",
    "split_listen",
    "webhook_key",
]
