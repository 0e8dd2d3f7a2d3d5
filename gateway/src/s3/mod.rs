//! The S3-compatible API (issue #14). So far: request signatures ([`sigv4`]) and the
//! `aws-chunked` body decoding ([`aws_chunked`]), pure and tested against AWS's published vectors; the listener, operations and XML errors build on it.

pub mod aws_chunked;
pub mod sigv4;
