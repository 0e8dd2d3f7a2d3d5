//! S3 multipart uploads in the metadata. Each uploaded part is a committed sixfold file (a
//! *segment*); CompleteMultipartUpload turns the listed parts into an object's ordered segment
//! list in one transaction, copying no bytes; an abort removes the parts' files.

use std::collections::BTreeMap;

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::buckets::{BUCKETS, PARTS, PARTS_NAME, UPLOADS, UPLOADS_NAME, remove_files_in};
use super::codec::{decode, encode};
use super::s3_objects::put_object_in;
use super::s3_records::{
    CompletedPartRef, MIN_PART_SIZE, MultipartRecord, ObjectRecord, ObjectStoreError, Segment,
    UploadedPart, part_key,
};
use super::{Meta, MetaError};

fn upload_in(
    uploads: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    upload_id: &Uuid,
) -> Result<Option<MultipartRecord>, ObjectStoreError> {
    match uploads.get(upload_id.as_bytes())? {
        Some(v) => Ok(Some(
            decode(v.value()).map_err(MetaError::corrupt(UPLOADS_NAME))?,
        )),
        None => Ok(None),
    }
}

fn parts_in(
    parts: &impl ReadableTable<&'static [u8; 20], &'static [u8]>,
    upload_id: &Uuid,
) -> Result<Vec<UploadedPart>, ObjectStoreError> {
    let (start, end) = (part_key(upload_id, 0), part_key(upload_id, u32::MAX));
    let mut out = Vec::new();
    for row in parts.range::<&[u8; 20]>(&start..=&end)? {
        let (_, v) = row?;
        out.push(decode(v.value()).map_err(MetaError::corrupt(PARTS_NAME))?);
    }
    Ok(out)
}

/// Removes upload `upload_id`, its part records and its part files, inside `txn`. Returns how
/// many parts it had; `None` if there was no such upload.
pub(super) fn abort_in(
    txn: &WriteTransaction,
    upload_id: &Uuid,
    now: u64,
) -> Result<Option<usize>, ObjectStoreError> {
    let mut uploads = txn.open_table(UPLOADS)?;
    if uploads.remove(upload_id.as_bytes())?.is_none() {
        return Ok(None);
    }
    drop(uploads);
    let mut parts = txn.open_table(PARTS)?;
    let found = parts_in(&parts, upload_id)?;
    for part in &found {
        parts.remove(&part_key(upload_id, part.part_number))?;
    }
    drop(parts);
    remove_files_in(txn, found.iter().map(|p| p.file_id), now)?;
    Ok(Some(found.len()))
}

impl Meta {
    /// Records a new multipart upload (its bucket must exist).
    pub fn create_multipart(&self, record: &MultipartRecord) -> Result<(), ObjectStoreError> {
        let value = encode(record).map_err(MetaError::corrupt(UPLOADS_NAME))?;
        self.write_as(|txn| {
            let buckets = txn.open_table(BUCKETS)?;
            if buckets.get(record.bucket.as_str())?.is_none() {
                return Err(ObjectStoreError::NoSuchBucket(record.bucket.clone()));
            }
            let mut uploads = txn.open_table(UPLOADS)?;
            uploads.insert(record.upload_id.as_bytes(), value.as_slice())?;
            Ok(())
        })
    }

    /// Upload `upload_id`, if it is in progress.
    pub fn get_multipart(
        &self,
        upload_id: &Uuid,
    ) -> Result<Option<MultipartRecord>, ObjectStoreError> {
        self.read_as(|txn| upload_in(&txn.open_table(UPLOADS)?, upload_id))
    }

    /// Records `part` (a committed file) of upload `upload_id`; a part already stored under
    /// that number is replaced and its file removed. If the upload is gone (aborted or
    /// completed meanwhile), the part's file is removed and the call fails with
    /// [`ObjectStoreError::NoSuchUpload`].
    pub fn put_part(&self, upload_id: &Uuid, part: &UploadedPart) -> Result<(), ObjectStoreError> {
        let now = self.clock.unix_ms();
        let value = encode(part).map_err(MetaError::corrupt(PARTS_NAME))?;
        let result = self.write_as(|txn| {
            if upload_in(&txn.open_table(UPLOADS)?, upload_id)?.is_none() {
                return Err(ObjectStoreError::NoSuchUpload(upload_id.to_string()));
            }
            let mut parts = txn.open_table(PARTS)?;
            let old = match parts
                .insert(&part_key(upload_id, part.part_number), value.as_slice())?
            {
                Some(v) => Some(
                    decode::<UploadedPart>(v.value()).map_err(MetaError::corrupt(PARTS_NAME))?,
                ),
                None => None,
            };
            drop(parts);
            if let Some(old) = old.filter(|o| o.file_id != part.file_id) {
                remove_files_in(txn, [old.file_id], now)?;
            }
            Ok(())
        });
        if let Err(ObjectStoreError::NoSuchUpload(_)) = &result {
            self.write_as(|txn| remove_files_in(txn, [part.file_id], now))?;
        }
        result
    }

    /// Upload `upload_id` and its parts, in part number order.
    pub fn list_parts(
        &self,
        upload_id: &Uuid,
    ) -> Result<(MultipartRecord, Vec<UploadedPart>), ObjectStoreError> {
        self.read_as(|txn| {
            let upload = upload_in(&txn.open_table(UPLOADS)?, upload_id)?
                .ok_or_else(|| ObjectStoreError::NoSuchUpload(upload_id.to_string()))?;
            let parts = parts_in(&txn.open_table(PARTS)?, upload_id)?;
            Ok((upload, parts))
        })
    }

    /// The uploads in progress in `bucket`, by key and then by initiation time.
    pub fn list_multipart_uploads(
        &self,
        bucket: &str,
    ) -> Result<Vec<MultipartRecord>, ObjectStoreError> {
        self.read_as(|txn| {
            if txn.open_table(BUCKETS)?.get(bucket)?.is_none() {
                return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
            }
            let uploads = txn.open_table(UPLOADS)?;
            let mut out: Vec<MultipartRecord> = Vec::new();
            for row in uploads.iter()? {
                let (_, v) = row?;
                let upload: MultipartRecord =
                    decode(v.value()).map_err(MetaError::corrupt(UPLOADS_NAME))?;
                if upload.bucket == bucket {
                    out.push(upload);
                }
            }
            MultipartRecord::sort_for_listing(&mut out);
            Ok(out)
        })
    }

    /// Aborts upload `upload_id`: its records go, its part files are queued for deletion.
    pub fn abort_multipart(&self, upload_id: &Uuid) -> Result<usize, ObjectStoreError> {
        let now = self.clock.unix_ms();
        self.write_as(|txn| {
            abort_in(txn, upload_id, now)?
                .ok_or_else(|| ObjectStoreError::NoSuchUpload(upload_id.to_string()))
        })
    }

    /// Uploads started before `before_unix_ms` (for the cleanup of forgotten uploads).
    pub fn multipart_started_before(
        &self,
        before_unix_ms: u64,
    ) -> Result<Vec<Uuid>, ObjectStoreError> {
        self.read_as(|txn| {
            let uploads = txn.open_table(UPLOADS)?;
            let mut out = Vec::new();
            for row in uploads.iter()? {
                let (_, v) = row?;
                let upload: MultipartRecord =
                    decode(v.value()).map_err(MetaError::corrupt(UPLOADS_NAME))?;
                if upload.initiated_unix_ms < before_unix_ms {
                    out.push(upload.upload_id);
                }
            }
            Ok(out)
        })
    }

    /// Completes upload `upload_id` of `bucket`/`key` with `listed` parts, in one transaction:
    /// checks them (ascending, uploaded, ETags matching, every part but the last at least
    /// [`MIN_PART_SIZE`]), stores the object as the ordered list of their files (replacing any
    /// object at the key), removes the parts not listed, and drops the upload. `etag` makes
    /// the object's ETag from the listed parts. Nothing changes on a refusal.
    pub fn complete_multipart(
        &self,
        upload_id: &Uuid,
        bucket: &str,
        key: &str,
        listed: &[CompletedPartRef],
        now_unix_ms: u64,
        etag: impl FnOnce(&[&UploadedPart]) -> String,
    ) -> Result<ObjectRecord, ObjectStoreError> {
        let now = self.clock.unix_ms();
        self.write_as(|txn| {
            let mut uploads = txn.open_table(UPLOADS)?;
            let upload = upload_in(&uploads, upload_id)?
                .filter(|u| u.bucket == bucket && u.key == key)
                .ok_or_else(|| ObjectStoreError::NoSuchUpload(upload_id.to_string()))?;
            let mut parts_table = txn.open_table(PARTS)?;
            let stored: BTreeMap<u32, UploadedPart> = parts_in(&parts_table, upload_id)?
                .into_iter()
                .map(|p| (p.part_number, p))
                .collect();
            let Completion { record, unlisted } =
                completion(upload_id, &upload, &stored, listed, now_unix_ms, etag)?;
            for number in stored.keys() {
                parts_table.remove(&part_key(upload_id, *number))?;
            }
            uploads.remove(upload_id.as_bytes())?;
            drop(parts_table);
            drop(uploads);
            put_object_in(txn, bucket, key, &record, now)?;
            remove_files_in(txn, unlisted, now)?;
            Ok(record)
        })
    }
}

/// What a CompleteMultipartUpload makes of an upload: the object and the files of the parts
/// it does not list (to remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub record: ObjectRecord,
    pub unlisted: Vec<Uuid>,
}

/// Completes `upload` (id `upload_id`) whose uploaded parts are `stored` with the `listed`
/// ones ([`check_completion`]): the object is the ordered list of their files, with the
/// upload's content type and metadata, its ETag made by `etag` from the listed parts. Pure;
/// every backend stores what it returns.
pub fn completion(
    upload_id: &Uuid,
    upload: &MultipartRecord,
    stored: &BTreeMap<u32, UploadedPart>,
    listed: &[CompletedPartRef],
    now_unix_ms: u64,
    etag: impl FnOnce(&[&UploadedPart]) -> String,
) -> Result<Completion, ObjectStoreError> {
    let chosen = check_completion(stored, listed)?;
    let record = ObjectRecord {
        size: chosen.iter().map(|p| p.size).sum(),
        etag: etag(&chosen),
        content_type: upload.content_type.clone(),
        last_modified_unix_ms: now_unix_ms,
        segments: chosen
            .iter()
            .map(|p| Segment {
                file_id: p.file_id,
                size: p.size,
            })
            .collect(),
        user_metadata: upload.user_metadata.clone(),
        id: Some(*upload_id),
    };
    let unlisted = stored
        .values()
        .filter(|p| !listed.iter().any(|l| l.part_number == p.part_number))
        .map(|p| p.file_id)
        .collect();
    Ok(Completion { record, unlisted })
}

/// The parts a CompleteMultipartUpload names, checked against those uploaded. Pure.
pub fn check_completion<'a>(
    stored: &'a BTreeMap<u32, UploadedPart>,
    listed: &[CompletedPartRef],
) -> Result<Vec<&'a UploadedPart>, ObjectStoreError> {
    if listed.is_empty() {
        return Err(ObjectStoreError::InvalidPart(
            "the upload must name at least one part".into(),
        ));
    }
    // Order first, then presence and ETags, then sizes: each refusal names the first problem
    // a client should fix.
    if listed
        .windows(2)
        .any(|w| w[1].part_number <= w[0].part_number)
    {
        return Err(ObjectStoreError::InvalidPartOrder);
    }
    let mut chosen = Vec::with_capacity(listed.len());
    for wanted in listed {
        let part = stored.get(&wanted.part_number).ok_or_else(|| {
            ObjectStoreError::InvalidPart(format!("part {} was not uploaded", wanted.part_number))
        })?;
        if let Some(etag) = &wanted.etag
            && etag != &part.etag
        {
            return Err(ObjectStoreError::InvalidPart(format!(
                "part {}: the ETag {etag} is not the uploaded part's",
                wanted.part_number
            )));
        }
        chosen.push(part);
    }
    if let Some(small) = chosen[..chosen.len() - 1]
        .iter()
        .find(|p| p.size < MIN_PART_SIZE)
    {
        return Err(ObjectStoreError::EntityTooSmall {
            part_number: small.part_number,
            size: small.size,
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u32, size: u64) -> UploadedPart {
        UploadedPart {
            part_number: n,
            file_id: Uuid::new_v4(),
            size,
            etag: format!("etag{n}"),
            last_modified_unix_ms: 0,
        }
    }

    fn refs(numbers: &[u32]) -> Vec<CompletedPartRef> {
        numbers
            .iter()
            .map(|&n| CompletedPartRef {
                part_number: n,
                etag: Some(format!("etag{n}")),
            })
            .collect()
    }

    #[test]
    fn completion_checks_order_presence_etags_and_sizes() {
        let stored: BTreeMap<u32, UploadedPart> = [
            part(1, MIN_PART_SIZE),
            part(2, MIN_PART_SIZE),
            part(3, 10),
            part(4, 1),
        ]
        .into_iter()
        .map(|p| (p.part_number, p))
        .collect();
        let ok = check_completion(&stored, &refs(&[1, 2, 3])).expect("valid");
        assert_eq!(ok.len(), 3);
        // Parts may be skipped.
        assert!(check_completion(&stored, &refs(&[1, 3])).is_ok());
        assert!(matches!(
            check_completion(&stored, &refs(&[2, 1])),
            Err(ObjectStoreError::InvalidPartOrder)
        ));
        assert!(matches!(
            check_completion(&stored, &refs(&[1, 1])),
            Err(ObjectStoreError::InvalidPartOrder)
        ));
        assert!(matches!(
            check_completion(&stored, &refs(&[1, 5])),
            Err(ObjectStoreError::InvalidPart(_))
        ));
        assert!(matches!(
            check_completion(&stored, &refs(&[3, 4])),
            Err(ObjectStoreError::EntityTooSmall { part_number: 3, .. })
        ));
        let mut wrong = refs(&[1]);
        wrong[0].etag = Some("other".into());
        assert!(matches!(
            check_completion(&stored, &wrong),
            Err(ObjectStoreError::InvalidPart(_))
        ));
        assert!(check_completion(&stored, &[]).is_err());
    }

    #[test]
    fn a_completion_is_the_listed_parts_in_order_and_the_unlisted_ones_go() {
        let stored: BTreeMap<u32, UploadedPart> =
            [part(1, MIN_PART_SIZE), part(2, MIN_PART_SIZE), part(3, 10)]
                .into_iter()
                .map(|p| (p.part_number, p))
                .collect();
        let upload_id = Uuid::from_u128(7);
        let upload = MultipartRecord {
            upload_id,
            bucket: "b".into(),
            key: "k".into(),
            content_type: Some("text/plain".into()),
            initiated_unix_ms: 1,
            user_metadata: [("a".to_owned(), "1".to_owned())].into_iter().collect(),
        };
        let c = completion(&upload_id, &upload, &stored, &refs(&[1, 3]), 99, |chosen| {
            chosen
                .iter()
                .map(|p| p.etag.as_str())
                .collect::<Vec<_>>()
                .join("+")
        })
        .expect("complete");
        assert_eq!(c.record.size, MIN_PART_SIZE + 10);
        assert_eq!(c.record.etag, "etag1+etag3");
        assert_eq!(c.record.content_type.as_deref(), Some("text/plain"));
        assert_eq!(c.record.user_metadata, upload.user_metadata);
        assert_eq!(c.record.last_modified_unix_ms, 99);
        assert_eq!(c.record.id, Some(upload_id));
        assert_eq!(
            c.record
                .segments
                .iter()
                .map(|s| (s.file_id, s.size))
                .collect::<Vec<_>>(),
            vec![
                (stored[&1].file_id, MIN_PART_SIZE),
                (stored[&3].file_id, 10)
            ]
        );
        assert_eq!(c.unlisted, vec![stored[&2].file_id]);
        // A refused list makes nothing.
        assert!(
            completion(&upload_id, &upload, &stored, &refs(&[3, 1]), 99, |_| {
                String::new()
            })
            .is_err()
        );
    }
}
