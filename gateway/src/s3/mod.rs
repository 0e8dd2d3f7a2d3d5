//! The S3-compatible API (issue #14). So far: request signatures ([`sigv4`]), pure and tested
//! against AWS's published vectors; the listener, operations and XML errors build on it.

pub mod sigv4;
