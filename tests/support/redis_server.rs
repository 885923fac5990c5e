//! A throwaway `redis-server` for integration tests.
//!
//! Include it with
//!
//! ```ignore
//! #[path = "support/redis_server.rs"]
//! mod redis_server;
//! ```
//!
//! Every [`RedisServer`] is its own child process on a free loopback port, with its own
//! temporary directory, append-only file and `appendfsync always` (so a `kill -9` loses
//! nothing that was acknowledged). It never uses port 6379, so a system-wide service does
//! not matter. Only std is used, so it works from sync tests and from async ones alike
//! (its calls block, for at most the bounds documented on each).
//!
//! A missing `redis-server` fails the test with instructions ([`require_redis_server`]):
//! tests never skip silently.
#![allow(dead_code, unreachable_pub)]

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to accept connections (per start, and per restart).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`RedisServer::cli`] lets `redis-cli` run before killing it.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports [`RedisServer::start`] tries when the one it picked gets taken
/// between choosing it and the server binding it.
const PORT_ATTEMPTS: usize = 5;

/// The pause between two readiness probes.
const POLL: Duration = Duration::from_millis(20);

/// Where Debian's `redis-server` package installs the server.
const DEBIAN_REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Where Debian's `redis-tools` package installs the command-line client.
const DEBIAN_REDIS_CLI: &str = "/usr/bin/redis-cli";

/// The message of every failure caused by a missing Redis installation.
const NOT_INSTALLED: &str = "redis-server is not installed: run `bash .ci/test` (it installs it with apt-get) or `apt-get install -y redis-server redis-tools`";

/// The server's own log file, inside its directory.
const LOG_FILE: &str = "redis.log";

/// What the server writes to stdout and stderr (configuration errors, before the log
/// file is open), inside its directory.
const OUTPUT_FILE: &str = "redis.output";

/// Panics, with installation instructions, unless `redis-server` is available (at
/// `/usr/bin/redis-server` or on `PATH`). [`RedisServer::start`] and
/// [`RedisServer::start_with`] call it first.
pub fn require_redis_server() {
    if redis_server_binary().is_none() {
        panic!("{NOT_INSTALLED}");
    }
}

/// The `redis-server` binary: Debian's, else the first one on `PATH`.
fn redis_server_binary() -> Option<PathBuf> {
    find_binary(DEBIAN_REDIS_SERVER, "redis-server")
}

/// The `redis-cli` binary: Debian's, else the first one on `PATH`.
pub fn redis_cli_binary() -> Option<PathBuf> {
    find_binary(DEBIAN_REDIS_CLI, "redis-cli")
}

fn find_binary(preferred: &str, name: &str) -> Option<PathBuf> {
    let preferred = Path::new(preferred);
    if preferred.is_file() {
        return Some(preferred.to_path_buf());
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A `redis-server` child process on its own loopback port and in its own temporary
/// directory. Dropping it kills the process (`SIGKILL`) and removes the directory; that
/// also happens when a test panics, since `Drop` runs while unwinding.
#[derive(Debug)]
pub struct RedisServer {
    /// The running server; `None` after [`RedisServer::kill9`].
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a server with the default arguments (no password) and waits until it
    /// accepts connections.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed, or the server is not ready within
    /// [`READY_TIMEOUT`]; the message includes the tail of its log.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server with `extra_args` appended to the default arguments (for example
    /// `&["--requirepass", "secret"]`) and waits until it accepts connections. The same
    /// arguments are used again by [`RedisServer::restart`].
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`], and also if the server exits at once (for example on
    /// an invalid argument).
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        require_redis_server();
        let binary = redis_server_binary().expect(NOT_INSTALLED);
        let dir = make_temp_dir();
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            binary,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match server.launch(port, Instant::now() + READY_TIMEOUT) {
                Ok(child) => {
                    server.port = port;
                    server.child = Some(child);
                    return server;
                }
                Err(Failure::PortTaken(_)) => taken.push(port),
                Err(Failure::Fatal(message)) => panic!("{message}"),
            }
        }
        // `server` is dropped while unwinding: its directory is removed.
        panic!(
            "redis-server could not bind a free port in {PORT_ATTEMPTS} attempts (ports {taken:?} were taken){}",
            server.log_tail()
        );
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The loopback port the server listens on; it stays the same across
    /// [`RedisServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (append-only file, log); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id of the running server, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The extra arguments given to [`RedisServer::start_with`].
    pub fn extra_args(&self) -> &[String] {
        &self.extra_args
    }

    /// Kills the server with `SIGKILL` (no shutdown, no final fsync) and waits for it to
    /// exit. Does nothing if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `kill` fails only if the child has already exited (and been reaped), which
            // is what we want anyway.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same port, in the same directory (so it reloads
    /// its append-only file) and with the same arguments, and waits until it accepts
    /// connections. A server still running is first killed as by
    /// [`RedisServer::kill9`]. If the port is briefly unavailable, retries for up to
    /// [`READY_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// If the server is not ready within [`READY_TIMEOUT`].
    pub fn restart(&mut self) {
        self.kill9();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.launch(self.port, deadline) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(Failure::PortTaken(message)) => {
                    if Instant::now() >= deadline {
                        panic!(
                            "redis-server could not be restarted on port {} within {READY_TIMEOUT:?}: {message}",
                            self.port
                        );
                    }
                    thread::sleep(Duration::from_millis(50));
                }
                Err(Failure::Fatal(message)) => panic!("{message}"),
            }
        }
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT --no-auth-warning ARGS...` and returns its
    /// standard output, trimmed. Pass `"-a", "password"` in `args` for a server with a
    /// password. An error reply (`ERR ...`, `NOAUTH ...`) is output like any other reply,
    /// so it is returned, not a panic; a nil reply is the empty string.
    ///
    /// # Panics
    ///
    /// If `redis-cli` is not installed, exits unsuccessfully (for example when it cannot
    /// connect), or runs longer than [`CLI_TIMEOUT`] (it is then killed); the message
    /// includes its standard error.
    pub fn cli(&self, args: &[&str]) -> String {
        match self.try_cli(args) {
            Ok(stdout) => stdout,
            Err(message) => panic!("{message}"),
        }
    }

    /// As [`RedisServer::cli`], but returns a failure (with `redis-cli`'s standard error)
    /// instead of panicking; still panics if `redis-cli` is not installed.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let binary =
            redis_cli_binary().unwrap_or_else(|| panic!("redis-cli is missing; {NOT_INSTALLED}"));
        let port = self.port.to_string();
        let mut command = Command::new(&binary);
        command
            .args(["-h", "127.0.0.1", "-p", &port, "--no-auth-warning"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("redis-cli -p {port} {}", args.join(" "));
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
        // Read both pipes on their own threads, so that a large output cannot fill a pipe
        // and stall the client while we wait for it to exit.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + CLI_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("`{shown}`: cannot wait for it: {error}"));
                }
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        match status {
            Some(status) if status.success() => Ok(stdout.trim().to_string()),
            Some(status) => Err(format!(
                "`{shown}` failed ({status}); stderr: {}; stdout: {}",
                stderr.trim(),
                stdout.trim()
            )),
            None => Err(format!(
                "`{shown}` did not finish within {CLI_TIMEOUT:?} and was killed; stderr: {}; stdout: {}",
                stderr.trim(),
                stdout.trim()
            )),
        }
    }

    /// The last lines of the server's log and output, formatted to end a panic message.
    pub fn log_tail(&self) -> String {
        let mut tail = String::new();
        for name in [OUTPUT_FILE, LOG_FILE] {
            let path = self.dir.join(name);
            if let Ok(text) = fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let from = lines.len().saturating_sub(30);
                tail.push_str(&format!("\n--- last lines of {} ---\n", path.display()));
                tail.push_str(&lines[from..].join("\n"));
            }
        }
        if tail.is_empty() {
            tail.push_str(" (the server wrote no log)");
        }
        tail
    }

    /// The password given with `--requirepass`, if any (the last one wins, as in Redis).
    fn password(&self) -> Option<&str> {
        let mut password = None;
        let mut args = self.extra_args.iter();
        while let Some(arg) = args.next() {
            if arg == "--requirepass" {
                password = args.next().map(String::as_str);
            }
        }
        password
    }

    /// Spawns the server on `port` and waits, until `deadline`, for it to be ready.
    fn launch(&self, port: u16, deadline: Instant) -> Result<Child, Failure> {
        let log_path = self.dir.join(LOG_FILE);
        // Only what the server logs from now on tells why this launch failed.
        let log_offset = fs::metadata(&log_path).map(|meta| meta.len()).unwrap_or(0);
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(OUTPUT_FILE))
            .unwrap_or_else(|error| panic!("cannot create the redis-server output file: {error}"));
        let output_err = output
            .try_clone()
            .unwrap_or_else(|error| panic!("cannot duplicate the output file: {error}"));
        let port_text = port.to_string();
        let mut command = Command::new(&self.binary);
        command
            .arg("--port")
            .arg(&port_text)
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .args(["--maxmemory-policy", "noeviction"])
            .args(["--protected-mode", "yes"])
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(&log_path)
            .args(&self.extra_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_err);
        let mut child = command.spawn().map_err(|error| {
            Failure::Fatal(format!("cannot start {}: {error}", self.binary.display()))
        })?;
        let pid = child.id();
        let password = self.password();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Err(self.exited(port, status, &log_path, log_offset));
                }
                Ok(None) => {}
                Err(error) => {
                    kill(&mut child);
                    return Err(Failure::Fatal(format!(
                        "cannot wait for redis-server: {error}"
                    )));
                }
            }
            let last = match probe(port, password, pid) {
                Probe::Ready => return Ok(child),
                Probe::NotYet(why) => why,
                Probe::Foreign(why) => {
                    // Another process answers on the port: ours cannot have bound it.
                    kill(&mut child);
                    return Err(Failure::PortTaken(why));
                }
            };
            if Instant::now() >= deadline {
                kill(&mut child);
                return Err(Failure::Fatal(format!(
                    "redis-server on port {port} did not accept connections within {READY_TIMEOUT:?} (last probe: {last}){}",
                    self.log_tail()
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// Why a server that exited during its start failed.
    fn exited(&self, port: u16, status: ExitStatus, log_path: &Path, offset: u64) -> Failure {
        let mut fresh = String::new();
        if let Ok(mut file) = File::open(log_path) {
            let mut bytes = Vec::new();
            if io::Seek::seek(&mut file, io::SeekFrom::Start(offset)).is_ok()
                && file.read_to_end(&mut bytes).is_ok()
            {
                fresh = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        if fresh.contains("Address already in use") {
            Failure::PortTaken(format!("port {port} is in use ({status})"))
        } else {
            Failure::Fatal(format!(
                "redis-server on port {port} exited during its start ({status}){}",
                self.log_tail()
            ))
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Why one launch of the server failed.
enum Failure {
    /// The port is used by another process: try again (on another port, or later).
    PortTaken(String),
    /// Anything else: give up with this message.
    Fatal(String),
}

/// The outcome of one readiness probe.
enum Probe {
    /// Our server answers `PONG` (or `NOAUTH`, when the password is not known).
    Ready,
    /// Not listening, or still loading; the reason, for the panic message.
    NotYet(String),
    /// Someone else's server answers on the port.
    Foreign(String),
}

/// Kills and reaps a child.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Connects to `port` and sends `AUTH` (if a password is known), `PING` and `INFO
/// server`. Ready means `+PONG` (so the data set is loaded: Redis answers `-LOADING`
/// until then) from the process `pid`, or `-NOAUTH` when no password is known (the
/// process id cannot be checked then).
fn probe(port: u16, password: Option<&str>, pid: u32) -> Probe {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = match TcpStream::connect_timeout(&addr, Duration::from_millis(250)) {
        Ok(stream) => stream,
        Err(error) => return Probe::NotYet(format!("connect: {error}")),
    };
    let timeout = Some(Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return Probe::NotYet("cannot set socket timeouts".to_string());
    }
    let mut request = Vec::new();
    if let Some(password) = password {
        request.extend(resp_command(&["AUTH", password]));
    }
    request.extend(resp_command(&["PING"]));
    request.extend(resp_command(&["INFO", "server"]));
    let mut writer = &stream;
    if let Err(error) = writer.write_all(&request) {
        return Probe::NotYet(format!("send: {error}"));
    }
    let mut reader = BufReader::new(&stream);
    let mut replies = Vec::new();
    for _ in 0..(2 + usize::from(password.is_some())) {
        match read_reply(&mut reader) {
            Ok(reply) => replies.push(reply),
            Err(error) => return Probe::NotYet(format!("read: {error}")),
        }
    }
    let mut replies = replies.into_iter();
    if password.is_some() {
        let auth = replies.next().unwrap_or_default();
        if !auth.starts_with("+OK") {
            return Probe::NotYet(format!("AUTH answered {auth:?}"));
        }
    }
    let ping = replies.next().unwrap_or_default();
    let info = replies.next().unwrap_or_default();
    if ping.starts_with("-NOAUTH") && password.is_none() {
        return Probe::Ready;
    }
    if !ping.starts_with("+PONG") {
        return Probe::NotYet(format!("PING answered {ping:?}"));
    }
    let their_pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|value| value.trim().parse::<u32>().ok());
    match their_pid {
        Some(their_pid) if their_pid == pid => Probe::Ready,
        Some(their_pid) => Probe::Foreign(format!(
            "port {port} is served by process {their_pid}, not by ours ({pid})"
        )),
        None => Probe::NotYet(format!("INFO server answered {info:?}")),
    }
}

/// A command in the Redis protocol (an array of bulk strings).
fn resp_command(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend(format!("${}\r\n", part.len()).into_bytes());
        out.extend(part.as_bytes());
        out.extend(b"\r\n");
    }
    out
}

/// Reads one reply: a simple string, error or integer as its line (with its type
/// byte), a bulk string as its contents.
fn read_reply(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let line = line.trim_end().to_string();
    let Some(len) = line.strip_prefix('$') else {
        return Ok(line);
    };
    let len: i64 = len
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, line.clone()))?;
    if len < 0 {
        return Ok(String::new());
    }
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, line.clone()))?;
    let mut bytes = vec![0; len + 2];
    reader.read_exact(&mut bytes)?;
    bytes.truncate(len);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads a pipe to its end on a new thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A loopback port nobody listens on right now (the kernel's choice for port 0).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|error| panic!("cannot bind a loopback port: {error}"));
    listener
        .local_addr()
        .unwrap_or_else(|error| panic!("cannot read the bound port: {error}"))
        .port()
}

/// Creates `atr-redis-<pid>-<counter>-<nanos>` under the system's temporary directory.
pub fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = env::temp_dir();
    for _ in 0..100 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "atr-redis-{}-{counter}-{nanos}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => panic!("cannot create {}: {error}", dir.display()),
        }
    }
    panic!(
        "cannot create a unique temporary directory under {}",
        base.display()
    );
}
