//! Reading an object made of segments: a byte range of the concatenation of its segments'
//! files. The first segment's stream is opened before the response (so that a node that cannot
//! serve it fails the request before any header of success); the following ones are opened in
//! turn as the previous one ends. Each is a native download stream ([`super::open_body`]), with
//! its read-ahead and checks. Serves S3 GETs and `/files/{id}` of a multipart object alike.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::DownloadError;
use crate::meta::FileRecord;
use crate::metrics::Metrics;
use crate::node_client::SharedNodeClient;

/// A piece of a read: `len` bytes of `file` from `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRead {
    pub index: usize,
    pub start: u64,
    pub len: u64,
}

/// Which bytes of which segments (of these sizes) the range `start..start + len` of the object
/// covers. Pure.
pub fn plan_reads(sizes: &[u64], start: u64, len: u64) -> Vec<SegmentRead> {
    let end = start.saturating_add(len);
    let mut reads = Vec::new();
    let mut offset = 0u64;
    for (index, &size) in sizes.iter().enumerate() {
        let (seg_start, seg_end) = (offset, offset + size);
        offset = seg_end;
        let from = start.max(seg_start);
        let to = end.min(seg_end);
        if from < to {
            reads.push(SegmentRead {
                index,
                start: from - seg_start,
                len: to - from,
            });
        }
    }
    reads
}

/// The body for bytes `start..start + len` of an object made of `files`. `permit` (the
/// download's admission slot) is held until the body is dropped.
pub async fn open_object<P: Send + 'static>(
    store: SharedNodeClient,
    metrics: Arc<Metrics>,
    files: Vec<FileRecord>,
    start: u64,
    len: u64,
    permit: P,
) -> Result<BoxStream<'static, Result<Bytes, DownloadError>>, DownloadError> {
    let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
    let mut reads = plan_reads(&sizes, start, len).into_iter();
    let Some(first) = reads.next() else {
        return Ok(stream::empty().boxed());
    };
    let files = Arc::new(files);
    let first_body = super::open_body(
        store.clone(),
        Arc::clone(&metrics),
        &files[first.index],
        first.start,
        first.len,
        (),
    )
    .await?;
    let rest = stream::iter(reads.collect::<Vec<_>>())
        .then(move |read| {
            let (store, metrics, files) = (store.clone(), Arc::clone(&metrics), Arc::clone(&files));
            async move {
                match super::open_body(store, metrics, &files[read.index], read.start, read.len, ())
                    .await
                {
                    Ok(body) => body.boxed(),
                    Err(e) => stream::once(async move { Err(e) }).boxed(),
                }
            }
        })
        .flatten();
    let body = first_body.boxed().chain(rest).map(move |item| {
        let _held = &permit;
        item
    });
    Ok(body.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(index: usize, start: u64, len: u64) -> SegmentRead {
        SegmentRead { index, start, len }
    }

    #[test]
    fn ranges_span_segments() {
        let sizes = [10, 5, 0, 20];
        assert_eq!(
            plan_reads(&sizes, 0, 35),
            vec![read(0, 0, 10), read(1, 0, 5), read(3, 0, 20)]
        );
        assert_eq!(plan_reads(&sizes, 8, 4), vec![read(0, 8, 2), read(1, 0, 2)]);
        assert_eq!(plan_reads(&sizes, 15, 1), vec![read(3, 0, 1)]);
        assert_eq!(plan_reads(&sizes, 34, 1), vec![read(3, 19, 1)]);
        assert!(plan_reads(&sizes, 35, 0).is_empty());
        assert!(plan_reads(&[], 0, 0).is_empty());
    }
}
