//! How a file of a given size is cut into contiguous parts (DESIGN §3), and which parts a byte
//! range touches. Pure arithmetic: no I/O, no allocation beyond the returned plan.

use std::fmt;

/// One MiB, the default minimum part size.
pub const MIB: u64 = 1024 * 1024;

/// How files are cut into parts. Both values come from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPolicy {
    /// Number of parts a large file is cut into (default 6).
    pub part_count: u32,
    /// Smallest part worth its own node round trip (default 1 MiB).
    pub min_part_size: u64,
}

impl Default for SplitPolicy {
    fn default() -> Self {
        Self {
            part_count: 6,
            min_part_size: MIB,
        }
    }
}

/// A configuration the split rule cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitPolicyError {
    #[error("part count must be at least 1")]
    ZeroPartCount,
    /// Below this the last of `part_count` equal parts could come out empty or negative
    /// (the rule needs `size > (part_count - 1)^2`, which `min_part_size >= part_count` ensures).
    #[error("minimum part size {min_part_size} must be at least the part count {part_count}")]
    MinPartSizeTooSmall { part_count: u32, min_part_size: u64 },
}

impl SplitPolicy {
    /// Checks the policy once, at configuration time. [`plan`] never panics on a bad policy, but
    /// only a valid one is guaranteed to follow the part-count rule exactly.
    pub fn validate(&self) -> Result<(), SplitPolicyError> {
        if self.part_count == 0 {
            return Err(SplitPolicyError::ZeroPartCount);
        }
        if self.min_part_size < u64::from(self.part_count) {
            return Err(SplitPolicyError::MinPartSizeTooSmall {
                part_count: self.part_count,
                min_part_size: self.min_part_size,
            });
        }
        Ok(())
    }

    /// Size from which a file gets exactly `part_count` parts.
    pub fn full_split_threshold(&self) -> u64 {
        u64::from(self.part_count.max(1)).saturating_mul(self.min_part_size.max(1))
    }
}

/// One part of a file: bytes `[offset, offset + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartRange {
    pub index: u32,
    pub offset: u64,
    pub len: u64,
}

impl PartRange {
    /// One past the last byte of the part.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

impl fmt::Display for PartRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "part {} [{}, {})", self.index, self.offset, self.end())
    }
}

/// Cuts a file of `size` bytes into parts per DESIGN §3.
///
/// - `size >= part_count * min_part_size`: exactly `part_count` parts of `ceil(size / part_count)`
///   bytes, the last one holding the rest;
/// - smaller: `ceil(size / min_part_size)` parts of `min_part_size`, the last one the rest;
/// - empty file: no parts.
///
/// The parts always tile `[0, size)` with no empty part. A zero in the policy is treated as 1.
pub fn plan(size: u64, policy: &SplitPolicy) -> Vec<PartRange> {
    if size == 0 {
        return Vec::new();
    }
    let part_count = u64::from(policy.part_count.max(1));
    let min_part_size = policy.min_part_size.max(1);
    let part_size = if size >= policy.full_split_threshold() {
        size.div_ceil(part_count)
    } else {
        min_part_size
    };
    // Walking the file rather than computing the last part as `size - (n-1) * part_size` keeps
    // every part non-empty even under a policy `validate` would refuse.
    let count = size.div_ceil(part_size);
    let mut parts = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut offset = 0u64;
    let mut index = 0u32;
    while offset < size {
        let len = part_size.min(size - offset);
        parts.push(PartRange { index, offset, len });
        offset += len;
        index += 1;
    }
    parts
}

/// The piece of one part that a byte range covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSlice {
    /// Index of the part (its position in the plan).
    pub index: u32,
    /// Offset of the first wanted byte inside the part.
    pub offset_in_part: u64,
    /// Number of wanted bytes in this part.
    pub len: u64,
}

/// The parts that bytes `start..=end_inclusive` of the file touch, in file order, with the
/// offset and length to read inside each. `parts` must be a plan (sorted, contiguous from 0).
/// An inverted range yields nothing; a range running past the end is cut at the end.
pub fn parts_for_range(
    parts: &[PartRange],
    start: u64,
    end_inclusive: u64,
) -> impl Iterator<Item = PartSlice> + '_ {
    let total = parts.last().map_or(0, PartRange::end);
    // Exclusive end, clamped to the file.
    let end = end_inclusive.saturating_add(1).min(total);
    let first = if start < end {
        // First part whose end lies beyond `start`.
        parts.partition_point(|p| p.end() <= start)
    } else {
        parts.len()
    };
    parts[first..]
        .iter()
        .take_while(move |p| p.offset < end)
        .map(move |p| {
            let from = start.max(p.offset);
            let to = end.min(p.end());
            PartSlice {
                index: p.index,
                offset_in_part: from - p.offset,
                len: to - from,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1024 * MIB;

    /// Parts are numbered 0.., contiguous from 0, non-empty, and end at `size`.
    fn assert_tiles(parts: &[PartRange], size: u64) {
        let mut offset = 0;
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.index as usize, i, "index of {p}");
            assert_eq!(p.offset, offset, "offset of {p}");
            assert!(p.len > 0, "empty {p}");
            offset += p.len;
        }
        assert_eq!(offset, size, "parts cover {offset} of {size} bytes");
    }

    fn lens(size: u64) -> Vec<u64> {
        let parts = plan(size, &SplitPolicy::default());
        assert_tiles(&parts, size);
        parts.iter().map(|p| p.len).collect()
    }

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(SplitPolicy::default().validate(), Ok(()));
        assert_eq!(SplitPolicy::default().full_split_threshold(), 6 * MIB);
    }

    #[test]
    fn empty_file_has_no_parts() {
        assert!(plan(0, &SplitPolicy::default()).is_empty());
    }

    #[test]
    fn small_files_get_min_sized_parts() {
        assert_eq!(lens(1), vec![1]);
        assert_eq!(lens(MIB - 1), vec![MIB - 1]);
        assert_eq!(lens(MIB), vec![MIB]);
        assert_eq!(lens(MIB + 1), vec![MIB, 1]);
        assert_eq!(lens(3 * MIB), vec![MIB; 3]);
        assert_eq!(lens(6 * MIB - 1), vec![MIB, MIB, MIB, MIB, MIB, MIB - 1]);
    }

    #[test]
    fn large_files_get_exactly_six_parts() {
        assert_eq!(lens(6 * MIB), vec![MIB; 6]);
        // ceil((6 MiB + 1) / 6) = MiB + 1; five of those leave 6 MiB + 1 - 5 MiB - 5 for the last.
        assert_eq!(
            lens(6 * MIB + 1),
            vec![MIB + 1, MIB + 1, MIB + 1, MIB + 1, MIB + 1, MIB - 4]
        );
        let ten_gib = lens(10 * GIB);
        assert_eq!(ten_gib.len(), 6);
        assert_eq!(ten_gib[0], (10 * GIB).div_ceil(6));
        assert_eq!(ten_gib[5], 10 * GIB - 5 * (10 * GIB).div_ceil(6));
    }

    #[test]
    fn sizes_not_divisible_by_six() {
        for extra in 1..6 {
            let size = 600 * MIB + extra;
            let l = lens(size);
            let part = size.div_ceil(6);
            assert_eq!(l.len(), 6, "size {size}");
            assert!(l[..5].iter().all(|&x| x == part), "size {size}: {l:?}");
            assert_eq!(l[5], size - 5 * part, "size {size}");
            assert!(l[5] < part, "size {size}: the last part holds the rest");
        }
    }

    #[test]
    fn other_part_counts() {
        let policy = SplitPolicy {
            part_count: 4,
            min_part_size: 10,
        };
        let l: Vec<u64> = plan(41, &policy).iter().map(|p| p.len).collect();
        assert_eq!(l, vec![11, 11, 11, 8]);
        let l: Vec<u64> = plan(39, &policy).iter().map(|p| p.len).collect();
        assert_eq!(l, vec![10, 10, 10, 9]);
    }

    #[test]
    fn invalid_policies_are_refused_and_do_not_panic() {
        let zero = SplitPolicy {
            part_count: 0,
            min_part_size: 0,
        };
        assert_eq!(zero.validate(), Err(SplitPolicyError::ZeroPartCount));
        assert_tiles(&plan(17, &zero), 17);
        let tiny = SplitPolicy {
            part_count: 6,
            min_part_size: 1,
        };
        assert!(matches!(
            tiny.validate(),
            Err(SplitPolicyError::MinPartSizeTooSmall { .. })
        ));
        // ceil(7 / 6) = 2 would leave the sixth part at -3 bytes; the plan stops early instead.
        assert_tiles(&plan(7, &tiny), 7);
        assert_tiles(&plan(u64::MAX, &tiny), u64::MAX);
    }

    fn collect(parts: &[PartRange], start: u64, end: u64) -> Vec<(u32, u64, u64)> {
        parts_for_range(parts, start, end)
            .map(|s| (s.index, s.offset_in_part, s.len))
            .collect()
    }

    #[test]
    fn range_inside_one_part() {
        let parts = plan(6 * MIB, &SplitPolicy::default());
        assert_eq!(collect(&parts, 0, 0), vec![(0, 0, 1)]);
        assert_eq!(collect(&parts, 10, 19), vec![(0, 10, 10)]);
        assert_eq!(collect(&parts, MIB, 2 * MIB - 1), vec![(1, 0, MIB)]);
        assert_eq!(
            collect(&parts, 6 * MIB - 1, 6 * MIB - 1),
            vec![(5, MIB - 1, 1)]
        );
    }

    #[test]
    fn range_across_parts() {
        let parts = plan(6 * MIB, &SplitPolicy::default());
        assert_eq!(
            collect(&parts, MIB - 1, 3 * MIB),
            vec![(0, MIB - 1, 1), (1, 0, MIB), (2, 0, MIB), (3, 0, 1)]
        );
        let whole = collect(&parts, 0, u64::MAX);
        assert_eq!(whole.len(), 6);
        assert!(whole.iter().all(|&(_, off, len)| off == 0 && len == MIB));
    }

    #[test]
    fn empty_or_outside_ranges() {
        let parts = plan(6 * MIB, &SplitPolicy::default());
        assert!(collect(&parts, 5, 4).is_empty());
        assert!(collect(&parts, 6 * MIB, 7 * MIB).is_empty());
        assert!(collect(&[], 0, 10).is_empty());
        assert_eq!(
            collect(&parts, 6 * MIB - 2, u64::MAX),
            vec![(5, MIB - 2, 2)]
        );
    }

    proptest! {
        #[test]
        fn plan_tiles_and_follows_the_count_rule(
            size in prop_oneof![0u64..20 * MIB, 0u64..=u64::MAX],
            part_count in 1u32..16,
            min_extra in 0u64..4 * MIB,
        ) {
            let policy = SplitPolicy { part_count, min_part_size: u64::from(part_count) + min_extra };
            prop_assert!(policy.validate().is_ok());
            let parts = plan(size, &policy);
            assert_tiles(&parts, size);
            let n = parts.len() as u64;
            if size == 0 {
                prop_assert_eq!(n, 0);
            } else if size >= policy.full_split_threshold() {
                prop_assert_eq!(n, u64::from(part_count));
                let part = size.div_ceil(u64::from(part_count));
                prop_assert!(parts[..parts.len() - 1].iter().all(|p| p.len == part));
            } else {
                prop_assert_eq!(n, size.div_ceil(policy.min_part_size));
                prop_assert!(parts[..parts.len() - 1].iter().all(|p| p.len == policy.min_part_size));
            }
        }

        #[test]
        fn range_slices_cover_exactly_the_range(
            size in 1u64..40 * MIB,
            a in 0u64..40 * MIB,
            b in 0u64..40 * MIB,
        ) {
            let parts = plan(size, &SplitPolicy::default());
            let (start, end) = (a.min(b), a.max(b));
            let slices: Vec<PartSlice> = parts_for_range(&parts, start, end).collect();
            let want = if start >= size { 0 } else { end.min(size - 1) - start + 1 };
            prop_assert_eq!(slices.iter().map(|s| s.len).sum::<u64>(), want);
            // Slices are consecutive file bytes starting at `start`.
            let mut at = start;
            for s in &slices {
                let p = parts[s.index as usize];
                prop_assert!(s.len > 0);
                prop_assert_eq!(p.offset + s.offset_in_part, at);
                prop_assert!(s.offset_in_part + s.len <= p.len);
                at += s.len;
            }
        }
    }
}
