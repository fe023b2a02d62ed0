//! One place for configuration: command-line flags (and, later, volery.toml and zoo.cfg) are read into
//! one [`Config`], validated once, and handed out as each module's own options.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// ZooKeeper's client port.
pub const DEFAULT_CLIENT_PORT: u16 = 2181;
/// ZooKeeper's default `tickTime`.
pub const DEFAULT_TICK_TIME_MS: u32 = 2000;
/// `jute.maxbuffer`: the largest frame accepted (ZooKeeper's default, one byte short of 1 MiB).
pub const JUTE_MAXBUFFER: usize = protocol::JUTE_MAXBUFFER;
/// ZooKeeper's default `maxClientCnxns` per client address.
pub const DEFAULT_MAX_CLIENT_CNXNS: u32 = 60;
/// Requests one connection may have in flight before the server stops reading from it.
pub const DEFAULT_MAX_OUTSTANDING: usize = 1000;
/// ZooKeeper's `znode.container.checkIntervalMs`.
pub const DEFAULT_CONTAINER_CHECK_INTERVAL_MS: u64 = 60_000;
/// Commands executed between two checkpoints of the tree (ZooKeeper's `snapCount`).
pub const DEFAULT_SNAP_COUNT: u64 = 100_000;
/// Where `volery start` keeps its data when no directory is given.
pub const DEFAULT_DATA_DIR: &str = "volery-data";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("tickTime must be positive")]
    ZeroTick,
    #[error("minSessionTimeout ({min} ms) must not exceed maxSessionTimeout ({max} ms)")]
    SessionBounds { min: u32, max: u32 },
    #[error("max buffer must be at least 1024 bytes, got {0}")]
    MaxBufferTooSmall(usize),
    #[error("invalid property {key}={value}: {why}")]
    BadProperty {
        key: String,
        value: String,
        why: String,
    },
}

/// A validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub client_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub tick_time_ms: u32,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    pub max_buffer: usize,
    pub max_client_cnxns: u32,
    pub max_outstanding: usize,
    pub extended_types: bool,
    pub super_digest: Option<String>,
    pub container_check_interval_ms: u64,
    pub snap_count: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            client_addr: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), DEFAULT_CLIENT_PORT),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            tick_time_ms: DEFAULT_TICK_TIME_MS,
            min_session_timeout_ms: 2 * DEFAULT_TICK_TIME_MS,
            max_session_timeout_ms: 20 * DEFAULT_TICK_TIME_MS,
            max_buffer: JUTE_MAXBUFFER,
            max_client_cnxns: DEFAULT_MAX_CLIENT_CNXNS,
            max_outstanding: DEFAULT_MAX_OUTSTANDING,
            extended_types: false,
            super_digest: None,
            container_check_interval_ms: DEFAULT_CONTAINER_CHECK_INTERVAL_MS,
            snap_count: DEFAULT_SNAP_COUNT,
        }
    }
}

impl Config {
    /// Applies a ZooKeeper system property (`-Dzookeeper.<key>=<value>`; the `zookeeper.` prefix is
    /// optional). Unknown keys are reported to the caller, which warns about them.
    pub fn set_property(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let bad = |why: &str| ConfigError::BadProperty {
            key: key.to_string(),
            value: value.to_string(),
            why: why.to_string(),
        };
        let name = key.strip_prefix("zookeeper.").unwrap_or(key);
        match name {
            "extendedTypesEnabled" => {
                self.extended_types = value.parse().map_err(|_| bad("expected true or false"))?
            }
            "DigestAuthenticationProvider.superDigest" => {
                if !value.contains(':') {
                    return Err(bad("expected super:<base64 digest>"));
                }
                self.super_digest = Some(value.to_string());
            }
            "jute.maxbuffer" | "maxbuffer" => {
                self.max_buffer = value.parse().map_err(|_| bad("expected a byte count"))?
            }
            "znode.container.checkIntervalMs" | "containerCheckIntervalMs" => {
                self.container_check_interval_ms =
                    value.parse().map_err(|_| bad("expected milliseconds"))?
            }
            "snapCount" => self.snap_count = value.parse().map_err(|_| bad("expected a count"))?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the relations between fields; every server path assumes a validated config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tick_time_ms == 0 {
            return Err(ConfigError::ZeroTick);
        }
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            return Err(ConfigError::SessionBounds {
                min: self.min_session_timeout_ms,
                max: self.max_session_timeout_ms,
            });
        }
        if self.max_buffer < 1024 {
            return Err(ConfigError::MaxBufferTooSmall(self.max_buffer));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_zookeepers() {
        let c = Config::default();
        assert_eq!(c.client_addr.port(), 2181);
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (4000, 40000)
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn properties_with_and_without_prefix() {
        let mut c = Config::default();
        assert_eq!(
            c.set_property("zookeeper.extendedTypesEnabled", "true"),
            Ok(true)
        );
        assert!(c.extended_types);
        assert_eq!(
            c.set_property("DigestAuthenticationProvider.superDigest", "super:abc="),
            Ok(true)
        );
        assert_eq!(c.super_digest.as_deref(), Some("super:abc="));
        assert_eq!(c.set_property("zookeeper.unknownThing", "1"), Ok(false));
        assert!(matches!(
            c.set_property("extendedTypesEnabled", "yes"),
            Err(ConfigError::BadProperty { .. })
        ));
    }

    #[test]
    fn session_bounds_are_checked() {
        let c = Config {
            min_session_timeout_ms: 5000,
            max_session_timeout_ms: 100,
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::SessionBounds {
                min: 5000,
                max: 100
            })
        );
    }
}
