//! How glibc's allocator keeps freed memory.
//!
//! The gateway's data path allocates and frees buffers of 64 KiB to 1 MiB at a high rate
//! (hyper's read buffers, quinn's datagrams). With glibc's defaults the allocator hands much of
//! that memory back to the kernel as soon as it is freed: blocks above
//! the mmap threshold (128 KiB, raised on the fly up to 32 MiB only after the first free) are
//! mmapped and unmapped one by one, and an arena trims its top once more than twice that
//! threshold is free. Every byte is then faulted in and zeroed by the kernel again on the next
//! allocation: a 1 GiB round trip spent about a tenth of its CPU in page faults
//! (`do_anonymous_page`, `clear_page_erms`), see docs/bench.md.
//!
//! Fixing both thresholds keeps freed memory for reuse. What stays resident is bounded by the
//! process's peak use, which the configured limits (upload memory, pools, windows) already
//! bound; only the lag with which it is returned changes.
//!
//! The node does not take these settings: its data-path memory is its buffer pool, allocated
//! once, and its CPU did not change measurably with them (100 x 64 MiB runs, docs/bench.md), so
//! it keeps glibc's habit of returning memory.

/// The allocator settings applied by [`keep_freed_memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MallocTuning {
    /// Allocations at least this large get their own mapping. Above every data-path buffer (the
    /// largest are 1 MiB), so that none of them is mapped and unmapped per use.
    pub mmap_threshold: usize,
    /// Free memory at the top of an arena beyond this is returned to the kernel.
    pub trim_threshold: usize,
}

impl MallocTuning {
    pub const DATA_PATH: MallocTuning = MallocTuning {
        mmap_threshold: 8 << 20,
        trim_threshold: 64 << 20,
    };
}

/// What [`keep_freed_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The thresholds were set.
    Set(MallocTuning),
    /// `GLIBC_TUNABLES` names malloc settings: the operator's choice wins and nothing is set.
    LeftToOperator,
    /// Not glibc (musl, another OS): nothing to set.
    Unsupported,
    /// glibc refused a value (it returns 0 for a value out of its range).
    Refused,
}

/// Applies [`MallocTuning::DATA_PATH`] unless the operator tuned malloc through
/// `GLIBC_TUNABLES`. Call it first in `main`, before threads start allocating.
pub fn keep_freed_memory() -> Applied {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if operator_tuned(&tunables) {
        return Applied::LeftToOperator;
    }
    apply(MallocTuning::DATA_PATH)
}

/// Whether a `GLIBC_TUNABLES` value sets any `glibc.malloc.*` tunable.
fn operator_tuned(tunables: &str) -> bool {
    tunables
        .split(':')
        .any(|setting| setting.trim_start().starts_with("glibc.malloc."))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply(tuning: MallocTuning) -> Applied {
    let (Ok(mmap), Ok(trim)) = (
        libc::c_int::try_from(tuning.mmap_threshold),
        libc::c_int::try_from(tuning.trim_threshold),
    ) else {
        return Applied::Refused;
    };
    // SAFETY: mallopt only changes allocator parameters; it is called with glibc's own
    // parameter constants and in-range values, and takes the allocator's lock itself.
    let set = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
    };
    if set {
        Applied::Set(tuning)
    } else {
        Applied::Refused
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply(_tuning: MallocTuning) -> Applied {
    Applied::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_tunables_win_only_for_malloc() {
        assert!(operator_tuned("glibc.malloc.trim_threshold=1"));
        assert!(operator_tuned(
            "glibc.rtld.nns=4:glibc.malloc.mmap_threshold=65536"
        ));
        assert!(!operator_tuned(""));
        assert!(!operator_tuned("glibc.rtld.nns=4"));
        assert!(!operator_tuned("glibc.pthread.mutex_spin_count=10"));
    }

    #[test]
    fn data_path_tuning_is_above_every_data_path_buffer_and_within_glibc_range() {
        let t = MallocTuning::DATA_PATH;
        // Data-path buffers are at most 1 MiB; glibc caps the mmap threshold at 32 MiB.
        assert!(t.mmap_threshold > 1 << 20);
        assert!(t.mmap_threshold <= 32 << 20);
        assert!(t.trim_threshold >= t.mmap_threshold);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_data_path_values() {
        assert_eq!(
            apply(MallocTuning::DATA_PATH),
            Applied::Set(MallocTuning::DATA_PATH)
        );
    }
}
