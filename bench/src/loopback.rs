//! The host's own CPU cost of moving bytes through its kernel: a number of bytes sent over one
//! TCP connection on 127.0.0.1 between two threads of this process, 256 KiB per write and per
//! read, and the CPU time both threads spent on it (their own clocks, so the rest of the bench
//! does not count).
//!
//! Most of what a cluster on one host spends per byte is copies of this kind (the client's TCP
//! to the gateway, the gateway's UDP to the nodes) and work that runs at the same memory speed.
//! On a shared host that speed moves from hour to hour with the neighbours' load, which the
//! steal figure does not show. A cluster's CPU-s per GiB divided by this figure, measured in the
//! same run, is what can be compared between runs on different hosts or at different times.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::report::GIB;

/// Bytes per write and per read.
pub const PIECE: usize = 256 * 1024;
/// How long either end waits for the other before it gives up.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The figures of one measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopbackReport {
    pub method: String,
    pub bytes: u64,
    pub seconds: f64,
    /// CPU seconds of the sending and the receiving thread together.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per GiB sent.
    pub cpu_seconds_per_gib: Option<f64>,
    pub mb_per_s: f64,
    /// Why it could not be measured.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(io::Error),
    #[error("cannot connect over loopback: {0}")]
    Connect(io::Error),
    #[error("loopback send failed after {sent} bytes: {source}")]
    Send { sent: u64, source: io::Error },
    #[error("loopback receive failed after {received} bytes: {source}")]
    Receive { received: u64, source: io::Error },
    #[error("loopback receiver got {received} bytes of {sent}")]
    Short { sent: u64, received: u64 },
    #[error("the loopback thread failed: {0}")]
    Thread(String),
}

/// What one end did: bytes moved and its thread's CPU seconds.
struct End {
    bytes: u64,
    cpu_seconds: f64,
}

/// Measures on two threads of their own; never fails, an error is in the report.
pub fn measure(bytes: u64) -> LoopbackReport {
    match measure_blocking(bytes) {
        Ok((seconds, cpu_seconds)) => LoopbackReport {
            method: method(),
            bytes,
            seconds,
            cpu_seconds,
            cpu_seconds_per_gib: (bytes > 0).then(|| cpu_seconds / (bytes as f64 / GIB)),
            mb_per_s: crate::baseline::mb_per_s(bytes, seconds),
            error: None,
        },
        Err(e) => LoopbackReport::failed(bytes, e.to_string()),
    }
}

impl LoopbackReport {
    /// The report of a measurement that did not complete.
    pub fn failed(bytes: u64, error: String) -> Self {
        LoopbackReport {
            method: method(),
            bytes,
            seconds: 0.0,
            cpu_seconds: 0.0,
            cpu_seconds_per_gib: None,
            mb_per_s: 0.0,
            error: Some(error),
        }
    }
}

fn method() -> String {
    format!("TCP over 127.0.0.1, {} KiB writes and reads", PIECE / 1024)
}

/// Sends `bytes` and returns the wall seconds and the CPU seconds of both ends.
pub fn measure_blocking(bytes: u64) -> Result<(f64, f64), LoopbackError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(LoopbackError::Listen)?;
    let addr = listener.local_addr().map_err(LoopbackError::Listen)?;
    let receiver = std::thread::Builder::new()
        .name("loopback-recv".into())
        .spawn(move || receive(&listener, IO_TIMEOUT))
        .map_err(|e| LoopbackError::Thread(e.to_string()))?;
    let start = Instant::now();
    let sent = send(addr, bytes);
    let received = receiver
        .join()
        .map_err(|_| LoopbackError::Thread("the receiver panicked".into()))?;
    let seconds = start.elapsed().as_secs_f64();
    let (sent, received) = (sent?, received?);
    if received.bytes != sent.bytes {
        return Err(LoopbackError::Short {
            sent: sent.bytes,
            received: received.bytes,
        });
    }
    Ok((seconds, sent.cpu_seconds + received.cpu_seconds))
}

fn send(addr: std::net::SocketAddr, bytes: u64) -> Result<End, LoopbackError> {
    let start_cpu = thread_cpu_seconds();
    let mut stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(LoopbackError::Connect)?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(LoopbackError::Connect)?;
    // Incompressible, though nothing on the way compresses: the same bytes a run sends.
    let mut piece = vec![0u8; PIECE];
    crate::datagen::DataGen::new(0x100b_bac6).fill(0, &mut piece);
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(PIECE as u64) as usize;
        stream
            .write_all(&piece[..n])
            .map_err(|source| LoopbackError::Send { sent, source })?;
        sent += n as u64;
    }
    // Closing is the end of the stream for the receiver.
    drop(stream);
    Ok(End {
        bytes: sent,
        cpu_seconds: thread_cpu_seconds() - start_cpu,
    })
}

fn receive(listener: &TcpListener, timeout: Duration) -> Result<End, LoopbackError> {
    let start_cpu = thread_cpu_seconds();
    let received_err = |received, source| LoopbackError::Receive { received, source };
    let mut stream = accept_within(listener, timeout).map_err(|e| received_err(0, e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| received_err(0, e))?;
    let mut buf = vec![0u8; PIECE];
    let mut received = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(received_err(received, e)),
        }
    }
    Ok(End {
        bytes: received,
        cpu_seconds: thread_cpu_seconds() - start_cpu,
    })
}

/// The first connection to `listener`, or `TimedOut` if none comes within `timeout` (a sender
/// that could not connect must not leave the receiver waiting for ever).
fn accept_within(listener: &TcpListener, timeout: Duration) -> io::Result<TcpStream> {
    use std::os::fd::AsRawFd;
    let mut ready = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `ready` is one valid pollfd for a descriptor `listener` keeps open.
        let rc = unsafe { libc::poll(&mut ready, 1, millis) };
        match rc {
            0 => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            n if n > 0 => return listener.accept().map(|(stream, _)| stream),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// CPU seconds (user and system) of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_every_byte_and_counts_cpu() {
        // Not a whole number of pieces, so the last write is a short one.
        let bytes = 3 * PIECE as u64 + 12_345;
        let r = measure(bytes);
        assert_eq!(r.error, None);
        assert_eq!(r.bytes, bytes);
        assert!(r.cpu_seconds > 0.0, "{r:?}");
        assert!(r.seconds > 0.0 && r.mb_per_s > 0.0, "{r:?}");
        let per_gib = r.cpu_seconds_per_gib.unwrap();
        assert!((per_gib - r.cpu_seconds / (bytes as f64 / GIB)).abs() < 1e-12);
    }

    #[test]
    fn a_receiver_nobody_connects_to_gives_up() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        match receive(&listener, Duration::from_millis(20)) {
            Err(LoopbackError::Receive {
                received: 0,
                source,
            }) => assert_eq!(source.kind(), io::ErrorKind::TimedOut),
            other => panic!("expected a timeout, got {:?}", other.map(|e| e.bytes)),
        }
    }

    #[test]
    fn nothing_to_send_has_no_per_gib_figure() {
        let r = measure(0);
        assert_eq!(r.error, None);
        assert_eq!(r.cpu_seconds_per_gib, None);
    }
}
