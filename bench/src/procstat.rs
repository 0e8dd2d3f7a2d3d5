//! Resident memory and CPU time of the gateway and node processes during a run, sampled from
//! `/proc` on a thread of its own so that a busy runtime does not skew the sampling.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Process names `--pids-auto` looks for (as in `/proc/PID/comm`, at most 15 characters).
pub const AUTO_NAMES: [&str; 2] = ["sixfold-gateway", "sixfold-node"];

/// A process to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    pub name: String,
    pub role: String,
}

impl Target {
    /// `name` is the process's comm; the role follows from it.
    pub fn new(pid: u32, name: String) -> Self {
        let role = role_of(&name).to_string();
        Target { pid, name, role }
    }

    /// A process by pid, named from `/proc/PID/comm`.
    pub fn from_pid(pid: u32) -> std::io::Result<Self> {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
        Ok(Target::new(pid, comm.trim().to_string()))
    }
}

fn role_of(name: &str) -> &'static str {
    match name {
        "sixfold-gateway" => "gateway",
        "sixfold-node" => "node",
        "sixfold-bench" => "bench",
        _ => "other",
    }
}

/// Processes whose `/proc/PID/comm` is one of `names`, sorted by pid.
pub fn find_by_name(names: &[&str]) -> Vec<Target> {
    find_in(Path::new("/proc"), names)
}

fn find_in(proc_root: &Path, names: &[&str]) -> Vec<Target> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut found: Vec<Target> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim();
            names
                .contains(&comm)
                .then(|| Target::new(pid, comm.to_string()))
        })
        .collect();
    found.sort_by_key(|t| t.pid);
    found
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15 (proc(5)).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant; it has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

#[derive(Debug, Clone)]
struct Track {
    target: Target,
    rss_first_kib: Option<u64>,
    rss_peak_kib: u64,
    rss_last_kib: Option<u64>,
    cpu_first: Option<u64>,
    cpu_last: Option<u64>,
    /// CPU ticks when each phase began, in order.
    marks: Vec<(String, Option<u64>)>,
    exited: bool,
}

impl Track {
    fn new(target: Target) -> Self {
        Track {
            target,
            rss_first_kib: None,
            rss_peak_kib: 0,
            rss_last_kib: None,
            cpu_first: None,
            cpu_last: None,
            marks: Vec::new(),
            exited: false,
        }
    }

    fn sample(&mut self) {
        if self.exited {
            return;
        }
        let pid = self.target.pid;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        match (status, stat) {
            (Ok(status), Ok(stat)) => {
                if let Some(rss) = parse_status_rss_kib(&status) {
                    self.rss_first_kib.get_or_insert(rss);
                    self.rss_peak_kib = self.rss_peak_kib.max(rss);
                    self.rss_last_kib = Some(rss);
                }
                if let Some(cpu) = parse_stat_cpu_ticks(&stat) {
                    self.cpu_first.get_or_insert(cpu);
                    self.cpu_last = Some(cpu);
                }
            }
            _ => self.exited = true,
        }
    }
}

/// Per-process figures for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub pid: u32,
    pub name: String,
    pub role: String,
    pub rss_start_mib: Option<f64>,
    pub rss_peak_mib: f64,
    pub rss_end_mib: Option<f64>,
    /// CPU time (user + system) used between the start and the end of the run.
    pub cpu_seconds: f64,
    /// CPU time per phase (`upload`, `download`), when the phase ran.
    pub cpu_seconds_by_phase: std::collections::BTreeMap<String, f64>,
    /// The process was gone before the run ended.
    pub exited: bool,
}

/// Samples a set of processes until stopped.
pub struct Sampler {
    tracks: Arc<Mutex<Vec<Track>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    interval: Duration,
}

impl Sampler {
    /// Takes a first sample now, then one every `interval` on a background thread.
    pub fn start(targets: Vec<Target>, interval: Duration) -> Self {
        let mut tracks: Vec<Track> = targets.into_iter().map(Track::new).collect();
        tracks.iter_mut().for_each(Track::sample);
        let tracks = Arc::new(Mutex::new(tracks));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let tracks = Arc::clone(&tracks);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("procstat".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(interval);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        sample_all(&tracks);
                    }
                })
                .map_err(|e| tracing::warn!("cannot start the process sampler thread: {e}"))
                .ok()
        };
        Sampler {
            tracks,
            stop,
            thread,
            interval,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records the start of a phase: CPU time from here to the next mark is the phase's.
    pub fn mark(&self, phase: &str) {
        let mut tracks = lock(&self.tracks);
        for t in tracks.iter_mut() {
            t.sample();
            let cpu = t.cpu_last;
            t.marks.push((phase.to_string(), cpu));
        }
    }

    /// Takes a last sample and returns the figures per process.
    pub fn stop(mut self) -> Vec<ProcessStats> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(th) = self.thread.take() {
            th.thread().unpark();
            let _ = th.join();
        }
        let mut tracks = lock(&self.tracks);
        let hz = clock_ticks_per_second();
        tracks
            .iter_mut()
            .map(|t| {
                t.sample();
                stats_of(t, hz)
            })
            .collect()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(th) = self.thread.take() {
            th.thread().unpark();
            let _ = th.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn sample_all(tracks: &Mutex<Vec<Track>>) {
    lock(tracks).iter_mut().for_each(Track::sample);
}

const KIB_PER_MIB: f64 = 1024.0;

fn stats_of(t: &Track, hz: f64) -> ProcessStats {
    let ticks = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / hz,
        _ => 0.0,
    };
    let mut by_phase = std::collections::BTreeMap::new();
    for (i, (phase, start)) in t.marks.iter().enumerate() {
        let end = t.marks.get(i + 1).and_then(|m| m.1).or(t.cpu_last);
        by_phase.insert(phase.clone(), ticks(*start, end));
    }
    ProcessStats {
        pid: t.target.pid,
        name: t.target.name.clone(),
        role: t.target.role.clone(),
        rss_start_mib: t.rss_first_kib.map(|k| k as f64 / KIB_PER_MIB),
        rss_peak_mib: t.rss_peak_kib as f64 / KIB_PER_MIB,
        rss_end_mib: t.rss_last_kib.map(|k| k as f64 / KIB_PER_MIB),
        cpu_seconds: ticks(t.cpu_first, t.cpu_last),
        cpu_seconds_by_phase: by_phase,
        exited: t.exited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vmrss() {
        let status = "Name:\tsixfold-node\nVmPeak:\t  100 kB\nVmRSS:\t   23456 kB\nThreads:\t4\n";
        assert_eq!(parse_status_rss_kib(status), Some(23456));
        assert_eq!(parse_status_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn parses_cpu_ticks_even_with_odd_names() {
        let fields_after: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        // Field 14 (utime) is "14" and field 15 (stime) "15" in this synthetic line.
        let line =
            format!("1234 (we ird) name)) {}", fields_after.join(" ")).replacen("3 ", "S ", 1);
        assert_eq!(parse_stat_cpu_ticks(&line), Some(14 + 15));
        assert_eq!(parse_stat_cpu_ticks("1234 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = Target::from_pid(std::process::id()).unwrap();
        assert!(!me.name.is_empty());
        let sampler = Sampler::start(vec![me], Duration::from_millis(5));
        sampler.mark("upload");
        // Burn a little CPU so the figures have something to show; the assertion does not
        // depend on how much.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        sampler.mark("download");
        let stats = sampler.stop();
        assert_eq!(stats.len(), 1);
        let s = &stats[0];
        assert_eq!(s.pid, std::process::id());
        assert!(s.rss_peak_mib > 0.0);
        assert!(s.rss_start_mib.is_some() && s.rss_end_mib.is_some());
        assert!(!s.exited);
        assert_eq!(
            s.cpu_seconds_by_phase.keys().collect::<Vec<_>>(),
            vec!["download", "upload"]
        );
    }

    #[test]
    fn a_vanished_process_is_marked_exited() {
        // Pid numbers above pid_max (at most 2^22) never exist.
        let ghost = Target::new(4_194_305 + 17, "sixfold-node".into());
        assert_eq!(ghost.role, "node");
        let stats = Sampler::start(vec![ghost], Duration::from_millis(50)).stop();
        assert!(stats[0].exited);
        assert_eq!(stats[0].rss_start_mib, None);
    }

    #[test]
    fn finds_processes_by_comm() {
        let root = tempfile::tempdir().unwrap();
        for (pid, comm) in [
            ("10", "sixfold-node\n"),
            ("7", "sixfold-gateway\n"),
            ("12", "bash\n"),
        ] {
            std::fs::create_dir(root.path().join(pid)).unwrap();
            std::fs::write(root.path().join(pid).join("comm"), comm).unwrap();
        }
        std::fs::create_dir(root.path().join("self")).unwrap();
        let found = find_in(root.path(), &AUTO_NAMES);
        assert_eq!(
            found,
            vec![
                Target::new(7, "sixfold-gateway".into()),
                Target::new(10, "sixfold-node".into())
            ]
        );
        assert_eq!(found[0].role, "gateway");
    }
}
