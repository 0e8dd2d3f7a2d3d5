//! S3 credentials are the gateway's access keys: the access key id is the key id, the secret
//! is the key secret (s3s checks the SigV4 signatures with it). Scopes apply per operation:
//!
//! | scope | operations |
//! | --- | --- |
//! | `read` | ListBuckets, HeadBucket, GetBucketLocation, GetObject, HeadObject, ListObjects(V2), ListParts, ListMultipartUploads |
//! | `write` | everything else: PutObject, CopyObject, DeleteObject(s), the multipart writes, and CreateBucket / DeleteBucket |
//!
//! Bucket creation and deletion need `write` (not `admin`): buckets are a namespace of the
//! files a write key may create anyway. Revoked keys are refused (`InvalidAccessKeyId`), and
//! so are requests without credentials (`AccessDenied`): anonymous S3 access is not offered.

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::errors;
use crate::auth::{AccessKey, KeyId, Scope};
use crate::meta::SharedMeta;

/// Looks keys up in the metadata.
#[derive(Clone)]
pub struct KeyLookup {
    meta: SharedMeta,
}

impl KeyLookup {
    pub fn new(meta: SharedMeta) -> Self {
        KeyLookup { meta }
    }

    /// The live key `access_key`, or the S3 error for a missing or revoked one.
    async fn key(&self, access_key: &str) -> S3Result<AccessKey> {
        let unknown = || {
            S3Error::with_message(
                S3ErrorCode::InvalidAccessKeyId,
                "the access key id does not exist in our records",
            )
        };
        let id = KeyId::parse(access_key).map_err(|_| unknown())?;
        let found = self.meta.get_key(&id).await.map_err(errors::from_meta)?;
        found.filter(|k| !k.is_revoked()).ok_or_else(unknown)
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyLookup {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let key = self.key(access_key).await?;
        Ok(SecretKey::from(key.secret.expose()))
    }
}

/// The scope an S3 operation needs.
pub fn needed_scope(operation: &str) -> Scope {
    match operation {
        "ListBuckets"
        | "HeadBucket"
        | "GetBucketLocation"
        | "GetObject"
        | "HeadObject"
        | "ListObjects"
        | "ListObjectsV2"
        | "ListParts"
        | "ListMultipartUploads" => Scope::Read,
        _ => Scope::Write,
    }
}

#[async_trait::async_trait]
impl S3Access for KeyLookup {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "anonymous access is not allowed: sign the request with an access key",
            ));
        };
        let key = self.key(&credentials.access_key).await?;
        let needed = needed_scope(cx.s3_op().name());
        if key.scope.allows(needed) {
            Ok(())
        } else {
            Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                format!(
                    "{} needs an access key of scope {needed}; this key has scope {}",
                    cx.s3_op().name(),
                    key.scope
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_read_and_the_rest_write() {
        assert_eq!(needed_scope("GetObject"), Scope::Read);
        assert_eq!(needed_scope("ListObjectsV2"), Scope::Read);
        assert_eq!(needed_scope("PutObject"), Scope::Write);
        assert_eq!(needed_scope("CreateBucket"), Scope::Write);
        assert_eq!(needed_scope("UploadPart"), Scope::Write);
        assert_eq!(needed_scope("SomethingNew"), Scope::Write);
    }
}
