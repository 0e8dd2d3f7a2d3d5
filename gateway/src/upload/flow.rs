//! The decision of one upload's transfer, as a pure state machine: the feeder's result and
//! each part writer's result come in as events, in whatever order they happen, and each event
//! yields whether to go on, to commit (with the crcs and acks in plan order), or to abort and
//! why. [`super::pipeline::drive`] runs it against the real feeder and writers; the tests below
//! run it against every ordering that matters, without any I/O.

use super::UploadError;
use super::pipeline::{FeedError, PartCrcs};
use crate::node_client::{NodeCallError, PutAck};

/// What to do after an event.
#[derive(Debug)]
pub enum Step {
    /// Wait for the next event.
    Continue,
    /// Every part is acknowledged and the feeder finished: the crcs the gateway computed and
    /// the nodes' acks, both in plan order, to be checked against each other and committed.
    Commit { crcs: PartCrcs, acks: Vec<PutAck> },
    /// Stop: the upload fails for this reason (the caller aborts the session).
    Abort(UploadError),
}

/// The state of one upload's transfer.
#[derive(Debug)]
pub struct UploadFlow {
    crcs: Option<PartCrcs>,
    acks: Vec<Option<PutAck>>,
    remaining: usize,
    /// The feeder found this part's writer gone: that writer's own result says why.
    gone: Option<usize>,
}

impl UploadFlow {
    /// A transfer of `parts` parts, none acknowledged, the feeder running.
    pub fn new(parts: usize) -> Self {
        UploadFlow {
            crcs: None,
            acks: vec![None; parts],
            remaining: parts,
            gone: None,
        }
    }

    /// Whether the feeder's result is still awaited.
    pub fn wants_feed(&self) -> bool {
        self.crcs.is_none() && self.gone.is_none()
    }

    /// Whether some writer's result is still awaited.
    pub fn wants_writers(&self) -> bool {
        self.remaining > 0
    }

    /// The feeder finished.
    pub fn fed(&mut self, result: Result<PartCrcs, FeedError>) -> Step {
        match result {
            Ok(crcs) => self.crcs = Some(crcs),
            Err(FeedError::WriterGone(part)) => self.gone = Some(part),
            Err(e) => return Step::Abort(e.into()),
        }
        self.settle()
    }

    /// The writer of `part` finished.
    pub fn writer_done(&mut self, part: usize, result: Result<PutAck, NodeCallError>) -> Step {
        let Some(slot) = self.acks.get_mut(part) else {
            return Step::Abort(UploadError::Internal(format!(
                "a writer reported part {part} of {}",
                self.acks.len()
            )));
        };
        if slot.is_some() {
            return Step::Abort(UploadError::Internal(format!(
                "the writer of part {part} reported twice"
            )));
        }
        let ack = match result {
            Ok(ack) => ack,
            Err(e) => return Step::Abort(UploadError::Node(e)),
        };
        if self.gone == Some(part) {
            return Step::Abort(UploadError::Internal(format!(
                "the writer of part {part} stopped reading but reported success"
            )));
        }
        *slot = Some(ack);
        self.remaining -= 1;
        self.settle()
    }

    /// Nothing more can happen (no feeder result and no writer result awaited) though the
    /// transfer has not settled.
    pub fn stalled(&self) -> Step {
        Step::Abort(UploadError::Internal(
            "part writers finished without every part acknowledged".into(),
        ))
    }

    fn settle(&mut self) -> Step {
        if self.remaining > 0 {
            return Step::Continue;
        }
        let Some(crcs) = self.crcs.take() else {
            return if self.wants_feed() {
                Step::Continue
            } else {
                self.stalled()
            };
        };
        let acks: Option<Vec<PutAck>> = self.acks.iter().copied().collect();
        match acks {
            Some(acks) if acks.len() == crcs.len() => Step::Commit { crcs, acks },
            _ => Step::Abort(UploadError::Internal(
                "part results do not match the plan".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn ack(i: u32) -> PutAck {
        PutAck {
            length: 100 + u64::from(i),
            crc32c: i,
        }
    }

    fn node_error() -> NodeCallError {
        NodeCallError {
            node: Uuid::nil(),
            kind: "unavailable",
            message: "gone".into(),
        }
    }

    fn committed(step: Step) -> (PartCrcs, Vec<PutAck>) {
        match step {
            Step::Commit { crcs, acks } => (crcs, acks),
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    fn aborted(step: Step) -> UploadError {
        match step {
            Step::Abort(e) => e,
            other => panic!("expected an abort, got {other:?}"),
        }
    }

    fn continues(step: Step) {
        assert!(
            matches!(step, Step::Continue),
            "expected continue, got {step:?}"
        );
    }

    #[test]
    fn every_order_of_acks_and_feed_commits_in_plan_order() {
        // Feed first or last, acks in order or reversed: the same commit.
        for feed_first in [true, false] {
            for reversed in [false, true] {
                let mut flow = UploadFlow::new(3);
                let mut order: Vec<u32> = (0..3).collect();
                if reversed {
                    order.reverse();
                }
                let mut last = None;
                if feed_first {
                    continues(flow.fed(Ok(vec![10, 11, 12])));
                }
                for (n, i) in order.iter().enumerate() {
                    let step = flow.writer_done(*i as usize, Ok(ack(*i)));
                    if n + 1 < order.len() || !feed_first {
                        continues(step);
                    } else {
                        last = Some(step);
                    }
                }
                if !feed_first {
                    last = Some(flow.fed(Ok(vec![10, 11, 12])));
                }
                let (crcs, acks) = committed(last.expect("a last step"));
                assert_eq!(crcs, vec![10, 11, 12]);
                assert_eq!(acks, vec![ack(0), ack(1), ack(2)]);
            }
        }
    }

    #[test]
    fn an_empty_file_commits_once_fed() {
        let mut flow = UploadFlow::new(0);
        assert!(!flow.wants_writers());
        let (crcs, acks) = committed(flow.fed(Ok(vec![])));
        assert!(crcs.is_empty() && acks.is_empty());
    }

    #[test]
    fn a_failing_body_or_node_aborts_at_once() {
        let mut flow = UploadFlow::new(2);
        let e = aborted(flow.fed(Err(FeedError::Short {
            expected: 10,
            got: 3,
        })));
        assert!(
            matches!(e, UploadError::Feed(FeedError::Short { .. })),
            "{e}"
        );

        let mut flow = UploadFlow::new(2);
        continues(flow.writer_done(1, Ok(ack(1))));
        let e = aborted(flow.writer_done(0, Err(node_error())));
        assert!(matches!(e, UploadError::Node(_)), "{e}");
    }

    #[test]
    fn a_writer_gone_is_judged_by_its_own_result() {
        // The feeder saw part 1's channel close: part 1's own error is the reason.
        let mut flow = UploadFlow::new(3);
        continues(flow.writer_done(0, Ok(ack(0))));
        continues(flow.fed(Err(FeedError::WriterGone(1))));
        assert!(!flow.wants_feed());
        let e = aborted(flow.writer_done(1, Err(node_error())));
        assert!(
            matches!(e, UploadError::Node(ref s) if s.kind == "unavailable"),
            "{e}"
        );

        // A writer that stopped reading yet claims success is a bug, never a commit.
        let mut flow = UploadFlow::new(2);
        continues(flow.fed(Err(FeedError::WriterGone(1))));
        let e = aborted(flow.writer_done(1, Ok(ack(1))));
        assert!(e.to_string().contains("stopped reading"), "{e}");
    }

    #[test]
    fn results_that_do_not_match_the_plan_abort() {
        // The feeder computed fewer crcs than there are parts.
        let mut flow = UploadFlow::new(2);
        continues(flow.fed(Ok(vec![1])));
        continues(flow.writer_done(0, Ok(ack(0))));
        let e = aborted(flow.writer_done(1, Ok(ack(1))));
        assert!(e.to_string().contains("do not match"), "{e}");

        // A part the plan does not have, or one reported twice.
        let mut flow = UploadFlow::new(2);
        let e = aborted(flow.writer_done(2, Ok(ack(2))));
        assert!(e.to_string().contains("part 2 of 2"), "{e}");
        let mut flow = UploadFlow::new(2);
        continues(flow.writer_done(0, Ok(ack(0))));
        let e = aborted(flow.writer_done(0, Ok(ack(0))));
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn with_nothing_left_to_wait_for_it_aborts_rather_than_hangs() {
        let flow = UploadFlow::new(1);
        let e = aborted(flow.stalled());
        assert!(matches!(e, UploadError::Internal(_)), "{e}");
    }
}
