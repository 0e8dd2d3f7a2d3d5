//! AWS Signature Version 4 as S3 clients send it, verified without I/O: the `Authorization`
//! header, presigned query strings, and the chunk signatures of
//! `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` bodies. The secret is the access key's secret (kept
//! retrievable for this reason, as MinIO and Garage keep it); signatures are compared in
//! constant time.
//!
//! The canonical request is rebuilt from what the client sent: method, the path decoded and
//! encoded again by AWS's rules (every byte but `A-Za-z0-9-._~` and `/` as `%XX`), the query
//! pairs sorted by encoded name then value, the signed headers (lower-case names, values with
//! runs of spaces folded and trimmed), and the payload hash the client declared.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm S3 signs with.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Payload hash of a request whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Payload hash of a body sent in signed chunks.
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Most skew allowed between the client's clock and ours.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Longest validity of a presigned URL.
pub const MAX_PRESIGN_SECS: u64 = 7 * 24 * 3600;

/// Why a signature is refused. Each maps to one S3 error code at the API edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The `Authorization` header or the presign query is not SigV4 as S3 defines it.
    #[error("malformed authorization: {0}")]
    Malformed(String),
    /// The signature does not match what the secret signs.
    #[error("the request signature does not match")]
    Mismatch,
    /// `X-Amz-Date` is further than 15 minutes from the gateway's clock.
    #[error("the request time is too far from the gateway's clock")]
    Skewed,
    /// A presigned URL past its expiry.
    #[error("the presigned URL has expired")]
    Expired,
}

/// The credential scope: `<date>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    fn text(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub access_key: String,
    pub scope: Scope,
    /// Lower-case, in the order given (which must be sorted).
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
}

/// Parses the `Authorization` header of a SigV4 request.
pub fn parse_authorization(value: &str) -> Result<AuthHeader, SigError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| SigError::Malformed(format!("the algorithm is not {ALGORITHM}")))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        } else if !part.is_empty() {
            return Err(SigError::Malformed(format!("unknown field {part:?}")));
        }
    }
    let missing = |what: &str| SigError::Malformed(format!("{what} is missing"));
    let (access_key, scope) = parse_credential(credential.ok_or_else(|| missing("Credential"))?)?;
    let signed_headers = parse_signed_headers(signed.ok_or_else(|| missing("SignedHeaders"))?)?;
    let signature = parse_signature(signature.ok_or_else(|| missing("Signature"))?)?;
    Ok(AuthHeader {
        access_key,
        scope,
        signed_headers,
        signature,
    })
}

/// `AKID/20130524/us-east-1/s3/aws4_request`.
pub fn parse_credential(text: &str) -> Result<(String, Scope), SigError> {
    let mut it = text.split('/');
    let fields: Vec<&str> = it.by_ref().take(5).collect();
    if fields.len() != 5 || it.next().is_some() || fields[4] != "aws4_request" {
        return Err(SigError::Malformed(format!(
            "credential {text:?} is not KEY/DATE/REGION/SERVICE/aws4_request"
        )));
    }
    if fields[0].is_empty() {
        return Err(SigError::Malformed("the access key id is empty".into()));
    }
    if fields[1].len() != 8 || !fields[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigError::Malformed(format!(
            "credential date {:?} is not YYYYMMDD",
            fields[1]
        )));
    }
    Ok((
        fields[0].to_owned(),
        Scope {
            date: fields[1].to_owned(),
            region: fields[2].to_owned(),
            service: fields[3].to_owned(),
        },
    ))
}

fn parse_signed_headers(text: &str) -> Result<Vec<String>, SigError> {
    let names: Vec<String> = text.split(';').map(str::to_owned).collect();
    if names
        .iter()
        .any(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(SigError::Malformed(format!(
            "signed headers {text:?} are not lower-case names separated by ';'"
        )));
    }
    if !names.windows(2).all(|w| w[0] < w[1]) {
        return Err(SigError::Malformed(format!(
            "signed headers {text:?} are not sorted"
        )));
    }
    if !names.iter().any(|n| n == "host") {
        return Err(SigError::Malformed("the host header is not signed".into()));
    }
    Ok(names)
}

fn parse_signature(text: &str) -> Result<[u8; 32], SigError> {
    let bytes = hex_decode(text)
        .filter(|b| b.len() == 32)
        .ok_or_else(|| SigError::Malformed("the signature is not 64 hex digits".into()))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// What a signature covers, as received.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent, still percent-encoded.
    pub raw_path: &'a str,
    /// The query as sent (without `?`), still percent-encoded. For a presigned request,
    /// `X-Amz-Signature` is left out of the canonical query.
    pub raw_query: &'a str,
    /// Every header of the request, names in any case.
    pub headers: &'a [(String, String)],
    /// `x-amz-content-sha256`, or [`UNSIGNED_PAYLOAD`] for presigned URLs.
    pub payload_hash: &'a str,
}

/// The canonical request of `req` over `signed_headers`.
pub fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[String],
) -> Result<String, SigError> {
    let path = uri_encode(&percent_decode(req.raw_path)?, false);
    let query = canonical_query(req.raw_query)?;
    let mut out = format!("{}\n{path}\n{query}\n", req.method);
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| fold_spaces(v))
            .collect();
        if values.is_empty() {
            return Err(SigError::Malformed(format!(
                "signed header {name:?} is not in the request"
            )));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(req.payload_hash);
    Ok(out)
}

/// `AWS4-HMAC-SHA256\n<amz date>\n<scope>\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.text(),
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The key of one day, region and service, derived from the secret.
pub fn signing_key(secret: &str, scope: &Scope) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The signature of `string_to_sign` with `key`.
pub fn sign(key: &[u8; 32], string_to_sign: &str) -> [u8; 32] {
    hmac(key, string_to_sign.as_bytes())
}

/// Checks `claimed` against the signature of `string_to_sign`, in constant time.
pub fn verify(key: &[u8; 32], string_to_sign: &str, claimed: &[u8; 32]) -> Result<(), SigError> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| SigError::Mismatch)?;
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(claimed).map_err(|_| SigError::Mismatch)
}

/// Verifies a header-signed request at `now_unix` seconds.
pub fn verify_header_signed(
    req: &SignedRequest<'_>,
    auth: &AuthHeader,
    amz_date: &str,
    secret: &str,
    now_unix: i64,
) -> Result<(), SigError> {
    let at = parse_amz_date(amz_date)?;
    if at.abs_diff(now_unix) > MAX_SKEW_SECS as u64 {
        return Err(SigError::Skewed);
    }
    if !amz_date.starts_with(&auth.scope.date) {
        return Err(SigError::Malformed(
            "the credential date is not the day of X-Amz-Date".into(),
        ));
    }
    let canonical = canonical_request(req, &auth.signed_headers)?;
    let to_sign = string_to_sign(amz_date, &auth.scope, &canonical);
    verify(&signing_key(secret, &auth.scope), &to_sign, &auth.signature)
}

/// The signature that opens a chunk of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` body, chained
/// from the previous chunk's (the first from the request's own signature).
pub fn chunk_string_to_sign(
    amz_date: &str,
    scope: &Scope,
    previous: &[u8; 32],
    chunk: &[u8],
) -> String {
    format!(
        "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{}\n{}\n{}\n{}",
        scope.text(),
        hex(previous),
        hex(&Sha256::digest(b"")),
        hex(&Sha256::digest(chunk))
    )
}

/// Seconds since the epoch of an `X-Amz-Date` (`YYYYMMDD'T'HHMMSS'Z'`).
pub fn parse_amz_date(text: &str) -> Result<i64, SigError> {
    let bad = || SigError::Malformed(format!("X-Amz-Date {text:?} is not YYYYMMDDTHHMMSSZ"));
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, SigError> {
        let s = text.get(r).ok_or_else(bad)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // An HMAC accepts keys of any length; this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// AWS's URI encoding: unreserved bytes as they are, `/` kept unless `encode_slash`, every
/// other byte as `%XX` (upper-case hex).
pub fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (b == b'/' && !encode_slash);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is an error (not passed through).
pub fn percent_decode(text: &str) -> Result<Vec<u8>, SigError> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let byte = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| SigError::Malformed(format!("bad escape in {text:?}")))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The query pairs, decoded, encoded again by AWS's rules, sorted; `X-Amz-Signature` left out.
fn canonical_query(raw: &str) -> Result<String, SigError> {
    let mut pairs = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // A form-encoded `+` is a space for S3 query values.
        let name = uri_encode(&percent_decode(&name.replace('+', "%20"))?, true);
        let value = uri_encode(&percent_decode(&value.replace('+', "%20"))?, true);
        if name == "X-Amz-Signature" {
            continue;
        }
        pairs.push((name, value));
    }
    pairs.sort();
    Ok(pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&"))
}

/// Trims a header value and folds runs of spaces inside it to one.
fn fold_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A presigned request's SigV4 query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedQuery {
    pub access_key: String,
    pub scope: Scope,
    pub amz_date: String,
    pub expires_secs: u64,
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
}

/// Reads the `X-Amz-*` parameters of a presigned URL, if the query has `X-Amz-Algorithm`.
pub fn parse_presigned(raw_query: &str) -> Result<Option<PresignedQuery>, SigError> {
    let mut found = std::collections::HashMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name.starts_with("X-Amz-") {
            let value = String::from_utf8(percent_decode(value)?)
                .map_err(|_| SigError::Malformed(format!("{name} is not UTF-8")))?;
            found.insert(name.to_owned(), value);
        }
    }
    let Some(algorithm) = found.get("X-Amz-Algorithm") else {
        return Ok(None);
    };
    if algorithm != ALGORITHM {
        return Err(SigError::Malformed(format!(
            "X-Amz-Algorithm {algorithm:?} is not {ALGORITHM}"
        )));
    }
    let get = |name: &str| {
        found
            .get(name)
            .ok_or_else(|| SigError::Malformed(format!("{name} is missing")))
    };
    let (access_key, scope) = parse_credential(get("X-Amz-Credential")?)?;
    let expires_secs: u64 = get("X-Amz-Expires")?
        .parse()
        .map_err(|_| SigError::Malformed("X-Amz-Expires is not a number of seconds".into()))?;
    if expires_secs == 0 || expires_secs > MAX_PRESIGN_SECS {
        return Err(SigError::Malformed(format!(
            "X-Amz-Expires must be 1 to {MAX_PRESIGN_SECS} seconds"
        )));
    }
    Ok(Some(PresignedQuery {
        access_key,
        scope,
        amz_date: get("X-Amz-Date")?.clone(),
        expires_secs,
        signed_headers: parse_signed_headers(get("X-Amz-SignedHeaders")?)?,
        signature: parse_signature(get("X-Amz-Signature")?)?,
    }))
}

/// Verifies a presigned request at `now_unix` seconds.
pub fn verify_presigned(
    req: &SignedRequest<'_>,
    q: &PresignedQuery,
    secret: &str,
    now_unix: i64,
) -> Result<(), SigError> {
    let at = parse_amz_date(&q.amz_date)?;
    if now_unix < at - MAX_SKEW_SECS {
        return Err(SigError::Skewed);
    }
    if now_unix > at.saturating_add(q.expires_secs as i64) {
        return Err(SigError::Expired);
    }
    let canonical = canonical_request(req, &q.signed_headers)?;
    let to_sign = string_to_sign(&q.amz_date, &q.scope, &canonical);
    verify(&signing_key(secret, &q.scope), &to_sign, &q.signature)
}

#[cfg(test)]
mod tests;
