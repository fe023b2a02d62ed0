//! One place for configuration: a ZooKeeper `zoo.cfg` (with the `myid` file in its dataDir) or a
//! native `volery.toml`, then command-line flags and `-D` properties, are read into one [`Config`],
//! validated once, and handed out as each module's own options.
//!
//! zoo.cfg is read as ZooKeeper's `QuorumPeerConfig` reads it: Java properties, values trimmed, a
//! key it does not know becomes the system property `zookeeper.<key>` (so `extendedTypesEnabled=true`
//! works); a key neither knows is warned about, never fatal; a bad value is an error naming the key
//! and its line.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::server::four_letter::Whitelist;

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
/// ZooKeeper's Prometheus provider's default `metricsProvider.httpPort`.
pub const DEFAULT_METRICS_PORT: u16 = 7000;
/// ZooKeeper's default `autopurge.snapRetainCount` (also its minimum).
pub const DEFAULT_SNAP_RETAIN_COUNT: u32 = 3;
/// ZooKeeper's Prometheus provider class; the only `metricsProvider.className` Volery serves.
pub const PROMETHEUS_PROVIDER: &str =
    "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";

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
    /// A zoo.cfg line whose value ZooKeeper would reject.
    #[error("{file}:{line}: invalid value for {key}: {why}")]
    BadLine {
        file: String,
        line: usize,
        key: String,
        why: String,
    },
    /// A zoo.cfg without a key ZooKeeper requires.
    #[error("{file}: {key} is not set")]
    Missing { file: String, key: String },
    #[error("cannot read {file}: {why}")]
    Read { file: String, why: String },
    #[error("{file}: {why}")]
    Toml { file: String, why: String },
    #[error("partitions={partitions} must divide the {servers} server(s) into equal partitions of at least one replica")]
    Partitions { partitions: u32, servers: usize },
    #[error("global_acceptors: {0}")]
    GlobalAcceptors(String),
    #[error("{file}: invalid myid: {why}")]
    MyId { file: String, why: String },
}

/// One `server.N` line: `host:quorumPort:electionPort[:role][;[clientAddress:]clientPort]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLine {
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    /// `participant` (the default) or `observer`.
    pub role: String,
    pub client: Option<SocketAddr>,
}

/// A validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub client_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// ZooKeeper's dataLogDir; Volery keeps everything in `data_dir` and reports this in `conf`.
    pub data_log_dir: Option<PathBuf>,
    pub tick_time_ms: u32,
    /// initLimit and syncLimit, in ticks (kept for ensembles; a standalone server ignores them).
    pub init_limit: u32,
    pub sync_limit: u32,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    pub max_buffer: usize,
    pub max_client_cnxns: u32,
    pub max_outstanding: usize,
    pub extended_types: bool,
    pub super_digest: Option<String>,
    pub container_check_interval_ms: u64,
    pub snap_count: u64,
    /// `4lw.commands.whitelist`.
    pub four_letter_whitelist: Whitelist,
    /// `metricsProvider.httpHost` and `metricsProvider.httpPort`; port 0 turns the endpoint off.
    pub metrics_addr: SocketAddr,
    /// `autopurge.snapRetainCount` and `autopurge.purgeInterval` (hours, 0 = never). Volery keeps
    /// one checkpoint and trims its log itself, so these are accepted and reported only.
    pub snap_retain_count: u32,
    pub purge_interval_hours: u32,
    /// This server's id (the `myid` file); 0 for a standalone server without one.
    pub server_id: u64,
    /// The ensemble's `server.N` lines.
    pub servers: BTreeMap<u64, ServerLine>,
    /// Partitions of the znode tree (`partitions=k`): the servers, in id order, form k equal
    /// partitions of r = servers / k replicas each.
    pub partitions: u32,
    /// The acceptors of the global group (`globalAcceptors=1,4,2`); `None` picks 2f+1 of them
    /// spread over the partitions ([`crate::node::Layout::default_global_acceptors`]).
    pub global_acceptors: Option<Vec<u64>>,
    /// Worker threads of the server's runtime (`workerThreads`); `None` sizes it to the CPU
    /// budget ([`crate::cpu::worker_threads`]).
    pub worker_threads: Option<usize>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            client_addr: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), DEFAULT_CLIENT_PORT),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            data_log_dir: None,
            tick_time_ms: DEFAULT_TICK_TIME_MS,
            init_limit: 10,
            sync_limit: 5,
            min_session_timeout_ms: 2 * DEFAULT_TICK_TIME_MS,
            max_session_timeout_ms: 20 * DEFAULT_TICK_TIME_MS,
            max_buffer: JUTE_MAXBUFFER,
            max_client_cnxns: DEFAULT_MAX_CLIENT_CNXNS,
            max_outstanding: DEFAULT_MAX_OUTSTANDING,
            extended_types: false,
            super_digest: None,
            container_check_interval_ms: DEFAULT_CONTAINER_CHECK_INTERVAL_MS,
            snap_count: DEFAULT_SNAP_COUNT,
            four_letter_whitelist: Whitelist::default(),
            metrics_addr: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), DEFAULT_METRICS_PORT),
            snap_retain_count: DEFAULT_SNAP_RETAIN_COUNT,
            purge_interval_hours: 0,
            server_id: 0,
            servers: BTreeMap::new(),
            partitions: 1,
            global_acceptors: None,
            worker_threads: None,
        }
    }
}

/// A host name or address as ZooKeeper accepts it (resolved once, first address).
fn parse_host(value: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = value.parse() {
        return Ok(ip);
    }
    (value, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip())
        .ok_or_else(|| format!("cannot resolve host {value:?}"))
}

fn parse_num<T: std::str::FromStr>(value: &str, what: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("expected {what}, got {value:?}"))
}

/// `QuorumPeer.QuorumServer`'s address syntax.
fn parse_server_line(value: &str) -> Result<ServerLine, String> {
    let (quorum, client) = match value.split_once(';') {
        Some((q, c)) => (q.trim(), Some(c.trim())),
        None => (value.trim(), None),
    };
    let parts: Vec<&str> = quorum.split(':').collect();
    if !(3..=4).contains(&parts.len()) {
        return Err(format!(
            "expected host:quorumPort:electionPort[:participant|observer], got {quorum:?}"
        ));
    }
    let role = parts
        .get(3)
        .map_or("participant", |r| r.trim())
        .to_lowercase();
    if role != "participant" && role != "observer" {
        return Err(format!("unknown server role {role:?}"));
    }
    let client = match client {
        None | Some("") => None,
        Some(c) => {
            let (host, port) = match c.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => ("0.0.0.0", c),
            };
            let port: u16 = parse_num(port.trim(), "a client port")?;
            Some(SocketAddr::new(parse_host(host.trim())?, port))
        }
    };
    Ok(ServerLine {
        host: parts[0].trim().to_string(),
        quorum_port: parse_num(parts[1].trim(), "a quorum port")?,
        election_port: parse_num(parts[2].trim(), "an election port")?,
        role,
        client,
    })
}

/// Splits a Java properties line into key and value (`=`, `:` or blanks separate them).
fn split_property(line: &str) -> (&str, &str) {
    match line.find(['=', ':']) {
        Some(i) => (line[..i].trim(), line[i + 1..].trim()),
        None => match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line, ""),
        },
    }
}

/// The native configuration file: every setting, all optional (defaults as [`Config::default`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlConfig {
    pub client_port: Option<u16>,
    pub client_address: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub data_log_dir: Option<PathBuf>,
    pub tick_time_ms: Option<u32>,
    pub init_limit: Option<u32>,
    pub sync_limit: Option<u32>,
    pub min_session_timeout_ms: Option<u32>,
    pub max_session_timeout_ms: Option<u32>,
    pub max_client_cnxns: Option<u32>,
    pub max_buffer: Option<usize>,
    pub max_outstanding: Option<usize>,
    pub snap_count: Option<u64>,
    pub container_check_interval_ms: Option<u64>,
    pub extended_types: Option<bool>,
    pub super_digest: Option<String>,
    pub four_letter_whitelist: Option<Vec<String>>,
    pub server_id: Option<u64>,
    /// Partitions of the znode tree (`partitions` in zoo.cfg).
    pub partitions: Option<u32>,
    /// The global group's acceptors (`globalAcceptors` in zoo.cfg).
    pub global_acceptors: Option<Vec<u64>>,
    /// Worker threads of the runtime (`workerThreads` in zoo.cfg); default: the CPU budget.
    pub worker_threads: Option<usize>,
    pub autopurge_snap_retain_count: Option<u32>,
    pub autopurge_purge_interval_hours: Option<u32>,
    pub metrics: Option<TomlMetrics>,
    /// The cluster's servers (`server.N` lines of zoo.cfg); this one is `server_id`.
    pub servers: Option<Vec<TomlServer>>,
    /// ZooKeeper system properties, as `-D` takes them.
    pub properties: Option<BTreeMap<String, String>>,
}

/// One `[[servers]]` entry of volery.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlServer {
    pub id: u64,
    pub host: String,
    /// The port servers talk to each other on (ZooKeeper's quorum port).
    pub peer_port: u16,
    /// The server's client port (for clients and tools; each server's own `client_port` still
    /// decides where it listens).
    pub client_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlMetrics {
    pub host: Option<String>,
    pub port: Option<u16>,
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
            "4lw.commands.whitelist" => self.four_letter_whitelist = Whitelist::parse(value),
            "metricsProvider.httpPort" => {
                let port = value.parse().map_err(|_| bad("expected a port"))?;
                self.metrics_addr.set_port(port);
            }
            "metricsProvider.httpHost" => {
                let ip = parse_host(value).map_err(|e| bad(&e))?;
                self.metrics_addr.set_ip(ip);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Reads a ZooKeeper configuration file and the `myid` file in its dataDir. Unknown keys come
    /// back as warnings (`(line, key)`), for the caller to log.
    pub fn from_zoo_cfg(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.display().to_string(),
            why: e.to_string(),
        })?;
        let (mut cfg, warnings) = Config::parse_zoo_cfg(&text, &path.display().to_string())?;
        let myid = cfg.data_dir.join("myid");
        match std::fs::read_to_string(&myid) {
            Ok(id) => {
                cfg.server_id = id.trim().parse().map_err(|_| ConfigError::MyId {
                    file: myid.display().to_string(),
                    why: format!("expected a server number, got {:?}", id.trim()),
                })?;
                if !cfg.servers.is_empty() && !cfg.servers.contains_key(&cfg.server_id) {
                    return Err(ConfigError::MyId {
                        file: myid.display().to_string(),
                        why: format!("no server.{} line in {}", cfg.server_id, path.display()),
                    });
                }
            }
            Err(_) if cfg.servers.is_empty() => {}
            Err(e) => {
                return Err(ConfigError::MyId {
                    file: myid.display().to_string(),
                    why: format!("{e} (required with server.N lines)"),
                })
            }
        }
        if let Some(client) = cfg.servers.get(&cfg.server_id).and_then(|s| s.client) {
            if !text
                .lines()
                .any(|l| split_property(l.trim()).0 == "clientPort")
            {
                cfg.client_addr = client;
            }
        }
        Ok((cfg, warnings))
    }

    /// Parses zoo.cfg text (`file` names it in errors). See [`Config::from_zoo_cfg`].
    pub fn parse_zoo_cfg(text: &str, file: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let mut cfg = Config::default();
        let mut warnings = Vec::new();
        let mut port: Option<u16> = None;
        let mut host: Option<IpAddr> = None;
        let mut data_dir = None;
        let (mut min_to, mut max_to) = (None, None);
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (key, value) = split_property(line);
            let bad = |why: String| ConfigError::BadLine {
                file: file.to_string(),
                line: line_no,
                key: key.to_string(),
                why,
            };
            let num = |what: &str| -> Result<u32, ConfigError> {
                parse_num::<u32>(value, what).map_err(&bad)
            };
            match key {
                "clientPort" => port = Some(parse_num(value, "a port").map_err(&bad)?),
                "clientPortAddress" => host = Some(parse_host(value).map_err(&bad)?),
                "dataDir" => data_dir = Some(PathBuf::from(value)),
                "dataLogDir" => cfg.data_log_dir = Some(PathBuf::from(value)),
                "tickTime" => cfg.tick_time_ms = num("milliseconds")?,
                "partitions" => cfg.partitions = num("a number of partitions")?,
                "globalAcceptors" => {
                    let ids: Result<Vec<u64>, String> = value
                        .split(',')
                        .map(|v| parse_num::<u64>(v.trim(), "a server id"))
                        .collect();
                    cfg.global_acceptors = Some(ids.map_err(&bad)?);
                }
                "workerThreads" => {
                    cfg.worker_threads = Some(
                        parse_num::<usize>(value, "a number of threads")
                            .map_err(&bad)?
                            .max(1),
                    )
                }
                "initLimit" => cfg.init_limit = num("a number of ticks")?,
                "syncLimit" => cfg.sync_limit = num("a number of ticks")?,
                "maxClientCnxns" => cfg.max_client_cnxns = num("a connection count")?,
                "minSessionTimeout" => min_to = Some(parse_num::<i64>(value, "milliseconds").map_err(&bad)?),
                "maxSessionTimeout" => max_to = Some(parse_num::<i64>(value, "milliseconds").map_err(&bad)?),
                "autopurge.snapRetainCount" => {
                    // ZooKeeper raises a smaller count to its minimum, with a warning.
                    let n = num("a snapshot count")?;
                    if n < DEFAULT_SNAP_RETAIN_COUNT {
                        warnings.push(format!(
                            "{file}:{line_no}: autopurge.snapRetainCount below {DEFAULT_SNAP_RETAIN_COUNT}; using {DEFAULT_SNAP_RETAIN_COUNT}"
                        ));
                    }
                    cfg.snap_retain_count = n.max(DEFAULT_SNAP_RETAIN_COUNT);
                }
                "autopurge.purgeInterval" => cfg.purge_interval_hours = num("hours")?,
                "metricsProvider.className" => {
                    if value != PROMETHEUS_PROVIDER {
                        warnings.push(format!(
                            "{file}:{line_no}: metricsProvider.className {value}: Volery serves the Prometheus endpoint only"
                        ));
                    }
                }
                "metricsProvider.exportJvmInfo" => {}
                k if k.starts_with("server.") => {
                    let id: u64 = parse_num(&k["server.".len()..], "server.<number>").map_err(&bad)?;
                    cfg.servers.insert(id, parse_server_line(value).map_err(&bad)?);
                }
                k => match cfg.set_property(k, value) {
                    Ok(true) => {}
                    Ok(false) => warnings.push(format!(
                        "{file}:{line_no}: unknown key {k}; set as system property zookeeper.{k}, which Volery does not use"
                    )),
                    Err(ConfigError::BadProperty { why, .. }) => return Err(bad(why)),
                    Err(e) => return Err(e),
                },
            }
        }
        cfg.data_dir = data_dir.ok_or_else(|| ConfigError::Missing {
            file: file.to_string(),
            key: "dataDir".to_string(),
        })?;
        let Some(port) = port.or_else(|| {
            // An ensemble may give client ports on its server lines only.
            (!cfg.servers.is_empty()).then_some(DEFAULT_CLIENT_PORT)
        }) else {
            return Err(ConfigError::Missing {
                file: file.to_string(),
                key: "clientPort".to_string(),
            });
        };
        cfg.client_addr = SocketAddr::new(host.unwrap_or(IpAddr::from([0, 0, 0, 0])), port);
        // ZooKeeper: -1 (unset) means 2 and 20 ticks.
        let tick = cfg.tick_time_ms;
        let timeout = |v: Option<i64>, ticks: u32| match v {
            Some(ms) if ms >= 0 => u32::try_from(ms).unwrap_or(u32::MAX),
            _ => ticks.saturating_mul(tick),
        };
        cfg.min_session_timeout_ms = timeout(min_to, 2);
        cfg.max_session_timeout_ms = timeout(max_to, 20);
        Ok((cfg, warnings))
    }

    /// Reads a `volery.toml`. Properties in its `[properties]` table that no setting knows come
    /// back as warnings.
    pub fn from_toml_file(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.display().to_string(),
            why: e.to_string(),
        })?;
        Config::parse_toml(&text, &path.display().to_string())
    }

    pub fn parse_toml(text: &str, file: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let t: TomlConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            file: file.to_string(),
            why: e.to_string().trim_end().to_string(),
        })?;
        let bad = |key: &str, why: String| ConfigError::Toml {
            file: file.to_string(),
            why: format!("{key}: {why}"),
        };
        let mut cfg = Config::default();
        let mut warnings = Vec::new();
        if let Some(p) = t.client_port {
            cfg.client_addr.set_port(p);
        }
        if let Some(a) = &t.client_address {
            cfg.client_addr
                .set_ip(parse_host(a).map_err(|e| bad("client_address", e))?);
        }
        if let Some(d) = t.data_dir {
            cfg.data_dir = d;
        }
        cfg.data_log_dir = t.data_log_dir;
        if let Some(v) = t.tick_time_ms {
            cfg.tick_time_ms = v;
        }
        cfg.min_session_timeout_ms = t
            .min_session_timeout_ms
            .unwrap_or(cfg.tick_time_ms.saturating_mul(2));
        cfg.max_session_timeout_ms = t
            .max_session_timeout_ms
            .unwrap_or(cfg.tick_time_ms.saturating_mul(20));
        macro_rules! set {
            ($($field:ident <- $src:ident),*) => { $( if let Some(v) = t.$src { cfg.$field = v; } )* };
        }
        set!(init_limit <- init_limit, sync_limit <- sync_limit,
             max_client_cnxns <- max_client_cnxns, max_buffer <- max_buffer,
             max_outstanding <- max_outstanding, snap_count <- snap_count,
             container_check_interval_ms <- container_check_interval_ms,
             extended_types <- extended_types, server_id <- server_id,
             partitions <- partitions,
             snap_retain_count <- autopurge_snap_retain_count,
             purge_interval_hours <- autopurge_purge_interval_hours);
        if t.global_acceptors.is_some() {
            cfg.global_acceptors = t.global_acceptors;
        }
        if let Some(n) = t.worker_threads {
            cfg.worker_threads = Some(n.max(1));
        }
        if t.super_digest.is_some() {
            cfg.super_digest = t.super_digest;
        }
        if let Some(words) = t.four_letter_whitelist {
            cfg.four_letter_whitelist = Whitelist::parse(&words.join(","));
        }
        if let Some(m) = t.metrics {
            if let Some(h) = &m.host {
                cfg.metrics_addr
                    .set_ip(parse_host(h).map_err(|e| bad("metrics.host", e))?);
            }
            if let Some(p) = m.port {
                cfg.metrics_addr.set_port(p);
            }
        }
        for s in t.servers.unwrap_or_default() {
            if s.id == 0 || s.id > u32::MAX as u64 {
                return Err(bad("servers", format!("server id {} out of range", s.id)));
            }
            let client = match s.client_port {
                Some(p) => Some(SocketAddr::new(
                    parse_host(&s.host).map_err(|e| bad("servers.host", e))?,
                    p,
                )),
                None => None,
            };
            let line = ServerLine {
                host: s.host,
                quorum_port: s.peer_port,
                election_port: 0,
                role: "participant".to_string(),
                client,
            };
            if cfg.servers.insert(s.id, line).is_some() {
                return Err(bad("servers", format!("server id {} listed twice", s.id)));
            }
        }
        if !cfg.servers.is_empty() && !cfg.servers.contains_key(&cfg.server_id) {
            return Err(bad(
                "server_id",
                format!("{} is not one of the [[servers]] ids", cfg.server_id),
            ));
        }
        if t.client_port.is_none() {
            if let Some(client) = cfg.servers.get(&cfg.server_id).and_then(|s| s.client) {
                cfg.client_addr.set_port(client.port());
            }
        }
        for (k, v) in t.properties.unwrap_or_default() {
            if !cfg.set_property(&k, &v)? {
                warnings.push(format!("{file}: unknown property {k} ignored"));
            }
        }
        Ok((cfg, warnings))
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
        let servers = self.servers.len().max(1);
        if self.partitions == 0 || !servers.is_multiple_of(self.partitions as usize) {
            return Err(ConfigError::Partitions {
                partitions: self.partitions,
                servers,
            });
        }
        if let Some(ids) = &self.global_acceptors {
            let why = if ids.is_empty() {
                Some("lists no server".to_string())
            } else if let Some(id) = ids.iter().find(|id| !self.servers.contains_key(id)) {
                Some(format!("{id} is not one of the servers"))
            } else if ids.iter().enumerate().any(|(i, id)| ids[..i].contains(id)) {
                Some("lists a server twice".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ConfigError::GlobalAcceptors(why));
            }
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

    const FULL: &str = "\
# The standard ZooKeeper sample, plus the keys operators set
tickTime=3000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
dataLogDir = /var/log/zookeeper
clientPort=2182
clientPortAddress=127.0.0.1
maxClientCnxns=100
minSessionTimeout=5000
autopurge.snapRetainCount=1
autopurge.purgeInterval=24
4lw.commands.whitelist=ruok,mntr
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
metricsProvider.httpHost=127.0.0.1
metricsProvider.httpPort=7001
extendedTypesEnabled=true
DigestAuthenticationProvider.superDigest=super:abc=
admin.enableServer=false
server.1=zk1:2888:3888
server.2=zk2:2888:3888:observer;127.0.0.1:2183
";

    #[test]
    fn zoo_cfg_with_every_key() {
        let (c, warnings) = Config::parse_zoo_cfg(FULL, "zoo.cfg").unwrap();
        assert_eq!(c.client_addr, "127.0.0.1:2182".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/zookeeper"));
        assert_eq!(c.data_log_dir, Some(PathBuf::from("/var/log/zookeeper")));
        assert_eq!((c.tick_time_ms, c.init_limit, c.sync_limit), (3000, 10, 5));
        assert_eq!(c.max_client_cnxns, 100);
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (5000, 60_000),
            "maxSessionTimeout defaults to 20 ticks"
        );
        assert_eq!((c.snap_retain_count, c.purge_interval_hours), (3, 24));
        assert!(c.four_letter_whitelist.allows("mntr"));
        assert!(!c.four_letter_whitelist.allows("dump"));
        assert_eq!(c.metrics_addr, "127.0.0.1:7001".parse().unwrap());
        assert!(
            c.extended_types,
            "unknown keys become zookeeper.<key> properties"
        );
        assert_eq!(c.super_digest.as_deref(), Some("super:abc="));
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[&2].role, "observer");
        assert_eq!(
            c.servers[&2].client,
            Some("127.0.0.1:2183".parse().unwrap())
        );
        assert_eq!(c.servers[&1].host, "zk1");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("zoo.cfg:11: autopurge.snapRetainCount"));
        assert!(warnings[1].starts_with("zoo.cfg:19: unknown key admin.enableServer"));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn zoo_cfg_errors_name_key_and_line() {
        let err = |text: &str| {
            Config::parse_zoo_cfg(text, "z.cfg")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("dataDir=/d\nclientPort=2181\ntickTime=two\n"),
            "z.cfg:3: invalid value for tickTime: expected milliseconds, got \"two\""
        );
        assert_eq!(
            err("dataDir=/d\n\n# c\nclientPort=99999\n"),
            "z.cfg:4: invalid value for clientPort: expected a port, got \"99999\""
        );
        assert_eq!(
            err("dataDir=/d\nclientPort=1\nserver.x=a:1:2\n"),
            "z.cfg:3: invalid value for server.x: expected server.<number>, got \"x\""
        );
        assert!(err("dataDir=/d\nclientPort=1\nserver.1=a:1\n")
            .starts_with("z.cfg:3: invalid value for server.1: expected host:quorumPort"));
        assert_eq!(
            err("dataDir=/d\nclientPort=1\nextendedTypesEnabled=yes\n"),
            "z.cfg:3: invalid value for extendedTypesEnabled: expected true or false"
        );
        assert_eq!(err("clientPort=2181\n"), "z.cfg: dataDir is not set");
        assert_eq!(err("dataDir=/d\n"), "z.cfg: clientPort is not set");
    }

    #[test]
    fn myid_is_read_from_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("volery-myid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("zoo.cfg");
        let text = format!(
            "dataDir={}\nserver.1=a:1:2\nserver.7=b:1:2;2190\n",
            dir.display()
        );
        std::fs::write(&cfg, &text).unwrap();
        let missing = Config::from_zoo_cfg(&cfg).unwrap_err();
        assert!(matches!(missing, ConfigError::MyId { .. }), "{missing}");
        std::fs::write(dir.join("myid"), "7\n").unwrap();
        let (c, _) = Config::from_zoo_cfg(&cfg).unwrap();
        assert_eq!(c.server_id, 7);
        assert_eq!(
            c.client_addr.port(),
            2190,
            "the client port of this server's line"
        );
        std::fs::write(dir.join("myid"), "9").unwrap();
        assert!(Config::from_zoo_cfg(&cfg)
            .unwrap_err()
            .to_string()
            .contains("no server.9 line"));
        std::fs::write(dir.join("myid"), "seven").unwrap();
        assert!(Config::from_zoo_cfg(&cfg)
            .unwrap_err()
            .to_string()
            .contains("invalid myid"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn volery_toml_with_every_setting() {
        let text = r#"
client_port = 2300
client_address = "127.0.0.1"
data_dir = "/srv/volery"
data_log_dir = "/srv/volery-log"
tick_time_ms = 500
init_limit = 4
sync_limit = 2
max_session_timeout_ms = 7000
max_client_cnxns = 0
max_buffer = 4096
max_outstanding = 10
snap_count = 50
container_check_interval_ms = 100
extended_types = true
super_digest = "super:xyz="
four_letter_whitelist = ["ruok", "mntr"]
server_id = 2
autopurge_snap_retain_count = 4
autopurge_purge_interval_hours = 1

[metrics]
host = "127.0.0.1"
port = 0

[properties]
"zookeeper.snapCount" = "60"
"zookeeper.noSuchThing" = "1"
"#;
        let (c, warnings) = Config::parse_toml(text, "volery.toml").unwrap();
        assert_eq!(c.client_addr, "127.0.0.1:2300".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/srv/volery"));
        assert_eq!(
            (
                c.tick_time_ms,
                c.min_session_timeout_ms,
                c.max_session_timeout_ms
            ),
            (500, 1000, 7000)
        );
        assert_eq!(
            (c.max_client_cnxns, c.max_buffer, c.max_outstanding),
            (0, 4096, 10)
        );
        assert_eq!(c.snap_count, 60, "properties come after the settings");
        assert!(c.extended_types && c.four_letter_whitelist.allows("mntr"));
        assert_eq!(
            (c.server_id, c.snap_retain_count, c.purge_interval_hours),
            (2, 4, 1)
        );
        assert_eq!(c.metrics_addr.port(), 0);
        assert_eq!(
            warnings,
            ["volery.toml: unknown property zookeeper.noSuchThing ignored"]
        );
        let err = Config::parse_toml("client_prot = 1\n", "v.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("v.toml: ") && err.contains("client_prot") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn toml_servers_make_a_cluster_member() {
        let text = r#"
server_id = 2
data_dir = "/tmp/v2"
[[servers]]
id = 1
host = "127.0.0.1"
peer_port = 2888
client_port = 2181
[[servers]]
id = 2
host = "127.0.0.1"
peer_port = 2889
client_port = 2182
[[servers]]
id = 3
host = "127.0.0.1"
peer_port = 2890
"#;
        let (c, _) = Config::parse_toml(text, "cluster.toml").unwrap();
        assert_eq!(c.server_id, 2);
        assert_eq!(c.servers.len(), 3);
        assert_eq!(c.servers[&3].quorum_port, 2890);
        assert_eq!(c.client_addr.port(), 2182, "this server's client_port");
        let wrong = text.replace("server_id = 2", "server_id = 9");
        let e = Config::parse_toml(&wrong, "cluster.toml").unwrap_err();
        assert!(e.to_string().contains("server_id"), "{e}");
        let twice = text.replace("id = 3", "id = 1");
        assert!(Config::parse_toml(&twice, "cluster.toml").is_err());
    }

    #[test]
    fn partitions_must_split_the_servers_evenly() {
        let base = "tickTime=2000\ndataDir=/tmp/p\nclientPort=2181\n\
server.1=127.0.0.1:2881:3881\nserver.2=127.0.0.1:2882:3882\n\
server.3=127.0.0.1:2883:3883\nserver.4=127.0.0.1:2884:3884\n";
        let (c, warnings) =
            Config::parse_zoo_cfg(&format!("{base}partitions=2\n"), "zoo.cfg").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.partitions, 2);
        assert!(c.validate().is_ok());
        let (c, _) = Config::parse_zoo_cfg(&format!("{base}partitions=3\n"), "zoo.cfg").unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("partitions=3"), "{e}");
        assert!(Config::parse_zoo_cfg(&format!("{base}partitions=two\n"), "zoo.cfg").is_err());
        let (t, _) = Config::parse_toml("partitions = 1\n", "volery.toml").unwrap();
        assert_eq!(t.partitions, 1);
    }

    #[test]
    fn worker_threads_are_set_in_either_file() {
        let zoo = |line: &str| {
            Config::parse_zoo_cfg(
                &format!("dataDir=/tmp/p\nclientPort=2181\n{line}\n"),
                "zoo.cfg",
            )
        };
        assert_eq!(zoo("").unwrap().0.worker_threads, None);
        assert_eq!(zoo("workerThreads=3").unwrap().0.worker_threads, Some(3));
        assert_eq!(zoo("workerThreads=0").unwrap().0.worker_threads, Some(1));
        assert!(zoo("workerThreads=many").is_err());
        let (t, _) = Config::parse_toml("worker_threads = 2\n", "volery.toml").unwrap();
        assert_eq!(t.worker_threads, Some(2));
    }

    #[test]
    fn global_acceptors_are_servers_listed_once() {
        let base = "tickTime=2000\ndataDir=/tmp/p\nclientPort=2181\npartitions=2\n\
server.1=127.0.0.1:2881:3881\nserver.2=127.0.0.1:2882:3882\n\
server.3=127.0.0.1:2883:3883\nserver.4=127.0.0.1:2884:3884\n";
        let cfg = |line: &str| Config::parse_zoo_cfg(&format!("{base}{line}\n"), "zoo.cfg");
        let (c, warnings) = cfg("globalAcceptors=1, 3,4").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.global_acceptors, Some(vec![1, 3, 4]));
        assert!(c.validate().is_ok());
        assert_eq!(cfg("").unwrap().0.global_acceptors, None);
        let e = cfg("globalAcceptors=1,5")
            .unwrap()
            .0
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("5 is not one of the servers"), "{e}");
        let e = cfg("globalAcceptors=2,2")
            .unwrap()
            .0
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(cfg("globalAcceptors=1,x").is_err());
        let (t, _) = Config::parse_toml("global_acceptors = [2, 1]\n", "volery.toml").unwrap();
        assert_eq!(t.global_acceptors, Some(vec![2, 1]));
    }
}
