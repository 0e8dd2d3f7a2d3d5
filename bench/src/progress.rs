//! Live progress on stderr: one bar for the phase (bytes, rate, files done) and one per stream.
//! Hidden when disabled or when stderr is not a terminal.

use crate::size::HumanBytes;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};

const TOTAL_TEMPLATE: &str = "{prefix:>9} [{elapsed_precise}] {wide_bar:.cyan/blue} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}";
const STREAM_TEMPLATE: &str = "{prefix:>9} {bar:30.green/white} {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} {msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Progress of one phase (upload or download).
pub struct PhaseProgress {
    phase: String,
    multi: Option<MultiProgress>,
    total: ProgressBar,
    streams: Vec<ProgressBar>,
    files_total: u64,
    files_done: AtomicU64,
    files_failed: AtomicU64,
}

impl PhaseProgress {
    pub fn new(enabled: bool, phase: &str, total_bytes: u64, files: u64, streams: usize) -> Self {
        let multi = enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let add = |pb: ProgressBar| match &multi {
            Some(m) => m.add(pb),
            None => pb,
        };
        let new_bar = |len: u64| {
            if enabled {
                ProgressBar::new(len)
            } else {
                ProgressBar::hidden()
            }
        };
        let total = add(new_bar(total_bytes).with_style(style(TOTAL_TEMPLATE)));
        total.set_prefix(phase.to_string());
        total.set_message(format!("files 0/{files}"));
        let streams = (0..streams)
            .map(|i| {
                let pb = add(new_bar(0).with_style(style(STREAM_TEMPLATE)));
                pb.set_prefix(format!("#{i}"));
                pb
            })
            .collect();
        PhaseProgress {
            phase: phase.to_string(),
            multi,
            total,
            streams,
            files_total: files,
            files_done: AtomicU64::new(0),
            files_failed: AtomicU64::new(0),
        }
    }

    /// Stream `worker` starts a file.
    pub fn start_file(&self, worker: usize, name: &str, size: u64) {
        if let Some(pb) = self.streams.get(worker) {
            pb.reset();
            pb.set_length(size);
            pb.set_message(name.to_string());
        }
    }

    /// Stream `worker` moved `n` bytes.
    pub fn add_bytes(&self, worker: usize, n: u64) {
        self.total.inc(n);
        if let Some(pb) = self.streams.get(worker) {
            pb.inc(n);
        }
    }

    /// Stream `worker` finished a file; a failed file's bytes stay counted as moved.
    pub fn finish_file(&self, worker: usize, ok: bool) {
        let done = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = if ok {
            self.files_failed.load(Ordering::Relaxed)
        } else {
            self.files_failed.fetch_add(1, Ordering::Relaxed) + 1
        };
        let mut msg = format!("files {done}/{}", self.files_total);
        if failed > 0 {
            msg.push_str(&format!(" ({failed} failed)"));
        }
        self.total.set_message(msg);
        if let Some(pb) = self.streams.get(worker) {
            pb.set_message(if ok { "done" } else { "FAILED" });
        }
    }

    /// Replaces the bars with one permanent line for the phase (a bar left on screen would
    /// leave the cursor after it, in the middle of whatever is printed next).
    pub fn finish(&self) {
        for pb in &self.streams {
            pb.finish_and_clear();
        }
        self.total.finish_and_clear();
        if let Some(m) = &self.multi {
            let secs = self.total.elapsed().as_secs_f64();
            let bytes = self.total.position();
            let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
            let line = format!(
                "{:>9} finished: {} in {secs:.1} s ({}/s), {}",
                self.phase,
                HumanBytes(bytes),
                HumanBytes(rate as u64),
                self.total.message()
            );
            let _ = m.clear();
            // Written after the bars are cleared, as a plain line, so that the cursor ends up
            // at the start of the next line. Progress output only ever goes to a terminal.
            if !m.is_hidden() {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }
}
