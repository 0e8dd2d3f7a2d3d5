//! Uploads (DESIGN §5, §6): plan and place the parts, record the session durably, stream the
//! bytes to the nodes with every part in flight at once, check each node's acknowledgement
//! against what was sent, and commit the file in one metadata transaction. Anything that fails
//! before the commit aborts the session (its chunks are queued for deletion and the cleanup is
//! woken), so a failed upload leaves no file.
//!
//! Four ways in:
//! - a raw body of known length streams straight through ([`Uploader::upload_sized`]);
//! - a `multipart/form-data` body of known length streams straight through too
//!   ([`Uploader::upload_form_sized`]): the form's head up to the file field's headers is read
//!   first (bounded), the rest of the body is planned and placed as `Content-Length` minus that
//!   head, and the last part absorbs the form's closing boundary; the file's real size, found
//!   at the closing delimiter as the bytes pass, is what the file record says (see
//!   [`multipart`] and [`crate::meta::PartRecord::clipped_to`]);
//! - a body without a length, and a form sent without one, are spooled first
//!   ([`Uploader::upload_unsized`], [`Uploader::upload_form_unsized`]).
//!
//! The streamed paths share [`Uploader::stream_through`]: a [`feed::BodyObserver`] sees every
//! frame (raw: the checksum of all of it; form: where the file ends, its checksum, the trailer).

pub mod drain;
mod feed;
pub mod flow;
pub mod form;
pub mod idle;
pub mod multipart;
pub mod pipeline;
pub mod slicer;
pub mod spool;
pub mod spool_budget;

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::file_hash::Xxh3;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

pub use feed::{BodyObserver, WholeBody, checksum_hex};
use pipeline::{FeedError, drive, start_writers};
use spool::Spool;

use crate::clock::SharedClock;
use crate::cluster::Reservation;
use crate::meta::{
    AckMismatch, FileRecord, MetaError, PartRecord, PlannedPart, SharedMeta, UploadSession,
};
use crate::metrics::Metrics;
use crate::node_client::{NodeCallError, SharedNodeClient};
use crate::placement::PlacementError;
use crate::split::{PartRange, SplitPolicy, plan};

/// Limits and knobs of the upload path.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub max_file_size: u64,
    pub split: SplitPolicy,
    pub spool_memory_bytes: u64,
    /// Spool memory shared by every upload of the gateway.
    pub spool_budget: Arc<spool_budget::SpoolBudget>,
    pub spool_dir: PathBuf,
    pub session_ttl: Duration,
    /// An upload whose client sends nothing for this long fails (408) and is aborted.
    pub body_idle_timeout: Duration,
    /// The gateway recorded as its sessions' owner ([`UploadSession::owner`]).
    pub gateway_id: Option<Uuid>,
}

/// Name and type given by the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileInfo {
    /// `None`: the file is named after its id.
    pub name: Option<String>,
    pub content_type: Option<String>,
}

/// Why an upload failed; each maps to one API error code.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Placement(#[from] PlacementError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Feed(#[from] FeedError),
    #[error("{0}")]
    Node(#[from] NodeCallError),
    #[error("{0}")]
    Ack(#[from] AckMismatch),
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Internal(String),
}

/// Longest file name kept, in bytes of UTF-8, however the name arrives (header, query, form).
pub const MAX_NAME_BYTES: usize = 1024;

/// Every upload's name passes here before anything is placed, so that a form's `filename`
/// obeys the same limit as `X-File-Name` and `?name=`.
fn check_name(name: Option<&str>) -> Result<(), UploadError> {
    match name {
        Some(n) if n.len() > MAX_NAME_BYTES => Err(UploadError::BadRequest(format!(
            "the file name is {} bytes long; at most {MAX_NAME_BYTES} bytes are accepted",
            n.len()
        ))),
        _ => Ok(()),
    }
}

/// Every chunk header keeps the content type (at most [`MAX_NAME_BYTES`] there too).
fn check_content_type(content_type: Option<&str>) -> Result<(), UploadError> {
    match content_type {
        Some(c) if c.len() > MAX_NAME_BYTES => Err(UploadError::BadRequest(format!(
            "the content type is {} bytes long; at most {MAX_NAME_BYTES} bytes are accepted",
            c.len()
        ))),
        _ => Ok(()),
    }
}

/// Whether a spool failure is the disk being full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

/// Slowest transfer rate an upload is given time for, beyond the session TTL, before the
/// cleanup may expire its session: the metadata has no way to extend a session while it runs,
/// so a long upload must be given its time up front.
const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 1 << 20;

/// Milliseconds a session of `size` bytes lives: the TTL plus the time to move `size` bytes at
/// [`SLOWEST_UPLOAD_BYTES_PER_SEC`].
fn session_lifetime_ms(ttl: Duration, size: u64) -> u64 {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let transfer_ms = (size / SLOWEST_UPLOAD_BYTES_PER_SEC).saturating_mul(1000);
    ttl_ms.saturating_add(transfer_ms)
}

/// Runs uploads. Cheap to clone.
#[derive(Clone)]
pub struct Uploader {
    meta: SharedMeta,
    store: SharedNodeClient,
    metrics: Arc<Metrics>,
    settings: Arc<UploadSettings>,
    /// Where new file ids come from: random, or a seeded sequence in the simulation, since a
    /// file's id decides its placement.
    file_ids: FileIds,
    /// What stamps sessions (created, expires).
    clock: SharedClock,
}

/// A source of new file ids.
pub type FileIds = Arc<dyn Fn() -> Uuid + Send + Sync>;

/// An upload session recorded in the metadata and not yet committed.
struct OpenSession {
    file_id: Uuid,
    parts: Vec<PlannedPart>,
    /// What every chunk's header records of the file, for a rebuild from the nodes.
    facts: sixfold_wire::FileFacts,
    /// Cleared by a commit; if still set when dropped, the session is aborted.
    armed: bool,
    /// Space and in-flight slots on the parts' nodes: acknowledged at commit, released when
    /// the session is dropped otherwise.
    reservation: Option<Reservation>,
    meta: SharedMeta,
    store: SharedNodeClient,
}

impl OpenSession {
    fn ranges(&self) -> Vec<PartRange> {
        self.parts.iter().map(PlannedPart::range).collect()
    }

    /// Drops the session and queues its chunks for deletion, now.
    async fn abort(mut self) {
        self.armed = false;
        drop(self.reservation.take());
        abort_session(self.meta.clone(), self.store.clone(), self.file_id).await;
    }
}

impl Drop for OpenSession {
    /// The safety net for paths that never reach `abort` (a panic): abort in the background.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (meta, store, file_id) = (self.meta.clone(), self.store.clone(), self.file_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(abort_session(meta, store, file_id));
        }
    }
}

async fn abort_session(meta: SharedMeta, store: SharedNodeClient, file_id: Uuid) {
    match meta.abort_session(&file_id).await {
        Ok(chunks) => {
            tracing::debug!(%file_id, chunks = chunks.len(), "upload session aborted");
            store.wake_cleanup();
        }
        Err(e) => {
            tracing::warn!(%file_id, error = %e, "cannot abort upload session; the cleanup will expire it");
        }
    }
}

impl Uploader {
    pub fn new(
        meta: SharedMeta,
        store: SharedNodeClient,
        metrics: Arc<Metrics>,
        settings: UploadSettings,
    ) -> Self {
        Uploader {
            meta,
            store,
            metrics,
            settings: Arc::new(settings),
            file_ids: Arc::new(Uuid::new_v4),
            clock: crate::clock::system(),
        }
    }

    /// This uploader stamping sessions with `clock` (a simulation's).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// This uploader with file ids from `source` (a seeded sequence makes placement
    /// reproducible).
    pub fn with_file_ids(mut self, source: FileIds) -> Self {
        self.file_ids = source;
        self
    }

    pub fn settings(&self) -> &UploadSettings {
        &self.settings
    }

    /// Uploads a body announced as exactly `size` bytes, streaming it through to the nodes.
    pub async fn upload_sized<S, E>(
        &self,
        info: FileInfo,
        size: u64,
        body: S,
    ) -> Result<FileRecord, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        if size > self.settings.max_file_size {
            return Err(UploadError::TooLarge {
                limit: self.settings.max_file_size,
            });
        }
        self.stream_through(
            info,
            size,
            self.idle_body(body),
            WholeBody::default(),
            false,
        )
        .await
    }

    /// Streams a body of exactly `planned` bytes to the nodes, cut into the parts of a file of
    /// that size, while `observer` works out the file inside it (all of it, or for a streamed
    /// form, `multipart`, a prefix; see [`crate::meta::PartRecord::clipped_to`]); then checks
    /// the acks and commits, or aborts.
    async fn stream_through<S, E, O>(
        &self,
        info: FileInfo,
        planned: u64,
        body: S,
        mut observer: O,
        multipart: bool,
    ) -> Result<FileRecord, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        FeedError: From<E>,
        O: BodyObserver + Send,
    {
        let session = self.begin(info, planned, multipart).await?;
        let ranges = session.ranges();
        let (writers, senders) =
            start_writers(&self.store, session.file_id, &session.parts, &session.facts);
        let feed = feed::feed_body(
            body,
            planned,
            &ranges,
            senders,
            &mut observer,
            &self.metrics,
        );
        let result = drive(feed, writers).await;
        let (size, checksum) = observer.file();
        self.finish(session, result, checksum, size).await
    }

    /// Uploads a body of unknown length: spools it (memory, then a file), then sends the parts.
    pub async fn upload_unsized<S, E>(
        &self,
        info: FileInfo,
        body: S,
    ) -> Result<FileRecord, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        self.check_nodes_for_unknown_size()?;
        let mut spool = self.new_spool();
        let mut hasher = Xxh3::new();
        let mut body = self.idle_body(body);
        while let Some(frame) = body.next().await {
            let frame = frame.map_err(FeedError::from)?;
            self.spool_frame(&mut spool, &mut hasher, frame).await?;
        }
        let size = spool.len();
        self.upload_spool(info, spool, size, checksum_hex(&hasher))
            .await
    }

    /// Refuses early, before reading a body of unknown size, when fewer nodes are eligible than
    /// a large file needs (the exact check runs once the size is known).
    fn check_nodes_for_unknown_size(&self) -> Result<(), UploadError> {
        let needed = self.settings.split.part_count as usize;
        let eligible = self
            .store
            .candidates()
            .iter()
            .filter(|c| c.eligible)
            .count();
        if eligible < needed {
            return Err(PlacementError::NotEnoughNodes { needed, eligible }.into());
        }
        Ok(())
    }

    fn new_spool(&self) -> Spool {
        Spool::new(
            &self.settings.spool_dir,
            &Uuid::new_v4().to_string(),
            self.settings.spool_memory_bytes,
            Arc::clone(&self.settings.spool_budget),
        )
    }

    async fn spool_frame(
        &self,
        spool: &mut Spool,
        hasher: &mut Xxh3,
        frame: Bytes,
    ) -> Result<(), UploadError> {
        let limit = self.settings.max_file_size;
        if spool.len() + frame.len() as u64 > limit {
            return Err(UploadError::TooLarge { limit });
        }
        hasher.update(&frame);
        self.metrics.add_bytes_in(frame.len() as u64);
        spool.push(frame).await.map_err(FeedError::Spool)?;
        Ok(())
    }

    /// Sends the first `size` bytes of `spool` (whose xxh3-128 is `checksum`) as a file.
    async fn upload_spool(
        &self,
        info: FileInfo,
        spool: Spool,
        size: u64,
        checksum: String,
    ) -> Result<FileRecord, UploadError> {
        let body = Arc::new(spool.finish().await.map_err(FeedError::Spool)?);
        if size > body.len() {
            return Err(UploadError::Internal(format!(
                "a file of {size} bytes in a spool of {}",
                body.len()
            )));
        }
        let session = self.begin(info, size, false).await?;
        let ranges = session.ranges();
        let (writers, senders) =
            start_writers(&self.store, session.file_id, &session.parts, &session.facts);
        let result = drive(feed::feed_spool(&body, &ranges, senders), writers).await;
        drop(body);
        self.finish(session, result, checksum, size).await
    }

    /// Plans and places the parts of `size` bytes and records the session, before any byte
    /// moves. `multipart`: the bytes are a streamed form's, the file a prefix of them.
    async fn begin(
        &self,
        info: FileInfo,
        size: u64,
        multipart: bool,
    ) -> Result<OpenSession, UploadError> {
        check_name(info.name.as_deref())?;
        check_content_type(info.content_type.as_deref())?;
        let file_id = (self.file_ids)();
        let ranges = plan(size, &self.settings.split);
        let reservation = self.store.reserve(&file_id, &ranges)?;
        let nodes = reservation.nodes();
        let parts = PlannedPart::plan(&ranges, &nodes).ok_or_else(|| {
            UploadError::Internal("placement returned the wrong node count".into())
        })?;
        let now = self.clock.unix_ms();
        let ttl_ms = session_lifetime_ms(self.settings.session_ttl, size);
        let session = UploadSession {
            file_id,
            name: info.name.unwrap_or_else(|| file_id.to_string()),
            content_type: info.content_type,
            size: Some(size),
            created_unix_ms: now,
            expires_unix_ms: now.saturating_add(ttl_ms),
            parts,
            multipart,
            owner: self.settings.gateway_id,
        };
        self.meta.begin_session(&session).await?;
        Ok(OpenSession {
            file_id,
            facts: sixfold_wire::FileFacts {
                name: session.name,
                content_type: session.content_type,
                created_unix_ms: session.created_unix_ms,
            },
            parts: session.parts,
            armed: true,
            reservation: Some(reservation),
            meta: self.meta.clone(),
            store: self.store.clone(),
        })
    }

    /// Checks the acks (each node's length and crc32c against the planned length and what the
    /// gateway computed over the bytes it sent) and commits a file of `size` bytes, the parts
    /// clipped to it; or aborts on any failure.
    async fn finish(
        &self,
        session: OpenSession,
        result: Result<(Vec<u32>, Vec<crate::node_client::PutAck>), UploadError>,
        checksum: String,
        size: u64,
    ) -> Result<FileRecord, UploadError> {
        let verified = result.and_then(|(crcs, acks)| {
            session
                .parts
                .iter()
                .zip(crcs.iter().zip(&acks))
                .map(|(part, (crc, ack))| {
                    part.verify_ack(ack.length, ack.crc32c, *crc)
                        .map(|record| record.clipped_to(size))
                        .map_err(UploadError::from)
                })
                .collect::<Result<Vec<PartRecord>, UploadError>>()
        });
        let records = match verified {
            Ok(records) => records,
            Err(e) => {
                session.abort().await;
                return Err(e);
            }
        };
        let started = std::time::Instant::now();
        let committed = self
            .meta
            .commit_session(&session.file_id, records, checksum, size)
            .await;
        self.metrics.commit_took(started.elapsed());
        match committed {
            Ok(record) => {
                let mut session = session;
                session.armed = false;
                if let Some(r) = session.reservation.take() {
                    r.acknowledged();
                }
                crate::commit_marks::deliver(
                    &self.store,
                    self.meta.as_ref(),
                    &record,
                    crate::commit_marks::COMMIT_MARK_WAIT,
                )
                .await;
                Ok(record)
            }
            Err(e) => {
                session.abort().await;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_uploads_get_longer_sessions() {
        let hour = Duration::from_secs(3600);
        assert_eq!(session_lifetime_ms(hour, 0), 3_600_000);
        assert_eq!(session_lifetime_ms(hour, 1 << 20), 3_601_000);
        // 10 GiB: an hour plus 10240 s.
        assert_eq!(session_lifetime_ms(hour, 10 << 30), 3_600_000 + 10_240_000);
        assert_eq!(session_lifetime_ms(Duration::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn names_are_limited_in_bytes_not_characters() {
        assert!(check_name(None).is_ok());
        assert!(check_name(Some(&"a".repeat(MAX_NAME_BYTES))).is_ok());
        let err = check_name(Some(&"a".repeat(MAX_NAME_BYTES + 1))).expect_err("too long");
        assert!(matches!(err, UploadError::BadRequest(_)), "{err}");
        // 512 two-byte characters fill the limit; one more is over it.
        assert!(check_name(Some(&"é".repeat(MAX_NAME_BYTES / 2))).is_ok());
        assert!(check_name(Some(&"é".repeat(MAX_NAME_BYTES / 2 + 1))).is_err());
    }
}
