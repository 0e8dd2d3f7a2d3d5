//! SIGTERM and SIGINT without async-signal-safety worries: the signals are blocked in every
//! thread (the mask is inherited, so [`block_termination_signals`] runs first thing in `main`,
//! before any thread exists) and one dedicated thread takes them with `sigwait`, then runs
//! ordinary code. monoio has no signal support, and the shard runtimes never see a signal.

use std::io;
use std::mem::MaybeUninit;
use std::thread::JoinHandle;

/// A signal asking the node to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Interrupt,
}

impl StopSignal {
    fn from_raw(sig: libc::c_int) -> Option<Self> {
        match sig {
            libc::SIGTERM => Some(StopSignal::Terminate),
            libc::SIGINT => Some(StopSignal::Interrupt),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        }
    }
}

/// The blocked set, proof that [`block_termination_signals`] ran.
pub struct BlockedSignals(libc::sigset_t);

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts afterwards.
pub fn block_termination_signals() -> io::Result<BlockedSignals> {
    block(&[libc::SIGTERM, libc::SIGINT])
}

fn block(signals: &[libc::c_int]) -> io::Result<BlockedSignals> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only touches that set and
    // gets valid signal numbers.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        let mut set = set.assume_init();
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        set
    };
    // SAFETY: `set` is an initialised sigset_t; the old mask is not wanted (null).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(BlockedSignals(set))
}

/// Starts the thread that waits for the blocked signals and calls `on_signal` for each, with
/// the number of stop signals seen so far (1 for the first). It runs until the process exits.
pub fn spawn_signal_thread<F>(blocked: BlockedSignals, on_signal: F) -> io::Result<JoinHandle<()>>
where
    F: Fn(StopSignal, u32) + Send + 'static,
{
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut count = 0u32;
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: the set is initialised and blocked in this thread (inherited, and
                // sigwait only returns signals of the set); `sig` is a valid out pointer.
                let rc = unsafe { libc::sigwait(&blocked.0, &mut sig) };
                if rc != 0 {
                    tracing::error!(
                        error = %io::Error::from_raw_os_error(rc),
                        "sigwait failed; stop signals are no longer handled"
                    );
                    return;
                }
                if let Some(signal) = StopSignal::from_raw(sig) {
                    count += 1;
                    on_signal(signal, count);
                } else {
                    tracing::debug!(sig, "ignoring signal");
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::mpsc;

    use super::*;

    /// Sends SIGINT to the signal thread only (`pthread_kill`), so the test process and the
    /// other tests never see it.
    #[test]
    fn signal_thread_reports_each_stop_signal_with_a_count() {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        // Block in a helper thread whose children inherit the mask, as `main` does.
        let handle = std::thread::spawn(move || {
            let blocked = block(&[libc::SIGINT, libc::SIGTERM]).unwrap();
            let h = spawn_signal_thread(blocked, move |sig, n| {
                tx.send((sig, n)).unwrap();
            })
            .unwrap();
            ready_tx.send(h.as_pthread_t()).unwrap();
            // Keep the JoinHandle alive (detaching is fine too; the thread loops forever).
            std::mem::forget(h);
        });
        handle.join().unwrap();
        let thread = ready_rx.recv().unwrap();
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the thread is alive (it loops in sigwait forever) and has the signal
            // blocked, so it stays pending until sigwait takes it.
            assert_eq!(unsafe { libc::pthread_kill(thread, sig) }, 0);
        }
        assert_eq!(rx.recv().unwrap(), (StopSignal::Interrupt, 1));
        assert_eq!(rx.recv().unwrap(), (StopSignal::Terminate, 2));
    }
}
