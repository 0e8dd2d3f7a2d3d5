//! Vectors from the AWS S3 documentation ("Signature Calculations for the Authorization
//! Header", "Authenticating Requests: Using Query Parameters", "Signature Calculations for the
//! Authorization Header: Transferring Payload in Multiple Chunks"), each also reproduced with
//! botocore 1.43, plus one botocore request with escapes, a query and folded spaces.

use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const DATE: &str = "20130524T000000Z";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// 2013-05-24T00:00:00Z.
const NOW: i64 = 1_369_353_600;

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn sig_hex(auth: &str) -> String {
    hex(&parse_authorization(auth).expect("parses").signature)
}

#[test]
fn amz_dates_are_seconds_since_the_epoch() {
    assert_eq!(parse_amz_date(DATE), Ok(NOW));
    assert_eq!(parse_amz_date("19700101T000001Z"), Ok(1));
    assert_eq!(parse_amz_date("20240229T235959Z"), Ok(1_709_251_199));
    for bad in [
        "2013-05-24T00:00:00Z",
        "20131324T000000Z",
        "20130524T250000Z",
        "20130524 000000Z",
        "２0130524T000000Z",
    ] {
        assert!(parse_amz_date(bad).is_err(), "{bad}");
    }
}

#[test]
fn get_object_with_a_range_verifies() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
    let parsed = parse_authorization(auth).expect("parses");
    assert_eq!(parsed.access_key, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(parsed.scope.region, "us-east-1");
    let h = headers(&[
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", DATE),
    ]);
    let req = SignedRequest {
        method: "GET",
        raw_path: "/test.txt",
        raw_query: "",
        headers: &h,
        payload_hash: EMPTY_SHA256,
    };
    assert_eq!(
        verify_header_signed(&req, &parsed, DATE, SECRET, NOW),
        Ok(())
    );
    // Another secret, method, range or clock: refused.
    assert_eq!(
        verify_header_signed(&req, &parsed, DATE, "other", NOW),
        Err(SigError::Mismatch)
    );
    let put = SignedRequest {
        method: "PUT",
        ..req.clone()
    };
    assert_eq!(
        verify_header_signed(&put, &parsed, DATE, SECRET, NOW),
        Err(SigError::Mismatch)
    );
    let h2 = headers(&[
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Range", "bytes=0-10"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", DATE),
    ]);
    let other_range = SignedRequest {
        headers: &h2,
        ..req.clone()
    };
    assert_eq!(
        verify_header_signed(&other_range, &parsed, DATE, SECRET, NOW),
        Err(SigError::Mismatch)
    );
    assert_eq!(
        verify_header_signed(&req, &parsed, DATE, SECRET, NOW + MAX_SKEW_SECS + 1),
        Err(SigError::Skewed)
    );
    assert_eq!(
        verify_header_signed(&req, &parsed, DATE, SECRET, NOW + MAX_SKEW_SECS),
        Ok(())
    );
}

#[test]
fn a_listing_query_is_sorted_into_the_canonical_request() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
    let h = headers(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", DATE),
    ]);
    // The client may send the pairs in any order.
    let req = SignedRequest {
        method: "GET",
        raw_path: "/",
        raw_query: "prefix=J&max-keys=2",
        headers: &h,
        payload_hash: EMPTY_SHA256,
    };
    let parsed = parse_authorization(auth).expect("parses");
    assert_eq!(
        verify_header_signed(&req, &parsed, DATE, SECRET, NOW),
        Ok(())
    );
}

#[test]
fn escapes_in_path_and_query_and_folded_header_spaces_match_botocore() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note, Signature=ea49a406adabaf65dd50066006917e1a6d8f28f353eca7be7635555ebb61e409";
    let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let h = headers(&[
        ("Content-Type", "text/plain"),
        ("X-Amz-Meta-Note", "  two   spaces  "),
        ("Host", "127.0.0.1:9000"),
        ("X-Amz-Date", DATE),
        ("X-Amz-Content-SHA256", hello),
    ]);
    let req = SignedRequest {
        method: "PUT",
        raw_path: "/bucket/a%20b/caf%C3%A9%2Bx~.txt",
        raw_query: "partNumber=1&uploadId=abc%2Fdef",
        headers: &h,
        payload_hash: hello,
    };
    let parsed = parse_authorization(auth).expect("parses");
    assert_eq!(
        verify_header_signed(&req, &parsed, DATE, SECRET, NOW),
        Ok(())
    );
}

#[test]
fn a_presigned_url_verifies_until_it_expires() {
    let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    let q = parse_presigned(query).expect("parses").expect("presigned");
    assert_eq!(q.expires_secs, 86_400);
    let h = headers(&[("Host", "examplebucket.s3.amazonaws.com")]);
    let req = SignedRequest {
        method: "GET",
        raw_path: "/test.txt",
        raw_query: query,
        headers: &h,
        payload_hash: UNSIGNED_PAYLOAD,
    };
    assert_eq!(verify_presigned(&req, &q, SECRET, NOW + 3600), Ok(()));
    assert_eq!(verify_presigned(&req, &q, SECRET, NOW + 86_400), Ok(()));
    assert_eq!(
        verify_presigned(&req, &q, SECRET, NOW + 86_401),
        Err(SigError::Expired)
    );
    let other = SignedRequest {
        raw_path: "/other.txt",
        ..req.clone()
    };
    assert_eq!(
        verify_presigned(&other, &q, SECRET, NOW),
        Err(SigError::Mismatch)
    );
    assert_eq!(parse_presigned("max-keys=2"), Ok(None));
    assert!(parse_presigned(&query.replace("86400", "604801")).is_err());
}

#[test]
fn streaming_chunk_signatures_chain_from_the_seed() {
    // PUT /examplebucket/chunkObject.txt: 66560 bytes of 'a' in chunks of 65536 and 1024.
    let decoded = "66560";
    let h = headers(&[
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", DATE),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", STREAMING_PAYLOAD),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded),
        ("Content-Length", "66824"),
    ]);
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    let parsed = parse_authorization(auth).expect("parses");
    let req = SignedRequest {
        method: "PUT",
        raw_path: "/examplebucket/chunkObject.txt",
        raw_query: "",
        headers: &h,
        payload_hash: STREAMING_PAYLOAD,
    };
    assert_eq!(
        verify_header_signed(&req, &parsed, DATE, SECRET, NOW),
        Ok(())
    );
    let key = signing_key(SECRET, &parsed.scope);
    let mut previous = parsed.signature;
    let body = vec![b'a'; 66_560];
    let expected = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];
    for (chunk, want) in [&body[..65_536], &body[65_536..], &[][..]]
        .into_iter()
        .zip(expected)
    {
        let got = sign(
            &key,
            &chunk_string_to_sign(DATE, &parsed.scope, &previous, chunk),
        );
        assert_eq!(hex(&got), want);
        previous = got;
    }
}

#[test]
fn malformed_authorization_is_refused_with_a_reason() {
    let good = "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
    assert!(parse_authorization(good).is_ok());
    for (bad, why) in [
        (good.replace("AWS4-HMAC-SHA256", "AWS"), "algorithm"),
        (good.replace("aws4_request", "aws5_request"), "credential"),
        (good.replace("/20130524/", "/2013-05-24/"), "date"),
        (good.replace("Credential=AK/", "Credential=/"), "access key"),
        (good.replace("host;x-amz-date", "x-amz-date;host"), "sorted"),
        (
            good.replace("host;x-amz-date", "Host;x-amz-date"),
            "lower-case",
        ),
        (good.replace("host;x-amz-date", "x-amz-date"), "host"),
        (good.replace("Signature=f0", "Signature=zz"), "hex"),
        (
            good.replace(
                ", Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                "",
            ),
            "Signature",
        ),
    ] {
        let err = parse_authorization(&bad).expect_err(why).to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
    assert_eq!(sig_hex(good).len(), 64);
    // A '%' that is not an escape is an error, not a literal.
    assert!(percent_decode("/a%2").is_err());
    assert!(percent_decode("/a%zz").is_err());
    assert_eq!(percent_decode("/a%2Fb").expect("ok"), b"/a/b");
}
