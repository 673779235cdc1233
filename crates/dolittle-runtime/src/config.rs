//! Configuration in stages: the Dolittle `.dolittle/*.json` files as users know them, then the
//! environment, then flags, folded into one validated [`RuntimeConfig`] that the rest of the
//! Runtime sees. The contract is `shared/reference/configuration.md`.
//!
//! The environment is passed in as a map so that tests can inject it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use dolittle_types::{ConsentId, MicroserviceId, PartitionId, StreamId, TenantId};
use serde_json::{Map, Value};

/// Where the Runtime looks for each `<name>.json`, relative to the working directory.
const SEARCH_FOLDERS: [&str; 6] = [".dolittle", "config", "/config", "data", "..", "."];

pub const DEFAULT_PUBLIC_PORT: u16 = 50052;
pub const DEFAULT_PRIVATE_PORT: u16 = 50053;
pub const DEFAULT_MANAGEMENT_PORT: u16 = 51052;
pub const DEFAULT_METRICS_PORT: u16 = 9700;
/// The largest request a head may send, by default (32 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// A configuration problem, naming the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    fn new(file: impl fmt::Display, key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Which store a tenant's events live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStoreConfig {
    /// The embedded SQLite store: one file per tenant.
    Embedded { path: PathBuf },
    /// A PostgreSQL database (and schema).
    Postgres {
        connection_string: String,
        schema: String,
        max_connections: u32,
    },
}

/// One listening endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    pub host: IpAddr,
    pub port: u16,
    pub enabled: bool,
}

/// How to reach a producer microservice's public endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicroserviceAddress {
    pub host: String,
    pub port: u16,
}

/// One consent given by a producer tenant for an event-horizon subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub consumer_microservice: MicroserviceId,
    pub consumer_tenant: TenantId,
    pub stream: StreamId,
    pub partition: PartitionId,
    pub consent: ConsentId,
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The validated configuration the Runtime runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub microservice: MicroserviceId,
    /// Every configured tenant and its event store, in id order.
    pub tenants: BTreeMap<TenantId, EventStoreConfig>,
    pub public: EndpointConfig,
    pub private: EndpointConfig,
    pub management: EndpointConfig,
    pub metrics: EndpointConfig,
    pub microservices: BTreeMap<MicroserviceId, MicroserviceAddress>,
    /// Consents per producer tenant.
    pub consents: BTreeMap<TenantId, Vec<Consent>>,
    /// Where the files were looked for, so that consents can be read again while running.
    pub location: ConfigLocation,
    pub max_request_bytes: usize,
    pub log_format: LogFormat,
    /// The bearer token the management API requires; required when it is bound to an address
    /// other than loopback.
    pub management_token: Option<ManagementToken>,
}

/// A bearer token for the management API. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagementToken(pub String);

impl fmt::Debug for ManagementToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ManagementToken(..)")
    }
}

/// Where the configuration files are looked for: the working directory's search folders, or
/// one folder given by `--config-dir`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigLocation {
    pub working_dir: PathBuf,
    pub config_dir: Option<PathBuf>,
}

/// Identifies one version of a file on disk: its path, modification time and length.
pub type FileStamp = Option<(PathBuf, std::time::SystemTime, u64)>;

impl ConfigLocation {
    fn files(&self) -> ConfigFiles {
        ConfigFiles {
            working_dir: self.working_dir.clone(),
            config_dir: self.config_dir.clone(),
        }
    }

    /// Reads `event-horizon-consents.json` again (no file means no consents).
    pub fn read_consents(&self) -> Result<BTreeMap<TenantId, Vec<Consent>>, ConfigError> {
        RuntimeConfig::load_consents(&self.files())
    }

    /// The current version of `event-horizon-consents.json`, to notice that it changed.
    pub fn consents_stamp(&self) -> FileStamp {
        let file = self.files().find_path("event-horizon-consents").ok()??;
        let metadata = std::fs::metadata(&file).ok()?;
        Some((file, metadata.modified().ok()?, metadata.len()))
    }
}

/// What flags and environment variables can override. `None` leaves the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub config_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub working_dir: Option<PathBuf>,
    pub microservice: Option<String>,
    pub public_port: Option<u16>,
    pub private_port: Option<u16>,
    pub management_port: Option<u16>,
    pub metrics_port: Option<u16>,
    pub public_host: Option<String>,
    pub private_host: Option<String>,
    pub management_host: Option<String>,
    pub max_request_bytes: Option<usize>,
    pub log_format: Option<String>,
    pub management_token: Option<String>,
    pub management_token_file: Option<PathBuf>,
}

impl Overrides {
    /// The environment variables that override configuration, in the order of [`Overrides`].
    pub const VARIABLES: [&'static str; 15] = [
        "DOLITTLE_CONFIG_DIR",
        "DOLITTLE_DATA_DIR",
        "DOLITTLE_WORKING_DIR",
        "DOLITTLE_MICROSERVICE_ID",
        "DOLITTLE_PUBLIC_PORT",
        "DOLITTLE_PRIVATE_PORT",
        "DOLITTLE_MANAGEMENT_PORT",
        "DOLITTLE_METRICS_PORT",
        "DOLITTLE_PUBLIC_HOST",
        "DOLITTLE_PRIVATE_HOST",
        "DOLITTLE_MANAGEMENT_HOST",
        "DOLITTLE_MAX_REQUEST_BYTES",
        "DOLITTLE_LOG_FORMAT",
        "DOLITTLE_MANAGEMENT_TOKEN",
        "DOLITTLE_MANAGEMENT_TOKEN_FILE",
    ];

    /// Reads overrides from environment variables (an injected map).
    pub fn from_environment(environment: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let text = |name: &str| {
            environment
                .get(name)
                .filter(|value| !value.is_empty())
                .cloned()
        };
        let number = |name: &str| -> Result<Option<u16>, ConfigError> {
            text(name)
                .map(|value| {
                    value.parse::<u16>().map_err(|_| {
                        ConfigError::new("environment", name, format!("{value:?} is not a port"))
                    })
                })
                .transpose()
        };
        let max_request_bytes = text("DOLITTLE_MAX_REQUEST_BYTES")
            .map(|value| {
                value.parse::<usize>().map_err(|_| {
                    ConfigError::new(
                        "environment",
                        "DOLITTLE_MAX_REQUEST_BYTES",
                        format!("{value:?} is not a number of bytes"),
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            config_dir: text("DOLITTLE_CONFIG_DIR").map(PathBuf::from),
            data_dir: text("DOLITTLE_DATA_DIR").map(PathBuf::from),
            working_dir: text("DOLITTLE_WORKING_DIR").map(PathBuf::from),
            microservice: text("DOLITTLE_MICROSERVICE_ID"),
            public_port: number("DOLITTLE_PUBLIC_PORT")?,
            private_port: number("DOLITTLE_PRIVATE_PORT")?,
            management_port: number("DOLITTLE_MANAGEMENT_PORT")?,
            metrics_port: number("DOLITTLE_METRICS_PORT")?,
            public_host: text("DOLITTLE_PUBLIC_HOST"),
            private_host: text("DOLITTLE_PRIVATE_HOST"),
            management_host: text("DOLITTLE_MANAGEMENT_HOST"),
            max_request_bytes,
            log_format: text("DOLITTLE_LOG_FORMAT"),
            management_token: text("DOLITTLE_MANAGEMENT_TOKEN"),
            management_token_file: text("DOLITTLE_MANAGEMENT_TOKEN_FILE").map(PathBuf::from),
        })
    }

    /// These overrides, with every value that `higher` sets taken from `higher`.
    pub fn overridden_by(self, higher: Overrides) -> Self {
        Self {
            config_dir: higher.config_dir.or(self.config_dir),
            data_dir: higher.data_dir.or(self.data_dir),
            working_dir: higher.working_dir.or(self.working_dir),
            microservice: higher.microservice.or(self.microservice),
            public_port: higher.public_port.or(self.public_port),
            private_port: higher.private_port.or(self.private_port),
            management_port: higher.management_port.or(self.management_port),
            metrics_port: higher.metrics_port.or(self.metrics_port),
            public_host: higher.public_host.or(self.public_host),
            private_host: higher.private_host.or(self.private_host),
            management_host: higher.management_host.or(self.management_host),
            max_request_bytes: higher.max_request_bytes.or(self.max_request_bytes),
            log_format: higher.log_format.or(self.log_format),
            management_token: higher.management_token.or(self.management_token),
            management_token_file: higher.management_token_file.or(self.management_token_file),
        }
    }
}

/// One configuration file that was found and parsed.
struct ConfigFile {
    path: PathBuf,
    value: Value,
}

impl ConfigFile {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn error(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::new(self.name(), key, problem)
    }

    fn object(&self) -> Result<&Map<String, Value>, ConfigError> {
        self.value
            .as_object()
            .ok_or_else(|| self.error("(top level)", "expected a JSON object"))
    }
}

/// Finds and reads configuration files.
struct ConfigFiles {
    working_dir: PathBuf,
    config_dir: Option<PathBuf>,
}

impl ConfigFiles {
    /// The path of `<name>.json` when it exists once, without reading it.
    fn find_path(&self, name: &str) -> Result<Option<PathBuf>, ConfigError> {
        let file_name = format!("{name}.json");
        match &self.config_dir {
            Some(dir) => {
                let path = self.working_dir.join(dir).join(&file_name);
                Ok(path.is_file().then_some(path))
            }
            None => {
                let mut found: Vec<PathBuf> = Vec::new();
                for folder in SEARCH_FOLDERS {
                    let path = self.working_dir.join(folder).join(&file_name);
                    let canonical = path.canonicalize().unwrap_or(path.clone());
                    if path.is_file() && !found.contains(&canonical) {
                        found.push(canonical);
                    }
                }
                match found.as_slice() {
                    [] => Ok(None),
                    [path] => Ok(Some(path.clone())),
                    [first, second, ..] => Err(ConfigError::new(
                        file_name,
                        "(file)",
                        format!("found in {} and {}", first.display(), second.display()),
                    )),
                }
            }
        }
    }

    fn find(&self, name: &str) -> Result<Option<ConfigFile>, ConfigError> {
        let file_name = format!("{name}.json");
        let candidates: Vec<PathBuf> = match &self.config_dir {
            Some(dir) => vec![self.working_dir.join(dir).join(&file_name)],
            None => {
                let mut found: Vec<PathBuf> = Vec::new();
                for folder in SEARCH_FOLDERS {
                    let path = self.working_dir.join(folder).join(&file_name);
                    let canonical = path.canonicalize().unwrap_or(path.clone());
                    if path.is_file() && !found.iter().any(|seen| seen == &canonical) {
                        found.push(canonical);
                    }
                }
                found
            }
        };
        let existing: Vec<&PathBuf> = candidates.iter().filter(|path| path.is_file()).collect();
        match existing.as_slice() {
            [] => Ok(None),
            [path] => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    ConfigError::new(path.display(), "(file)", format!("cannot be read: {error}"))
                })?;
                let value: Value = serde_json::from_str(&text).map_err(|error| {
                    ConfigError::new(
                        path.display(),
                        "(file)",
                        format!("is not valid JSON: {error}"),
                    )
                })?;
                Ok(Some(ConfigFile {
                    path: (*path).clone(),
                    value,
                }))
            }
            [first, second, ..] => Err(ConfigError::new(
                file_name,
                "(file)",
                format!(
                    "found more than once, in {} and {}: keep one",
                    first.display(),
                    second.display()
                ),
            )),
        }
    }
}

fn parse_guid<T: From<uuid::Uuid>>(
    file: &ConfigFile,
    key: &str,
    text: &str,
) -> Result<T, ConfigError> {
    uuid::Uuid::parse_str(text)
        .map(T::from)
        .map_err(|_| file.error(key, format!("{text:?} is not a GUID")))
}

fn warn_unknown_keys(file: &ConfigFile, key: &str, object: &Map<String, Value>, known: &[&str]) {
    for name in object.keys().filter(|name| !known.contains(&name.as_str())) {
        tracing::warn!(file = %file.name(), key = %format!("{key}.{name}"), "unknown configuration key is ignored");
    }
}

fn get_port(file: &ConfigFile, key: &str, value: &Value) -> Result<u16, ConfigError> {
    value
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| file.error(key, format!("{value} is not a port number (0-65535)")))
}

fn parse_host(source: &str, key: &str, text: &str) -> Result<IpAddr, ConfigError> {
    if text == "localhost" {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    text.parse()
        .map_err(|_| ConfigError::new(source, key, format!("{text:?} is not an IP address")))
}

impl RuntimeConfig {
    /// Loads the configuration from files in the working directory (or the overrides'
    /// directories) and applies the overrides on top.
    pub fn load(overrides: Overrides) -> Result<Self, ConfigError> {
        let working_dir = match &overrides.working_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().map_err(|error| {
                ConfigError::new("(working directory)", "(cwd)", error.to_string())
            })?,
        };
        let files = ConfigFiles {
            working_dir: working_dir.clone(),
            config_dir: overrides.config_dir.clone(),
        };
        let data_dir = match &overrides.data_dir {
            Some(dir) => working_dir.join(dir),
            None => working_dir.join(".dolittle").join("data"),
        };

        let tenant_ids = Self::load_tenants(&files)?;
        let tenants = Self::load_resources(&files, &tenant_ids, &working_dir, &data_dir)?;
        let (public, private, mut management) = Self::load_endpoints(&files, &overrides)?;
        let mut metrics = EndpointConfig {
            host: IpAddr::from([0, 0, 0, 0]),
            port: DEFAULT_METRICS_PORT,
            enabled: true,
        };
        if let Some(file) = files.find("metrics")? {
            let object = file.object()?;
            warn_unknown_keys(&file, "", object, &["Port", "port"]);
            if let Some(port) = object.get("Port").or_else(|| object.get("port")) {
                metrics.port = get_port(&file, "Port", port)?;
            }
        }
        if let Some(port) = overrides.metrics_port {
            metrics.port = port;
        }
        if let Some(port) = overrides.management_port {
            management.port = port;
        }
        let microservice = Self::load_microservice(&files, &overrides)?;
        let microservices = Self::load_microservices(&files)?;
        let consents = Self::load_consents(&files)?;
        let log_format = match overrides.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "flags",
                    "--log-format",
                    format!("{other:?} is not a log format: use text or json"),
                ));
            }
        };
        let management_token = Self::load_management_token(&overrides, &working_dir)?;
        if management.enabled && !management.host.is_loopback() && management_token.is_none() {
            return Err(ConfigError::new(
                "flags",
                "--management-host",
                format!(
                    "the management API is bound to {}, which is not loopback: give it a token \
                     with --management-token-file or DOLITTLE_MANAGEMENT_TOKEN",
                    management.host
                ),
            ));
        }
        Ok(Self {
            microservice,
            tenants,
            public,
            private,
            management,
            metrics,
            microservices,
            consents,
            location: ConfigLocation {
                working_dir,
                config_dir: overrides.config_dir.clone(),
            },
            max_request_bytes: overrides
                .max_request_bytes
                .unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            log_format,
            management_token,
        })
    }

    /// The management token: the file named by a flag wins over the environment's token.
    fn load_management_token(
        overrides: &Overrides,
        working_dir: &Path,
    ) -> Result<Option<ManagementToken>, ConfigError> {
        let token = match &overrides.management_token_file {
            Some(file) => {
                let path = working_dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::new(
                        "flags",
                        "--management-token-file",
                        format!("cannot read {}: {error}", path.display()),
                    )
                })?;
                Some(text.trim().to_owned())
            }
            None => overrides.management_token.clone(),
        };
        match token {
            Some(token) if token.is_empty() => Err(ConfigError::new(
                "flags",
                "--management-token-file",
                "the management token is empty",
            )),
            Some(token) => Ok(Some(ManagementToken(token))),
            None => Ok(None),
        }
    }

    fn load_tenants(files: &ConfigFiles) -> Result<Vec<TenantId>, ConfigError> {
        let Some(file) = files.find("tenants")? else {
            return Ok(vec![TenantId::DEVELOPMENT]);
        };
        let object = file.object()?;
        let mut tenants = Vec::new();
        for key in object.keys() {
            tenants.push(parse_guid::<TenantId>(&file, key, key)?);
        }
        if tenants.is_empty() {
            return Err(file.error(
                "(top level)",
                "lists no tenants: add at least one tenant id",
            ));
        }
        Ok(tenants)
    }

    fn load_resources(
        files: &ConfigFiles,
        tenants: &[TenantId],
        working_dir: &Path,
        data_dir: &Path,
    ) -> Result<BTreeMap<TenantId, EventStoreConfig>, ConfigError> {
        let mut stores: BTreeMap<TenantId, EventStoreConfig> = tenants
            .iter()
            .map(|tenant| {
                let path = data_dir.join(format!("{tenant}.db"));
                (*tenant, EventStoreConfig::Embedded { path })
            })
            .collect();
        let Some(file) = files.find("resources")? else {
            return Ok(stores);
        };
        for (key, entry) in file.object()? {
            let tenant: TenantId = parse_guid(&file, key, key)?;
            if !stores.contains_key(&tenant) {
                tracing::warn!(file = %file.name(), %tenant, "resources are configured for a tenant that is not in tenants.json; ignored");
                continue;
            }
            let Some(entry) = entry.as_object() else {
                return Err(file.error(key.clone(), "expected an object"));
            };
            warn_unknown_keys(
                &file,
                key,
                entry,
                &["eventStore", "projections", "embeddings", "readModels"],
            );
            if let Some(store) = entry.get("eventStore") {
                let config = Self::parse_event_store(
                    &file,
                    &format!("{key}.eventStore"),
                    store,
                    working_dir,
                )?;
                stores.insert(tenant, config);
            }
        }
        Self::refuse_shared_stores(&file, &stores)?;
        Ok(stores)
    }

    fn parse_event_store(
        file: &ConfigFile,
        key: &str,
        value: &Value,
        working_dir: &Path,
    ) -> Result<EventStoreConfig, ConfigError> {
        let shapes = "write {\"embedded\": {\"path\": \".dolittle/data/tenant.db\"}} or \
                      {\"postgres\": {\"connectionString\": \"postgres://user@host:5432/db\", \"schema\": \"public\"}}";
        let Some(object) = value.as_object() else {
            return Err(file.error(key, format!("expected an object: {shapes}")));
        };
        if object.contains_key("servers") || object.contains_key("database") {
            return Err(file.error(
                key,
                format!("MongoDB is not supported by this Runtime; {shapes}"),
            ));
        }
        match (object.get("embedded"), object.get("postgres")) {
            (Some(embedded), None) => {
                let path = embedded
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        file.error(format!("{key}.embedded.path"), "is missing or not a string")
                    })?;
                Ok(EventStoreConfig::Embedded {
                    path: working_dir.join(path),
                })
            }
            (None, Some(postgres)) => {
                let connection_string = postgres
                    .get("connectionString")
                    .and_then(Value::as_str)
                    .filter(|text| !text.is_empty())
                    .ok_or_else(|| {
                        file.error(
                            format!("{key}.postgres.connectionString"),
                            "is missing or not a string",
                        )
                    })?
                    .to_owned();
                let schema = match postgres.get("schema") {
                    None => "public".to_owned(),
                    Some(Value::String(schema)) if !schema.is_empty() => schema.clone(),
                    Some(other) => {
                        return Err(file.error(
                            format!("{key}.postgres.schema"),
                            format!("{other} is not a schema name"),
                        ));
                    }
                };
                let max_connections = match postgres.get("maxConnections") {
                    None => 16,
                    Some(value) => value
                        .as_u64()
                        .and_then(|count| u32::try_from(count).ok())
                        .filter(|count| *count > 0)
                        .ok_or_else(|| {
                            file.error(
                                format!("{key}.postgres.maxConnections"),
                                format!("{value} is not a positive number"),
                            )
                        })?,
                };
                Ok(EventStoreConfig::Postgres {
                    connection_string,
                    schema,
                    max_connections,
                })
            }
            (Some(_), Some(_)) => {
                Err(file.error(key, "names both embedded and postgres: choose one"))
            }
            (None, None) => Err(file.error(key, format!("names no store: {shapes}"))),
        }
    }

    fn refuse_shared_stores(
        file: &ConfigFile,
        stores: &BTreeMap<TenantId, EventStoreConfig>,
    ) -> Result<(), ConfigError> {
        let mut seen: BTreeMap<String, TenantId> = BTreeMap::new();
        for (tenant, store) in stores {
            let identity = match store {
                EventStoreConfig::Embedded { path } => format!("file {}", path.display()),
                EventStoreConfig::Postgres {
                    connection_string,
                    schema,
                    ..
                } => {
                    format!("database {connection_string} schema {schema}")
                }
            };
            if let Some(other) = seen.insert(identity.clone(), *tenant) {
                return Err(file.error(
                    format!("{tenant}.eventStore"),
                    format!("tenants {other} and {tenant} would share the same store ({}); every tenant needs its own", identity.split(' ').next().unwrap_or("store")),
                ));
            }
        }
        Ok(())
    }

    fn load_endpoints(
        files: &ConfigFiles,
        overrides: &Overrides,
    ) -> Result<(EndpointConfig, EndpointConfig, EndpointConfig), ConfigError> {
        let any = IpAddr::from([0, 0, 0, 0]);
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let mut public = EndpointConfig {
            host: any,
            port: DEFAULT_PUBLIC_PORT,
            enabled: true,
        };
        let mut private = EndpointConfig {
            host: any,
            port: DEFAULT_PRIVATE_PORT,
            enabled: true,
        };
        let mut management = EndpointConfig {
            host: loopback,
            port: DEFAULT_MANAGEMENT_PORT,
            enabled: true,
        };
        if let Some(file) = files.find("endpoints")? {
            let object = file.object()?;
            warn_unknown_keys(&file, "", object, &["public", "private", "management"]);
            for (name, endpoint) in [
                ("public", &mut public),
                ("private", &mut private),
                ("management", &mut management),
            ] {
                let Some(value) = object.get(name) else {
                    continue;
                };
                let Some(entry) = value.as_object() else {
                    return Err(file.error(name, "expected an object"));
                };
                warn_unknown_keys(&file, name, entry, &["port", "host", "enabled"]);
                if let Some(port) = entry.get("port") {
                    endpoint.port = get_port(&file, &format!("{name}.port"), port)?;
                }
                if let Some(host) = entry.get("host") {
                    let text = host
                        .as_str()
                        .ok_or_else(|| file.error(format!("{name}.host"), "is not a string"))?;
                    endpoint.host = parse_host(&file.name(), &format!("{name}.host"), text)?;
                }
                if let Some(enabled) = entry.get("enabled") {
                    endpoint.enabled = enabled.as_bool().ok_or_else(|| {
                        file.error(format!("{name}.enabled"), "is not true or false")
                    })?;
                }
            }
        }
        if let Some(port) = overrides.public_port {
            public.port = port;
        }
        if let Some(port) = overrides.private_port {
            private.port = port;
        }
        for (host, endpoint, flag) in [
            (&overrides.public_host, &mut public, "--public-host"),
            (&overrides.private_host, &mut private, "--private-host"),
            (
                &overrides.management_host,
                &mut management,
                "--management-host",
            ),
        ] {
            if let Some(host) = host {
                endpoint.host = parse_host("flags", flag, host)?;
            }
        }
        Ok((public, private, management))
    }

    fn load_microservice(
        files: &ConfigFiles,
        overrides: &Overrides,
    ) -> Result<MicroserviceId, ConfigError> {
        if let Some(text) = &overrides.microservice {
            return uuid::Uuid::parse_str(text)
                .map(MicroserviceId)
                .map_err(|_| {
                    ConfigError::new(
                        "flags",
                        "--microservice-id",
                        format!("{text:?} is not a GUID"),
                    )
                });
        }
        let Some(file) = files.find("bounded-context")? else {
            return Ok(MicroserviceId::NIL);
        };
        match file.object()?.get("boundedContext") {
            Some(Value::String(text)) => parse_guid(&file, "boundedContext", text),
            Some(other) => {
                Err(file.error("boundedContext", format!("{other} is not a GUID string")))
            }
            None => Ok(MicroserviceId::NIL),
        }
    }

    fn load_microservices(
        files: &ConfigFiles,
    ) -> Result<BTreeMap<MicroserviceId, MicroserviceAddress>, ConfigError> {
        let mut microservices = BTreeMap::new();
        let Some(file) = files.find("microservices")? else {
            return Ok(microservices);
        };
        for (key, entry) in file.object()? {
            let microservice: MicroserviceId = parse_guid(&file, key, key)?;
            let host = entry
                .get("host")
                .and_then(Value::as_str)
                .ok_or_else(|| file.error(format!("{key}.host"), "is missing or not a string"))?
                .to_owned();
            let port = match entry.get("port") {
                Some(port) => get_port(&file, &format!("{key}.port"), port)?,
                None => DEFAULT_PUBLIC_PORT,
            };
            microservices.insert(microservice, MicroserviceAddress { host, port });
        }
        Ok(microservices)
    }

    fn load_consents(files: &ConfigFiles) -> Result<BTreeMap<TenantId, Vec<Consent>>, ConfigError> {
        let mut consents = BTreeMap::new();
        let Some(file) = files.find("event-horizon-consents")? else {
            return Ok(consents);
        };
        for (key, entries) in file.object()? {
            let producer_tenant: TenantId = parse_guid(&file, key, key)?;
            let Some(entries) = entries.as_array() else {
                return Err(file.error(key.clone(), "expected an array of consents"));
            };
            let mut list = Vec::new();
            for (index, entry) in entries.iter().enumerate() {
                let field = |name: &str| -> Result<&str, ConfigError> {
                    entry.get(name).and_then(Value::as_str).ok_or_else(|| {
                        file.error(
                            format!("{key}[{index}].{name}"),
                            "is missing or not a string",
                        )
                    })
                };
                let consent = Consent {
                    consumer_microservice: parse_guid(
                        &file,
                        &format!("{key}[{index}].microservice"),
                        field("microservice")?,
                    )?,
                    consumer_tenant: parse_guid(
                        &file,
                        &format!("{key}[{index}].tenant"),
                        field("tenant")?,
                    )?,
                    stream: parse_guid(&file, &format!("{key}[{index}].stream"), field("stream")?)?,
                    partition: PartitionId::from(field("partition")?),
                    consent: parse_guid(
                        &file,
                        &format!("{key}[{index}].consent"),
                        field("consent")?,
                    )?,
                };
                list.push(consent);
            }
            consents.insert(producer_tenant, list);
        }
        Ok(consents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let folder = dir.join(".dolittle");
        std::fs::create_dir_all(&folder).expect("create .dolittle");
        std::fs::write(folder.join(name), text).expect("write config file");
    }

    fn load(dir: &Path) -> Result<RuntimeConfig, ConfigError> {
        RuntimeConfig::load(Overrides {
            working_dir: Some(dir.to_owned()),
            ..Overrides::default()
        })
    }

    #[test]
    fn no_files_means_the_development_tenant_on_the_embedded_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = load(dir.path()).expect("loads");
        assert_eq!(config.tenants.len(), 1);
        let store = &config.tenants[&TenantId::DEVELOPMENT];
        let expected = dir
            .path()
            .join(".dolittle/data/445f8ea8-1a6f-40d7-b2fc-796dba92dc44.db");
        assert_eq!(store, &EventStoreConfig::Embedded { path: expected });
        assert_eq!(config.private.port, 50053);
        assert_eq!(config.public.port, 50052);
        assert_eq!(config.metrics.port, 9700);
        assert_eq!(config.management.port, 51052);
        assert_eq!(config.management.host, IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn ports_come_from_files_then_environment_then_flags() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "endpoints.json",
            r#"{"public": {"port": 1}, "private": {"port": 2}, "management": {"port": 3}}"#,
        );
        write(dir.path(), "metrics.json", r#"{"Port": 4}"#);
        let config = load(dir.path()).expect("loads");
        assert_eq!(
            (
                config.public.port,
                config.private.port,
                config.management.port,
                config.metrics.port
            ),
            (1, 2, 3, 4)
        );

        let environment = HashMap::from([
            ("DOLITTLE_PRIVATE_PORT".to_owned(), "20".to_owned()),
            ("DOLITTLE_METRICS_PORT".to_owned(), "40".to_owned()),
        ]);
        let from_environment =
            Overrides::from_environment(&environment).expect("environment parses");
        let flags = Overrides {
            private_port: Some(200),
            working_dir: Some(dir.path().to_owned()),
            ..Overrides::default()
        };
        let config = RuntimeConfig::load(from_environment.overridden_by(flags)).expect("loads");
        assert_eq!(
            (config.private.port, config.metrics.port, config.public.port),
            (200, 40, 1)
        );
    }

    #[test]
    fn resources_pick_the_backend_per_tenant() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = "445f8ea8-1a6f-40d7-b2fc-796dba92dc44";
        let second = "7a9d3e1c-5b2f-4c8e-9d1a-2f3b4c5d6e7f";
        write(
            dir.path(),
            "tenants.json",
            &format!(r#"{{"{first}": {{}}, "{second}": {{}}}}"#),
        );
        write(
            dir.path(),
            "resources.json",
            &format!(
                r#"{{"{second}": {{"eventStore": {{"postgres": {{"connectionString": "postgres://postgres@127.0.0.1/db"}}}}}}}}"#
            ),
        );
        let config = load(dir.path()).expect("loads");
        assert!(matches!(
            config.tenants[&TenantId::DEVELOPMENT],
            EventStoreConfig::Embedded { .. }
        ));
        let second: TenantId = second.parse().expect("guid");
        assert_eq!(
            config.tenants[&second],
            EventStoreConfig::Postgres {
                connection_string: "postgres://postgres@127.0.0.1/db".into(),
                schema: "public".into(),
                max_connections: 16
            }
        );
    }

    #[test]
    fn the_mongodb_shape_is_refused_with_what_to_write_instead() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "resources.json",
            r#"{"445f8ea8-1a6f-40d7-b2fc-796dba92dc44": {"eventStore": {"servers": ["localhost"], "database": "event_store"}}}"#,
        );
        let error = load(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("resources.json"), "{error}");
        assert!(error.contains("MongoDB is not supported"), "{error}");
        assert!(error.contains("postgres"), "{error}");
    }

    #[test]
    fn invalid_files_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "tenants.json", r#"{"not-a-guid": {}}"#);
        let error = load(dir.path()).expect_err("refused");
        assert!(error.file.ends_with("tenants.json"));
        assert_eq!(error.key, "not-a-guid");

        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "endpoints.json",
            r#"{"private": {"port": 70000}}"#,
        );
        let error = load(dir.path()).expect_err("refused");
        assert_eq!(error.key, "private.port");

        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "metrics.json", "{ not json");
        let error = load(dir.path()).expect_err("refused").to_string();
        assert!(
            error.contains("metrics.json") && error.contains("not valid JSON"),
            "{error}"
        );
    }

    #[test]
    fn two_tenants_on_one_store_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = "445f8ea8-1a6f-40d7-b2fc-796dba92dc44";
        let second = "7a9d3e1c-5b2f-4c8e-9d1a-2f3b4c5d6e7f";
        write(
            dir.path(),
            "tenants.json",
            &format!(r#"{{"{first}": {{}}, "{second}": {{}}}}"#),
        );
        let shared = r#"{"eventStore": {"embedded": {"path": "same.db"}}}"#;
        write(
            dir.path(),
            "resources.json",
            &format!(r#"{{"{first}": {shared}, "{second}": {shared}}}"#),
        );
        let error = load(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("share the same store"), "{error}");
    }

    #[test]
    fn a_file_found_twice_is_an_error_naming_both() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "tenants.json",
            r#"{"445f8ea8-1a6f-40d7-b2fc-796dba92dc44": {}}"#,
        );
        std::fs::write(dir.path().join("tenants.json"), "{}").expect("write");
        let error = load(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("found more than once"), "{error}");
    }

    #[test]
    fn consents_and_microservices_are_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "microservices.json",
            r#"{"7a1c1f5e-3d2b-4c8e-9f10-2b6d8e4a9c01": {"host": "producer", "port": 50052}}"#,
        );
        write(
            dir.path(),
            "event-horizon-consents.json",
            r#"{"445f8ea8-1a6f-40d7-b2fc-796dba92dc44": [{"microservice": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e", "tenant": "445f8ea8-1a6f-40d7-b2fc-796dba92dc44", "stream": "8c9d0e1f-2a3b-4c4d-9e5f-6a7b8c9d0e1f", "partition": "00000000-0000-0000-0000-000000000000", "consent": "11111111-2222-3333-4444-555555555555"}]}"#,
        );
        let config = load(dir.path()).expect("loads");
        assert_eq!(config.microservices.len(), 1);
        assert_eq!(config.consents[&TenantId::DEVELOPMENT].len(), 1);
        assert_eq!(
            config.consents[&TenantId::DEVELOPMENT][0].partition,
            PartitionId::unpartitioned()
        );
    }

    #[test]
    fn consents_are_read_again_and_their_file_stamp_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = load(dir.path()).expect("loads");
        assert!(config.consents.is_empty());
        assert_eq!(config.location.consents_stamp(), None);
        write(
            dir.path(),
            "event-horizon-consents.json",
            r#"{"445f8ea8-1a6f-40d7-b2fc-796dba92dc44": [{"microservice": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e", "tenant": "445f8ea8-1a6f-40d7-b2fc-796dba92dc44", "stream": "8c9d0e1f-2a3b-4c4d-9e5f-6a7b8c9d0e1f", "partition": "p", "consent": "11111111-2222-3333-4444-555555555555"}]}"#,
        );
        let stamp = config.location.consents_stamp();
        assert!(stamp.is_some());
        let consents = config.location.read_consents().expect("reads");
        assert_eq!(
            consents[&TenantId::DEVELOPMENT][0].partition,
            PartitionId::from("p")
        );
        write(dir.path(), "event-horizon-consents.json", "{}");
        assert_ne!(
            config.location.consents_stamp(),
            stamp,
            "the length changed"
        );
        assert!(config.location.read_consents().expect("reads").is_empty());
    }
}
