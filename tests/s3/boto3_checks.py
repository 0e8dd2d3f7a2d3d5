"""boto3 against a sixfold S3 listener, driven by tests/tests/s3_clients.rs.

Usage: python3 boto3_checks.py ENDPOINT KEY_ID SECRET WORK_DIR

Each check prints "ok <name>"; any failure raises (non-zero exit). Small data only.
"""

import datetime as real_datetime
import hashlib
import http.client
import os
import sys
import urllib.parse
import zlib
import base64
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore
import botocore.auth
from boto3.s3.transfer import TransferConfig
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ENDPOINT, KEY_ID, SECRET, WORK = sys.argv[1:5]
MIB = 1 << 20
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})


def client(secret=SECRET, config=NO_RETRY):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=config,
    )


def data(n, seed):
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the call succeeded")


def ok(name):
    print("ok", name, flush=True)


s3 = client()
BUCKET = "boto3-checks"
s3.create_bucket(Bucket=BUCKET)


def keys_of(bucket, prefix=""):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


# --- upload_file / download_file through multipart, and a ranged get.
src = os.path.join(WORK, "boto3-src.bin")
payload = data(12 * MIB + 12345, "multipart")
with open(src, "wb") as f:
    f.write(payload)
forced = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=4)
s3.upload_file(src, BUCKET, "big/file.bin", Config=forced)
head = s3.head_object(Bucket=BUCKET, Key="big/file.bin")
assert head["ContentLength"] == len(payload), head
assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
dst = os.path.join(WORK, "boto3-dst.bin")
s3.download_file(BUCKET, "big/file.bin", dst, Config=forced)
with open(dst, "rb") as f:
    assert hashlib.sha256(f.read()).digest() == hashlib.sha256(payload).digest()
ok("upload_file/download_file multipart")

# A range across the first part boundary (5 MiB), and one at the end.
r = s3.get_object(Bucket=BUCKET, Key="big/file.bin", Range="bytes=%d-%d" % (5 * MIB - 10, 5 * MIB + 9))
assert r["Body"].read() == payload[5 * MIB - 10 : 5 * MIB + 10]
assert r["ContentRange"] == "bytes %d-%d/%d" % (5 * MIB - 10, 5 * MIB + 9, len(payload)), r["ContentRange"]
r = s3.get_object(Bucket=BUCKET, Key="big/file.bin", Range="bytes=-100")
assert r["Body"].read() == payload[-100:]
# partNumber reads one segment.
r = s3.get_object(Bucket=BUCKET, Key="big/file.bin", PartNumber=2)
assert r["Body"].read() == payload[5 * MIB : 10 * MIB]
assert error_code(lambda: s3.get_object(Bucket=BUCKET, Key="big/file.bin", Range="bytes=%d-" % (len(payload) + 5)))[0] == "InvalidRange"
ok("ranged get_object")

# Single PUT: the ETag is the MD5 of the bytes.
small = data(300000, "small")
put = s3.put_object(Bucket=BUCKET, Key="small.bin", Body=small)
assert put["ETag"].strip('"') == hashlib.md5(small).hexdigest(), put
assert s3.get_object(Bucket=BUCKET, Key="small.bin")["Body"].read() == small
# Conditional GETs.
etag = put["ETag"]
assert error_code(lambda: s3.get_object(Bucket=BUCKET, Key="small.bin", IfNoneMatch=etag))[1] == 304
assert error_code(lambda: s3.get_object(Bucket=BUCKET, Key="small.bin", IfMatch='"0000"'))[0] == "PreconditionFailed"
assert s3.get_object(Bucket=BUCKET, Key="small.bin", IfMatch=etag)["Body"].read() == small
ok("put_object md5 etag and conditional gets")

# CopyObject and UploadPartCopy.
s3.copy_object(Bucket=BUCKET, Key="copy.bin", CopySource={"Bucket": BUCKET, "Key": "small.bin"})
assert s3.get_object(Bucket=BUCKET, Key="copy.bin")["Body"].read() == small
up = s3.create_multipart_upload(Bucket=BUCKET, Key="copied-parts.bin")["UploadId"]
p1 = s3.upload_part_copy(Bucket=BUCKET, Key="copied-parts.bin", UploadId=up, PartNumber=1,
                         CopySource={"Bucket": BUCKET, "Key": "big/file.bin"}, CopySourceRange="bytes=0-%d" % (5 * MIB - 1))
p2 = s3.upload_part_copy(Bucket=BUCKET, Key="copied-parts.bin", UploadId=up, PartNumber=2,
                         CopySource={"Bucket": BUCKET, "Key": "small.bin"})
s3.complete_multipart_upload(Bucket=BUCKET, Key="copied-parts.bin", UploadId=up, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
    {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]},
]})
assert s3.get_object(Bucket=BUCKET, Key="copied-parts.bin")["Body"].read() == payload[: 5 * MIB] + small
ok("copy_object and upload_part_copy")

# --- list_objects_v2 pagination over 1,100 keys (and v1 with a marker).
LIST = "boto3-list"
s3.create_bucket(Bucket=LIST)
names = ["k/%04d" % i for i in range(1100)]
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda k: s3.put_object(Bucket=LIST, Key=k, Body=k.encode()), names))
seen = []
pages = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LIST, PaginationConfig={"PageSize": 250}):
    pages += 1
    seen += [o["Key"] for o in page.get("Contents", [])]
assert seen == names, (len(seen), seen[:3])
assert pages == 5, pages
seen = []
for page in s3.get_paginator("list_objects").paginate(Bucket=LIST, PaginationConfig={"PageSize": 300}):
    seen += [o["Key"] for o in page.get("Contents", [])]
assert seen == names
# Delimiter and url encoding.
s3.put_object(Bucket=LIST, Key="a b/c+d", Body=b"x")
r = s3.list_objects_v2(Bucket=LIST, Delimiter="/")
assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a b/", "k/"], r["CommonPrefixes"]
# Asked for explicitly, botocore leaves the encoding to the caller.
r = s3.list_objects_v2(Bucket=LIST, Prefix="a", EncodingType="url")
assert [o["Key"] for o in r["Contents"]] == ["a%20b/c%2Bd"], r["Contents"]
# DeleteObjects in pages of 1,000.
for i in range(0, len(names), 1000):
    s3.delete_objects(Bucket=LIST, Delete={"Objects": [{"Key": k} for k in names[i : i + 1000]], "Quiet": True})
s3.delete_object(Bucket=LIST, Key="a b/c+d")
assert s3.list_objects_v2(Bucket=LIST)["KeyCount"] == 0
s3.delete_bucket(Bucket=LIST)
ok("list_objects_v2 pagination over 1100 keys")

# --- errors, and nothing stored after them.
assert error_code(lambda: s3.get_object(Bucket=BUCKET, Key="missing"))[0] == "NoSuchKey"
assert error_code(lambda: s3.get_object(Bucket="no-such-bucket", Key="k"))[0] == "NoSuchBucket"
assert error_code(lambda: s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x"))[0] == "NoSuchBucket"
assert error_code(lambda: s3.head_bucket(Bucket="no-such-bucket"))[1] == 404
assert error_code(lambda: s3.upload_part(Bucket=BUCKET, Key="k", UploadId="00000000-0000-0000-0000-000000000000", PartNumber=1, Body=b"x"))[0] == "NoSuchUpload"
assert error_code(lambda: s3.list_parts(Bucket=BUCKET, Key="k", UploadId="not-an-id"))[0] == "NoSuchUpload"
assert error_code(lambda: s3.delete_bucket(Bucket=BUCKET))[0] == "BucketNotEmpty"
assert error_code(lambda: s3.create_bucket(Bucket="Bad_Name"))[0] == "InvalidBucketName"
wrong = client(secret="x" * 40)
assert error_code(lambda: wrong.list_buckets()) == ("SignatureDoesNotMatch", 403)
assert error_code(lambda: wrong.put_object(Bucket=BUCKET, Key="wrong-secret", Body=b"x"))[0] == "SignatureDoesNotMatch"
ok("error codes")

# Parts out of order, a too-small part, and an unknown part in Complete.
up = s3.create_multipart_upload(Bucket=BUCKET, Key="mp-errors")["UploadId"]
e1 = s3.upload_part(Bucket=BUCKET, Key="mp-errors", UploadId=up, PartNumber=1, Body=data(1 * MIB, "p1"))["ETag"]
e2 = s3.upload_part(Bucket=BUCKET, Key="mp-errors", UploadId=up, PartNumber=2, Body=data(1 * MIB, "p2"))["ETag"]
listed = s3.list_parts(Bucket=BUCKET, Key="mp-errors", UploadId=up)["Parts"]
assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, MIB), (2, MIB)], listed
uploads = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
assert [u["UploadId"] for u in uploads] == [up], uploads
complete = lambda parts: s3.complete_multipart_upload(Bucket=BUCKET, Key="mp-errors", UploadId=up, MultipartUpload={"Parts": parts})
assert error_code(lambda: complete([{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]))[0] == "InvalidPartOrder"
assert error_code(lambda: complete([{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]))[0] == "EntityTooSmall"
assert error_code(lambda: complete([{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e2}]))[0] == "InvalidPart"
assert error_code(lambda: complete([{"PartNumber": 1, "ETag": '"0123"'}]))[0] == "InvalidPart"
assert error_code(lambda: s3.head_object(Bucket=BUCKET, Key="mp-errors"))[1] == 404
# A single small part is a valid (last) part.
done = complete([{"PartNumber": 2, "ETag": e2}])
assert s3.get_object(Bucket=BUCKET, Key="mp-errors")["Body"].read() == data(1 * MIB, "p2")
assert error_code(lambda: s3.list_parts(Bucket=BUCKET, Key="mp-errors", UploadId=up))[0] == "NoSuchUpload"
# Abort removes an upload.
up = s3.create_multipart_upload(Bucket=BUCKET, Key="aborted")["UploadId"]
s3.upload_part(Bucket=BUCKET, Key="aborted", UploadId=up, PartNumber=1, Body=b"abc")
s3.abort_multipart_upload(Bucket=BUCKET, Key="aborted", UploadId=up)
assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
ok("multipart errors and abort")

# --- a clock 20 minutes behind: RequestTimeTooSkewed.
real_now = botocore.auth.get_current_datetime


def skewed_now(*args, **kwargs):
    return real_now(*args, **kwargs) - real_datetime.timedelta(minutes=20)


botocore.auth.get_current_datetime = skewed_now
try:
    code = error_code(lambda: client().list_buckets())
finally:
    botocore.auth.get_current_datetime = real_now
assert code == ("RequestTimeTooSkewed", 403), code
ok("skewed clock")


# --- hand-built aws-chunked bodies (STREAMING-UNSIGNED-PAYLOAD-TRAILER), right and lying.
def chunked_put(key, chunks, trailer_crc, lie=None):
    body = b""
    for c in chunks:
        size = len(c) if lie is None else len(c) + lie
        body += b"%x\r\n" % size + c + b"\r\n"
    body += b"0\r\n" + b"x-amz-checksum-crc32:" + trailer_crc.encode() + b"\r\n\r\n"
    decoded = sum(len(c) for c in chunks)
    url = "%s/%s/%s" % (ENDPOINT, BUCKET, key)
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "X-Amz-Decoded-Content-Length": str(decoded),
        "X-Amz-Trailer": "x-amz-checksum-crc32",
        "Content-Length": str(len(body)),
    }
    request = AWSRequest(method="PUT", url=url, headers=headers, data=body)
    # SigV4Auth signs the X-Amz-Content-SHA256 given (S3SigV4Auth would replace it with the
    # hash of the body, and the framing would then be the object).
    botocore.auth.SigV4Auth(Credentials(KEY_ID, SECRET), "s3", "us-east-1").add_auth(request)
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("PUT", parsed.path, body=body, headers=dict(request.headers.items()))
    resp = conn.getresponse()
    text = resp.read()
    conn.close()
    return resp.status, text


chunks = [data(70000, "c1"), data(65536, "c2"), data(1000, "c3")]
whole = b"".join(chunks)
crc = base64.b64encode(zlib.crc32(whole).to_bytes(4, "big")).decode()
status, text = chunked_put("chunked.bin", chunks, crc)
assert status == 200, (status, text)
assert s3.get_object(Bucket=BUCKET, Key="chunked.bin")["Body"].read() == whole
status, text = chunked_put("chunked-bad-crc.bin", chunks, "AAAAAA==")
assert status == 400 and b"BadDigest" in text, (status, text)
status, text = chunked_put("chunked-lying.bin", chunks, crc, lie=7)
assert 400 <= status < 500, (status, text)
status, text = chunked_put("chunked-lying2.bin", chunks, crc, lie=-7)
assert 400 <= status < 500, (status, text)
for key in ["chunked-bad-crc.bin", "chunked-lying.bin", "chunked-lying2.bin"]:
    assert error_code(lambda: s3.head_object(Bucket=BUCKET, Key=key))[1] == 404, key
ok("aws-chunked framing decoded, trailer checked, lies refused")


# --- STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk signed, a tampered chunk refused.
import hmac


def signed_chunked_put(key, chunks, tamper=False):
    url = "%s/%s/%s" % (ENDPOINT, BUCKET, key)
    decoded = sum(len(c) for c in chunks)
    encoded_len = sum(len(b"%x;chunk-signature=" % len(c)) + 64 + 2 + len(c) + 2 for c in chunks)
    encoded_len += len(b"0;chunk-signature=") + 64 + 4
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "X-Amz-Decoded-Content-Length": str(decoded),
        "Content-Length": str(encoded_len),
    }
    request = AWSRequest(method="PUT", url=url, headers=headers)
    # SigV4Auth signs the X-Amz-Content-SHA256 given (S3SigV4Auth would replace it with the
    # hash of the body, and the framing would then be the object).
    botocore.auth.SigV4Auth(Credentials(KEY_ID, SECRET), "s3", "us-east-1").add_auth(request)
    amz_date = request.headers["X-Amz-Date"]
    seed = request.headers["Authorization"].split("Signature=")[1].strip()
    day = amz_date[:8]
    scope = "%s/us-east-1/s3/aws4_request" % day
    key_bytes = ("AWS4" + SECRET).encode()
    for part in (day, "us-east-1", "s3", "aws4_request"):
        key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
    empty = hashlib.sha256(b"").hexdigest()
    body = b""
    previous = seed
    for i, chunk in enumerate(list(chunks) + [b""]):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, empty, hashlib.sha256(chunk).hexdigest()])
        sig = hmac.new(key_bytes, sts.encode(), hashlib.sha256).hexdigest()
        previous = sig
        sent = chunk
        if tamper and i == 1:
            sent = bytes([chunk[0] ^ 1]) + chunk[1:]
        body += b"%x;chunk-signature=%s\r\n" % (len(chunk), sig.encode()) + sent + b"\r\n"
    assert len(body) == encoded_len, (len(body), encoded_len)
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("PUT", parsed.path, body=body, headers=dict(request.headers.items()))
    resp = conn.getresponse()
    text = resp.read()
    conn.close()
    return resp.status, text


chunks = [data(65536, "s1"), data(65536, "s2"), data(12345, "s3")]
status, text = signed_chunked_put("signed-chunks.bin", chunks)
assert status == 200, (status, text)
assert s3.get_object(Bucket=BUCKET, Key="signed-chunks.bin")["Body"].read() == b"".join(chunks)
status, text = signed_chunked_put("signed-chunks-tampered.bin", chunks, tamper=True)
assert status == 403 and b"SignatureDoesNotMatch" in text, (status, text)
assert error_code(lambda: s3.head_object(Bucket=BUCKET, Key="signed-chunks-tampered.bin"))[1] == 404
ok("streaming chunk signatures checked")

print("boto3 checks passed")
