//! Feeders: move the body's bytes into the part writers' channels, computing each part's
//! crc32c on the way. Two sources: the request body as it arrives (known length), and a
//! complete spool read back section by section, all parts at once.

use std::sync::Arc;

use crate::file_hash::Xxh3;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::pipeline::{FeedError, PartCrcs};
use super::slicer::slice_frame;
use super::spool::SpooledBody;
use crate::metrics::Metrics;
use crate::split::PartRange;

/// The whole-file checksum as stored: xxh3-128, 32 lowercase hex digits.
pub fn checksum_hex(hasher: &Xxh3) -> String {
    format!("{:032x}", hasher.digest128())
}

/// Sees every frame of a streamed body, in order, before its bytes go to the parts, and works
/// out what the upload learns from the body besides the part bytes: the file's size and
/// checksum. The body may be more than the file (a form's trailer), never less.
pub trait BodyObserver {
    /// The next frame of the body; an error stops the upload.
    fn frame(&mut self, frame: &[u8]) -> Result<(), FeedError>;
    /// The body ended after `body_len` bytes, as announced; an error stops the upload.
    fn end(&mut self, body_len: u64) -> Result<(), FeedError>;
    /// The file's size and checksum ([`checksum_hex`]), once [`BodyObserver::end`] passed.
    fn file(&self) -> (u64, String);
}

/// A raw body: all of it is the file.
#[derive(Default)]
pub struct WholeBody {
    hasher: Xxh3,
    len: u64,
}

impl BodyObserver for WholeBody {
    fn frame(&mut self, frame: &[u8]) -> Result<(), FeedError> {
        self.hasher.update(frame);
        Ok(())
    }

    fn end(&mut self, body_len: u64) -> Result<(), FeedError> {
        self.len = body_len;
        Ok(())
    }

    fn file(&self) -> (u64, String) {
        (self.len, checksum_hex(&self.hasher))
    }
}

/// Streams a body of exactly `size` bytes into the parts: every frame is cut with
/// `Bytes::slice` at part boundaries and each piece goes to its part's channel (waiting when
/// the channel is full). A part's channel is closed as soon as its last byte is sent. Shows
/// `observer` every frame and then the end of the body.
pub async fn feed_body<S, E, O>(
    mut body: S,
    size: u64,
    parts: &[PartRange],
    senders: Vec<mpsc::Sender<Bytes>>,
    observer: &mut O,
    metrics: &Metrics,
) -> Result<PartCrcs, FeedError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    FeedError: From<E>,
    O: BodyObserver + ?Sized,
{
    let mut senders: Vec<Option<mpsc::Sender<Bytes>>> = senders.into_iter().map(Some).collect();
    let mut crcs = vec![0u32; parts.len()];
    let mut position = 0u64;
    while let Some(frame) = body.next().await {
        let frame = frame.map_err(FeedError::from)?;
        if frame.is_empty() {
            continue;
        }
        let len = frame.len() as u64;
        if position + len > size {
            return Err(FeedError::TooLong { expected: size });
        }
        observer.frame(&frame)?;
        for piece in slice_frame(parts, position, frame.len()) {
            let bytes = frame.slice(piece.range.clone());
            crcs[piece.part] = sixfold_wire::crc::crc32c_append(crcs[piece.part], &bytes);
            let piece_end = position + piece.range.end as u64;
            let sender = senders[piece.part]
                .as_ref()
                .ok_or(FeedError::WriterGone(piece.part))?;
            sender
                .send(bytes)
                .await
                .map_err(|_| FeedError::WriterGone(piece.part))?;
            if piece_end == parts[piece.part].end() {
                // Closing the channel tells the writer the part is complete.
                senders[piece.part] = None;
            }
        }
        position += len;
        metrics.add_bytes_in(len);
    }
    if position != size {
        return Err(FeedError::Short {
            expected: size,
            got: position,
        });
    }
    observer.end(position)?;
    Ok(crcs)
}

/// Sends every part's section of a spooled body to its channel, all parts concurrently.
pub async fn feed_spool(
    body: &Arc<SpooledBody>,
    parts: &[PartRange],
    senders: Vec<mpsc::Sender<Bytes>>,
) -> Result<PartCrcs, FeedError> {
    let feeders = parts
        .iter()
        .zip(senders)
        .enumerate()
        .map(|(position, (part, sender))| {
            let mut section = body.section(part.offset, part.len);
            async move {
                let mut crc = 0u32;
                while let Some(piece) = section.next().await {
                    let piece = piece.map_err(FeedError::Spool)?;
                    crc = sixfold_wire::crc::crc32c_append(crc, &piece);
                    sender
                        .send(piece)
                        .await
                        .map_err(|_| FeedError::WriterGone(position))?;
                }
                Ok::<u32, FeedError>(crc)
            }
        });
    futures_util::future::try_join_all(feeders).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{SplitPolicy, plan};

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 13 % 241) as u8).collect()
    }

    /// Collects every channel concurrently with the feeder.
    async fn run_feed(
        body: Vec<Result<Bytes, FeedError>>,
        size: u64,
        parts: &[PartRange],
    ) -> (Result<PartCrcs, FeedError>, Vec<Vec<u8>>, WholeBody) {
        let mut receivers = Vec::new();
        let mut senders = Vec::new();
        for _ in parts {
            let (tx, rx) = mpsc::channel::<Bytes>(2);
            senders.push(tx);
            receivers.push(rx);
        }
        let collectors = receivers.into_iter().map(|mut rx| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                while let Some(b) = rx.recv().await {
                    out.extend_from_slice(&b);
                }
                out
            })
        });
        let collectors: Vec<_> = collectors.collect();
        let metrics = Metrics::new();
        let mut hasher = WholeBody::default();
        let result = feed_body(
            futures_util::stream::iter(body),
            size,
            parts,
            senders,
            &mut hasher,
            &metrics,
        )
        .await;
        let mut got = Vec::new();
        for c in collectors {
            got.push(c.await.expect("collector"));
        }
        (result, got, hasher)
    }

    fn frames(bytes: &[u8], size: usize) -> Vec<Result<Bytes, FeedError>> {
        bytes
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    }

    #[tokio::test]
    async fn body_reaches_each_part_with_its_crc() {
        let policy = SplitPolicy {
            part_count: 6,
            min_part_size: 100,
        };
        let bytes = data(1000);
        let parts = plan(1000, &policy);
        let (result, got, hasher) = run_feed(frames(&bytes, 37), 1000, &parts).await;
        let crcs = result.expect("fed");
        for (i, part) in parts.iter().enumerate() {
            let expected = &bytes[part.offset as usize..part.end() as usize];
            assert_eq!(got[i], expected, "part {i}");
            assert_eq!(crcs[i], crc32c::crc32c(expected), "crc of part {i}");
        }
        let mut whole = Xxh3::new();
        whole.update(&bytes);
        assert_eq!(hasher.file(), (1000, checksum_hex(&whole)));
        assert_eq!(hasher.file().1.len(), 32);
    }

    #[tokio::test]
    async fn short_long_and_broken_bodies_fail() {
        let policy = SplitPolicy::default();
        let bytes = data(100);
        let parts = plan(100, &policy);
        let (r, _, _) = run_feed(frames(&bytes[..90], 10), 100, &parts).await;
        assert!(
            matches!(
                r,
                Err(FeedError::Short {
                    expected: 100,
                    got: 90
                })
            ),
            "{r:?}"
        );
        let parts_short = plan(50, &policy);
        let (r, _, _) = run_feed(frames(&bytes, 10), 50, &parts_short).await;
        assert!(
            matches!(r, Err(FeedError::TooLong { expected: 50 })),
            "{r:?}"
        );
        let mut broken = frames(&bytes[..20], 10);
        broken.push(Err(FeedError::Body("connection reset".into())));
        let (r, _, _) = run_feed(broken, 100, &parts).await;
        assert!(
            matches!(r, Err(FeedError::Body(ref m)) if m.contains("reset")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_writer_that_stops_is_reported() {
        let parts = plan(100, &SplitPolicy::default());
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        drop(rx);
        let metrics = Metrics::new();
        let mut hasher = WholeBody::default();
        let r = feed_body(
            futures_util::stream::iter(frames(&data(100), 10)),
            100,
            &parts,
            vec![tx],
            &mut hasher,
            &metrics,
        )
        .await;
        assert!(matches!(r, Err(FeedError::WriterGone(0))), "{r:?}");
    }
}
