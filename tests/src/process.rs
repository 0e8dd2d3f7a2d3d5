//! Finding, starting and stopping the real binaries.

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Path of a workspace binary, built once per test process with the same profile as the tests
/// (so `cargo test` alone is enough: no separate build step to forget).
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let test_exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = test_exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps")
            .to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("debug");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "sixfold-node",
            "-p",
            "sixfold-gateway",
            "-p",
            "sixfold-bench",
        ]);
        // `cargo test` runs this process with the package variables of sixfold-tests set
        // (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...). Build scripts such as ring's declare
        // `rerun-if-env-changed` on those, so passing them on would make this build and the
        // next `cargo test` each rebuild ring and everything above it.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(is_package_env) {
                cmd.env_remove(&key);
            }
        }
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd
            .status()
            .expect("run cargo build for the binaries under test");
        assert!(status.success(), "building the binaries under test failed");
        profile_dir
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Environment variables cargo sets for the crate under test (not for a cargo it runs).
fn is_package_env(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || matches!(
            key,
            "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// A free TCP port on 127.0.0.1 for a server under test.
///
/// Taken below the kernel's ephemeral range: a port the OS hands out for `bind(0)` may be handed
/// out again a moment later as the local port of some outgoing connection (a test that opens
/// hundreds of client sockets does that), and the server would then fail with EADDRINUSE. Each
/// call in this process also gets a port no earlier call got.
pub fn free_tcp_port() -> u16 {
    unclaimed_port(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A free UDP port on 127.0.0.1, for a node's QUIC listener when a test must know (and keep
/// across restarts) the node's address. Chosen like [`free_tcp_port`].
pub fn free_udp_port() -> u16 {
    unclaimed_port(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// Ports handed out so far by this process, as an offset into [`server_port_range`].
static PORTS_HANDED_OUT: AtomicU32 = AtomicU32::new(0);

fn unclaimed_port(free: impl Fn(u16) -> bool) -> u16 {
    let (low, high) = server_port_range();
    let span = u32::from(high - low);
    // Test binaries run one after another, but start where another process is unlikely to be.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = PORTS_HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        let port = low + ((start + n) % span) as u16;
        if free(port) {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// Ports a test server may take: from 10000 up to the start of the ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default).
fn server_port_range() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (10_000, ephemeral_start.max(20_000))
}

/// A child process that is killed (SIGKILL, by PID) and reaped when dropped, so a failing test
/// never leaves servers behind. Its stdout and stderr go to a log file that is printed if the
/// test panics while the process is alive.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, program: &Path, args: &[String], log: PathBuf) -> Proc {
        Proc::spawn_with_env(name, program, args, &[], log)
    }

    /// [`Proc::spawn`] with extra environment variables (`NOTIFY_SOCKET` for readiness tests).
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> Proc {
        let out = File::create(&log).expect("create process log");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("SIXFOLD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal without waiting.
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a PID we spawned and have not reaped yet, so it cannot name
            // an unrelated process.
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }

    /// SIGKILL and reap: what a crash looks like.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; returns the exit code if it exited.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        None
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process's log, at most its last [`LOG_TEXT_LIMIT`] bytes (a runaway log, or one that
    /// is a device like /dev/full, must not exhaust the test's memory).
    pub fn log_text(&self) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(&self.log) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > LOG_TEXT_LIMIT {
            let _ = file.seek(SeekFrom::Start(len - LOG_TEXT_LIMIT));
        }
        let mut bytes = Vec::new();
        let _ = file.take(LOG_TEXT_LIMIT).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Most bytes of a log [`Proc::log_text`] reads.
pub const LOG_TEXT_LIMIT: u64 = 64 << 20;

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            let text = self.log_text();
            let tail: String = text
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("---- last log lines of {} ----\n{tail}", self.name);
        }
        self.kill9();
    }
}
