//! S3 multipart uploads (see `crate::meta::multipart`, whose completion check this uses).

use std::collections::BTreeMap;
use std::ops::Bound;

use uuid::Uuid;

use super::buckets::remove_files_in;
use super::s3_objects::put_object_in;
use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::buckets::{PARTS_NAME, UPLOADS_NAME};
use crate::meta::codec::{decode, encode};
use crate::meta::s3_records::{
    CompletedPartRef, MultipartRecord, ObjectRecord, ObjectStoreError, UploadedPart, part_key,
};
use crate::meta::{Completion, MetaError, MultipartEtag, completion};

async fn upload_in(
    tx: &Tx<'_>,
    upload_id: &Uuid,
) -> Result<Option<MultipartRecord>, ObjectStoreError> {
    match tx.get(Table::Uploads, upload_id.as_bytes()).await? {
        Some(v) => Ok(Some(decode(&v).map_err(MetaError::corrupt(UPLOADS_NAME))?)),
        None => Ok(None),
    }
}

async fn parts_in(tx: &Tx<'_>, upload_id: &Uuid) -> Result<Vec<UploadedPart>, ObjectStoreError> {
    let (start, end) = (part_key(upload_id, 0), part_key(upload_id, u32::MAX));
    let rows = tx
        .range(
            Table::Parts,
            Bound::Included(&start[..]),
            Bound::Included(&end[..]),
            None,
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (_, v) in rows {
        out.push(decode(&v).map_err(MetaError::corrupt(PARTS_NAME))?);
    }
    Ok(out)
}

/// Removes upload `upload_id`, its part records and its part files, inside `tx`.
pub(super) async fn abort_in(
    tx: &Tx<'_>,
    upload_id: &Uuid,
    now: u64,
) -> Result<Option<usize>, ObjectStoreError> {
    if !tx.delete(Table::Uploads, upload_id.as_bytes()).await? {
        return Ok(None);
    }
    let found = parts_in(tx, upload_id).await?;
    for part in &found {
        tx.delete(Table::Parts, &part_key(upload_id, part.part_number))
            .await?;
    }
    remove_files_in(tx, found.iter().map(|p| p.file_id).collect(), now).await?;
    Ok(Some(found.len()))
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::create_multipart`].
    pub async fn create_multipart(&self, record: &MultipartRecord) -> Result<(), ObjectStoreError> {
        let value = encode(record).map_err(MetaError::corrupt(UPLOADS_NAME))?;
        pg_write!(self, ObjectStoreError, |tx| {
            if !tx
                .contains(Table::Buckets, record.bucket.as_bytes())
                .await?
            {
                return Err(ObjectStoreError::NoSuchBucket(record.bucket.clone()));
            }
            tx.put(Table::Uploads, record.upload_id.as_bytes(), &value)
                .await?;
            Ok(())
        })
    }

    /// See [`crate::meta::Meta::get_multipart`].
    pub async fn get_multipart(
        &self,
        upload_id: &Uuid,
    ) -> Result<Option<MultipartRecord>, ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            upload_in(&tx, upload_id).await
        })
    }

    /// See [`crate::meta::Meta::put_part`].
    pub async fn put_part(
        &self,
        upload_id: &Uuid,
        part: &UploadedPart,
    ) -> Result<(), ObjectStoreError> {
        let now = self.now();
        let value = encode(part).map_err(MetaError::corrupt(PARTS_NAME))?;
        let result = pg_write!(self, ObjectStoreError, |tx| {
            if upload_in(&tx, upload_id).await?.is_none() {
                return Err(ObjectStoreError::NoSuchUpload(upload_id.to_string()));
            }
            let old = match tx
                .insert(Table::Parts, &part_key(upload_id, part.part_number), &value)
                .await?
            {
                Some(v) => {
                    Some(decode::<UploadedPart>(&v).map_err(MetaError::corrupt(PARTS_NAME))?)
                }
                None => None,
            };
            if let Some(old) = old.filter(|o| o.file_id != part.file_id) {
                remove_files_in(&tx, vec![old.file_id], now).await?;
            }
            Ok(())
        });
        if let Err(ObjectStoreError::NoSuchUpload(_)) = &result {
            pg_write!(self, MetaError, |tx| {
                remove_files_in(&tx, vec![part.file_id], now).await
            })?;
        }
        result
    }

    /// See [`crate::meta::Meta::list_parts`].
    pub async fn list_parts(
        &self,
        upload_id: &Uuid,
    ) -> Result<(MultipartRecord, Vec<UploadedPart>), ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            let upload = upload_in(&tx, upload_id)
                .await?
                .ok_or_else(|| ObjectStoreError::NoSuchUpload(upload_id.to_string()))?;
            let parts = parts_in(&tx, upload_id).await?;
            Ok((upload, parts))
        })
    }

    /// See [`crate::meta::Meta::list_multipart_uploads`].
    pub async fn list_multipart_uploads(
        &self,
        bucket: &str,
    ) -> Result<Vec<MultipartRecord>, ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            if !tx.contains(Table::Buckets, bucket.as_bytes()).await? {
                return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
            }
            let mut out: Vec<MultipartRecord> = Vec::new();
            for (_, v) in tx.all(Table::Uploads).await? {
                let upload: MultipartRecord =
                    decode(&v).map_err(MetaError::corrupt(UPLOADS_NAME))?;
                if upload.bucket == bucket {
                    out.push(upload);
                }
            }
            MultipartRecord::sort_for_listing(&mut out);
            Ok(out)
        })
    }

    /// See [`crate::meta::Meta::abort_multipart`].
    pub async fn abort_multipart(&self, upload_id: &Uuid) -> Result<usize, ObjectStoreError> {
        let now = self.now();
        pg_write!(self, ObjectStoreError, |tx| {
            abort_in(&tx, upload_id, now)
                .await?
                .ok_or_else(|| ObjectStoreError::NoSuchUpload(upload_id.to_string()))
        })
    }

    /// See [`crate::meta::Meta::multipart_started_before`].
    pub async fn multipart_started_before(
        &self,
        before_unix_ms: u64,
    ) -> Result<Vec<Uuid>, ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            let mut out = Vec::new();
            for (_, v) in tx.all(Table::Uploads).await? {
                let upload: MultipartRecord =
                    decode(&v).map_err(MetaError::corrupt(UPLOADS_NAME))?;
                if upload.initiated_unix_ms < before_unix_ms {
                    out.push(upload.upload_id);
                }
            }
            Ok(out)
        })
    }

    /// See [`crate::meta::Meta::complete_multipart`].
    pub async fn complete_multipart(
        &self,
        upload_id: &Uuid,
        bucket: &str,
        key: &str,
        listed: &[CompletedPartRef],
        now_unix_ms: u64,
        etag: MultipartEtag,
    ) -> Result<ObjectRecord, ObjectStoreError> {
        let now = self.now();
        pg_write!(self, ObjectStoreError, |tx| {
            let upload = upload_in(&tx, upload_id)
                .await?
                .filter(|u| u.bucket == bucket && u.key == key)
                .ok_or_else(|| ObjectStoreError::NoSuchUpload(upload_id.to_string()))?;
            let stored: BTreeMap<u32, UploadedPart> = parts_in(&tx, upload_id)
                .await?
                .into_iter()
                .map(|p| (p.part_number, p))
                .collect();
            let Completion { record, unlisted } =
                completion(upload_id, &upload, &stored, listed, now_unix_ms, etag)?;
            for number in stored.keys() {
                tx.delete(Table::Parts, &part_key(upload_id, *number))
                    .await?;
            }
            tx.delete(Table::Uploads, upload_id.as_bytes()).await?;
            put_object_in(&tx, bucket, key, &record, now).await?;
            remove_files_in(&tx, unlisted, now).await?;
            Ok(record)
        })
    }
}
