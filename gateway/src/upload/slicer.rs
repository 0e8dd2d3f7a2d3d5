//! Maps a frame of the request body onto the parts it belongs to, so that each part's share
//! can be cut out with `Bytes::slice` (no copy). Pure arithmetic.

use std::ops::Range;

use crate::split::PartRange;

/// Bytes `range` of a frame belong to the part at position `part` of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSlice {
    pub part: usize,
    pub range: Range<usize>,
}

/// The pieces of a frame of `frame_len` bytes that starts at `body_offset` in the file, in
/// order. `parts` must tile the file from 0 (a split plan). Bytes past the last part belong to
/// no part and yield nothing: the caller refuses a body longer than announced.
pub fn slice_frame(parts: &[PartRange], body_offset: u64, frame_len: usize) -> FrameSlices<'_> {
    let first = parts.partition_point(|p| p.end() <= body_offset);
    FrameSlices {
        parts,
        next_part: first,
        body_offset,
        frame_len,
        done: 0,
    }
}

/// Iterator returned by [`slice_frame`].
#[derive(Debug, Clone)]
pub struct FrameSlices<'a> {
    parts: &'a [PartRange],
    next_part: usize,
    body_offset: u64,
    frame_len: usize,
    /// Bytes of the frame already handed out.
    done: usize,
}

impl Iterator for FrameSlices<'_> {
    type Item = FrameSlice;

    fn next(&mut self) -> Option<FrameSlice> {
        if self.done >= self.frame_len {
            return None;
        }
        let part = self.parts.get(self.next_part)?;
        let position = self.body_offset + self.done as u64;
        if position < part.offset {
            // Parts tile the file from 0, so this only happens with a malformed plan.
            return None;
        }
        let left_in_part = part.end() - position;
        let left_in_frame = self.frame_len - self.done;
        let take = usize::try_from(left_in_part).map_or(left_in_frame, |l| l.min(left_in_frame));
        let slice = FrameSlice {
            part: self.next_part,
            range: self.done..self.done + take,
        };
        self.done += take;
        if take as u64 == left_in_part {
            self.next_part += 1;
        }
        Some(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{SplitPolicy, plan};
    use proptest::prelude::*;

    fn parts(lens: &[u64]) -> Vec<PartRange> {
        let mut offset = 0;
        lens.iter()
            .enumerate()
            .map(|(i, &len)| {
                let p = PartRange {
                    index: i as u32,
                    offset,
                    len,
                };
                offset += len;
                p
            })
            .collect()
    }

    fn slices(parts: &[PartRange], offset: u64, len: usize) -> Vec<(usize, Range<usize>)> {
        slice_frame(parts, offset, len)
            .map(|s| (s.part, s.range))
            .collect()
    }

    #[test]
    fn frame_inside_one_part() {
        let p = parts(&[10, 10, 10]);
        assert_eq!(slices(&p, 0, 4), vec![(0, 0..4)]);
        assert_eq!(slices(&p, 12, 8), vec![(1, 0..8)]);
    }

    #[test]
    fn frame_across_boundaries() {
        let p = parts(&[10, 10, 10]);
        assert_eq!(slices(&p, 8, 4), vec![(0, 0..2), (1, 2..4)]);
        assert_eq!(slices(&p, 5, 25), vec![(0, 0..5), (1, 5..15), (2, 15..25)]);
        assert_eq!(slices(&p, 10, 10), vec![(1, 0..10)]);
    }

    #[test]
    fn bytes_past_the_end_belong_to_nobody() {
        let p = parts(&[10, 10]);
        assert_eq!(slices(&p, 15, 10), vec![(1, 0..5)]);
        assert!(slices(&p, 20, 3).is_empty());
        assert!(slices(&[], 0, 3).is_empty());
        assert!(slices(&p, 3, 0).is_empty());
    }

    proptest! {
        #[test]
        fn slices_reassemble_each_part_exactly(
            size in 0u64..5000,
            min_part in 6u64..700,
            cuts in proptest::collection::vec(1usize..900, 1..40),
        ) {
            let policy = SplitPolicy { part_count: 6, min_part_size: min_part };
            let plan = plan(size, &policy);
            let body: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let mut rebuilt: Vec<Vec<u8>> = vec![Vec::new(); plan.len()];
            let mut offset = 0usize;
            let mut cut = cuts.iter().cycle();
            while offset < body.len() {
                let len = (*cut.next().unwrap_or(&1)).min(body.len() - offset);
                let frame = &body[offset..offset + len];
                let mut covered = 0;
                for s in slice_frame(&plan, offset as u64, len) {
                    // Pieces come in order and without gaps.
                    prop_assert_eq!(s.range.start, covered);
                    prop_assert!(!s.range.is_empty());
                    covered = s.range.end;
                    // Each piece lies inside its part.
                    let part = plan[s.part];
                    let at = offset as u64 + s.range.start as u64;
                    prop_assert!(part.offset <= at && at + s.range.len() as u64 <= part.end());
                    rebuilt[s.part].extend_from_slice(&frame[s.range]);
                }
                prop_assert_eq!(covered, len);
                offset += len;
            }
            for (part, bytes) in plan.iter().zip(&rebuilt) {
                let expected = &body[part.offset as usize..part.end() as usize];
                prop_assert_eq!(bytes.as_slice(), expected);
            }
        }
    }
}
