//! `multipart/form-data` framing for the streaming upload path (RFC 7578, RFC 2046 §5.1).
//! Pure code: no I/O, every buffer bounded by the caller's limits.
//!
//! A form streamed through is read in three pieces:
//! - the *preamble*: everything up to and including the blank line that ends the file field's
//!   headers, with any small fields before it ([`parse_preamble`], on a bounded buffer);
//! - the *file*: the bytes up to the delimiter `\r\n--<boundary>`, found by [`FileEnd`] as the
//!   frames pass, holding back at most a delimiter's length;
//! - the *trailer*: the delimiter and what follows it (more small fields, the closing
//!   `--<boundary>--`, an epilogue), collected in a bounded buffer and checked by
//!   [`check_trailer`].

use memchr::memmem;

/// Longest boundary accepted (RFC 2046 allows 70 characters; some clients go beyond).
pub const MAX_BOUNDARY_LEN: usize = 200;

/// Why a form cannot be uploaded. Each is a malformed request (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the multipart Content-Type has no boundary parameter")]
    NoBoundary,
    #[error(
        "the multipart boundary is empty, longer than {MAX_BOUNDARY_LEN} bytes or not printable ASCII"
    )]
    BadBoundary,
    #[error("the form's fields and headers before the file exceed {0} bytes")]
    PreambleTooLong(usize),
    #[error("the form has no file field (a field with a filename, or named \"file\")")]
    NoFileField,
    #[error("the form has more than one file field; send one file per request")]
    SecondFile,
    #[error("the form's fields other than the file exceed {0} bytes")]
    OtherFieldsTooLarge(usize),
    #[error("the form's bytes after the file exceed {0} bytes")]
    TrailerTooLong(usize),
    #[error("the form ended before the end of its file field (no closing boundary)")]
    FileNotClosed,
    #[error("the form ended before its closing boundary")]
    Truncated,
    #[error("malformed form: {0}")]
    Malformed(&'static str),
}

/// The boundary of a `multipart/form-data` Content-Type, quoted or not.
pub fn boundary_from_content_type(content_type: &str) -> Result<String, FormError> {
    let params_at = content_type.find(';').unwrap_or(content_type.len());
    if !content_type[..params_at]
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return Err(FormError::Malformed("not multipart/form-data"));
    }
    // A quoted boundary may itself contain ';', so parameters are walked by hand.
    let mut rest = &content_type.as_bytes()[params_at..];
    while let Some((&b';', tail)) = rest.split_first() {
        let (key, value, after) = parse_param(tail)?;
        rest = after;
        if key.eq_ignore_ascii_case("boundary") {
            let ok = !value.is_empty()
                && value.len() <= MAX_BOUNDARY_LEN
                && value.bytes().all(|b| (b' '..=b'~').contains(&b))
                && !value.ends_with(' ');
            return if ok {
                Ok(value)
            } else {
                Err(FormError::BadBoundary)
            };
        }
    }
    Err(FormError::NoBoundary)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| matches!(c, b' ' | b'\t')).count();
    &b[n..]
}

/// One `key=value` parameter (value a token or a quoted string) at the start of `input`, and
/// the input after it (at the next `;`, or empty).
fn parse_param(input: &[u8]) -> Result<(String, String, &[u8]), FormError> {
    let input = trim_start(input);
    let key_len = input
        .iter()
        .position(|&c| c == b'=' || c == b';')
        .unwrap_or(input.len());
    let key = String::from_utf8_lossy(&input[..key_len]).trim().to_owned();
    let Some((&b'=', value)) = input[key_len..].split_first() else {
        // A parameter without a value (`; foo`): ignored.
        return Ok((key, String::new(), &input[key_len..]));
    };
    let value = trim_start(value);
    if let Some((&b'"', quoted)) = value.split_first() {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match quoted.get(i) {
                None => return Err(FormError::Malformed("unterminated quoted string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = quoted
                        .get(i + 1)
                        .ok_or(FormError::Malformed("unterminated quoted string"))?;
                    out.push(*c);
                    i += 2;
                }
                Some(&c) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        let after = &quoted[i + 1..];
        let next = after.iter().position(|&c| c == b';').unwrap_or(after.len());
        Ok((
            key,
            String::from_utf8_lossy(&out).into_owned(),
            &after[next..],
        ))
    } else {
        let end = value.iter().position(|&c| c == b';').unwrap_or(value.len());
        let text = String::from_utf8_lossy(&value[..end]).trim().to_owned();
        Ok((key, text, &value[end..]))
    }
}

/// `%XX` escapes to bytes (RFC 8187 `ext-value`), which must then be UTF-8. Also decodes the
/// `UTF-8''` form of the `X-File-Name` header.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `filename*=UTF-8'lang'%XX..`: the decoded name, if the charset is UTF-8 (or ASCII).
fn ext_value(value: &str) -> Option<String> {
    let mut it = value.splitn(3, '\'');
    let charset = it.next()?;
    let _language = it.next()?;
    let encoded = it.next()?;
    if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii")) {
        return None;
    }
    percent_decode(encoded)
}

/// What the headers of one form field say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldHeaders {
    /// `name` of the Content-Disposition.
    pub name: Option<String>,
    /// `filename*` (RFC 8187) if present and decodable, else `filename`.
    pub file_name: Option<String>,
    pub content_type: Option<String>,
}

impl FieldHeaders {
    /// Parses a header block (the lines between the boundary line and the blank line, without
    /// the final CRLF CRLF).
    pub fn parse(block: &[u8]) -> FieldHeaders {
        let mut out = FieldHeaders::default();
        for line in block.split(|&c| c == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&c| c == b':') else {
                continue;
            };
            let name = String::from_utf8_lossy(&line[..colon]);
            let value = &line[colon + 1..];
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                out.disposition(value);
            } else if name.trim().eq_ignore_ascii_case("content-type") {
                let ct = String::from_utf8_lossy(value).trim().to_owned();
                out.content_type = (!ct.is_empty()).then_some(ct);
            }
        }
        out
    }

    fn disposition(&mut self, value: &[u8]) {
        // `form-data; name="x"; filename="y"`
        let start = value.iter().position(|&c| c == b';').unwrap_or(value.len());
        let mut rest = &value[start..];
        let mut plain = None;
        let mut extended = None;
        while let Some((&b';', tail)) = rest.split_first() {
            let Ok((key, val, after)) = parse_param(tail) else {
                break;
            };
            rest = after;
            if key.eq_ignore_ascii_case("name") {
                self.name = Some(val);
            } else if key.eq_ignore_ascii_case("filename") {
                plain = Some(val);
            } else if key.eq_ignore_ascii_case("filename*") {
                extended = ext_value(&val);
            }
        }
        self.file_name = extended.or(plain);
    }

    /// The file field is the first with a file name, or the first named `file`.
    pub fn is_file(&self) -> bool {
        self.file_name.is_some() || self.name.as_deref() == Some("file")
    }
}

/// What [`parse_preamble`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preamble {
    /// More bytes are needed.
    NeedMore,
    /// The file field starts after `len` bytes of the body.
    File {
        len: usize,
        field: FieldHeaders,
        /// Bytes of the small fields before it.
        other_bytes: usize,
    },
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find(haystack, needle)
}

/// After a dash-boundary that ends at `at`: `Some(Ok(true))` for the closing `--`,
/// `Some(Ok(false))` and the position of the field's headers after the line break, `None` when
/// more bytes are needed.
fn after_boundary(buf: &[u8], at: usize) -> Option<Result<(bool, usize), FormError>> {
    let rest = buf.get(at..)?;
    if rest.len() < 2 {
        return None;
    }
    if rest.starts_with(b"--") {
        return Some(Ok((true, at + 2)));
    }
    // Transport padding (RFC 2046: linear white space) before the line break.
    let pad = rest
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    match rest.get(pad..pad + 2) {
        None => None,
        Some(b"\r\n") => Some(Ok((false, at + pad + 2))),
        Some(_) => Some(Err(FormError::Malformed(
            "a boundary line is not followed by a line break",
        ))),
    }
}

/// A field's header block starting at `at`: its end (the start of the field's body) and the
/// headers, or `None` when more bytes are needed.
fn field_headers(buf: &[u8], at: usize) -> Option<(usize, FieldHeaders)> {
    let rest = buf.get(at..)?;
    if rest.starts_with(b"\r\n") {
        return Some((at + 2, FieldHeaders::default()));
    }
    let end = find(rest, b"\r\n\r\n")?;
    Some((at + end + 4, FieldHeaders::parse(&rest[..end])))
}

/// Where one step of walking the fields ended.
enum Walk {
    NeedMore,
    /// A file field whose body starts at `body`.
    File {
        body: usize,
        field: FieldHeaders,
    },
    /// The closing boundary was reached.
    Closed,
}

/// Walks fields from `at`, just after a dash-boundary (`--<boundary>`), skipping non-file
/// fields (their bodies counted into `other_bytes`, at most `other_limit`), until a file field
/// or the closing boundary. `after_file`: the file field was already found, so only a field with
/// a file name counts as one (a second file).
fn walk(
    buf: &[u8],
    mut at: usize,
    delimiter: &[u8],
    after_file: bool,
    other_bytes: &mut usize,
    other_limit: usize,
) -> Result<Walk, FormError> {
    loop {
        let (closed, headers_at) = match after_boundary(buf, at) {
            None => return Ok(Walk::NeedMore),
            Some(r) => r?,
        };
        if closed {
            return Ok(Walk::Closed);
        }
        let Some((body, field)) = field_headers(buf, headers_at) else {
            return Ok(Walk::NeedMore);
        };
        // After the file field, only a file name makes a second file.
        if field.is_file() && (!after_file || field.file_name.is_some()) {
            return Ok(Walk::File { body, field });
        }
        let rest = &buf[body..];
        match find(rest, delimiter) {
            Some(end) => {
                *other_bytes += end;
                if *other_bytes > other_limit {
                    return Err(FormError::OtherFieldsTooLarge(other_limit));
                }
                at = body + end + delimiter.len();
            }
            None => {
                let seen = rest.len().saturating_sub(delimiter.len());
                if *other_bytes + seen > other_limit {
                    return Err(FormError::OtherFieldsTooLarge(other_limit));
                }
                return Ok(Walk::NeedMore);
            }
        }
    }
}

/// `\r\n--<boundary>`: what ends every field's body.
pub fn delimiter(boundary: &str) -> Vec<u8> {
    let mut d = Vec::with_capacity(boundary.len() + 4);
    d.extend_from_slice(b"\r\n--");
    d.extend_from_slice(boundary.as_bytes());
    d
}

/// Parses the start of a form held in `buf` (the first bytes of the body): skips the preamble
/// text and any non-file fields (their bodies at most `other_limit` bytes altogether) and stops
/// after the headers of the file field. `complete` says `buf` is the whole body: then running
/// out of bytes is an error rather than [`Preamble::NeedMore`].
pub fn parse_preamble(
    buf: &[u8],
    boundary: &str,
    other_limit: usize,
    complete: bool,
) -> Result<Preamble, FormError> {
    let delimiter = delimiter(boundary);
    let dash_boundary = &delimiter[2..];
    // The first boundary may open the body or follow a preamble text ending in CRLF.
    let first = if buf.starts_with(dash_boundary) {
        Some(dash_boundary.len())
    } else {
        find(buf, &delimiter).map(|i| i + delimiter.len())
    };
    let mut other_bytes = 0;
    let walked = match first {
        None => Walk::NeedMore,
        Some(at) => walk(buf, at, &delimiter, false, &mut other_bytes, other_limit)?,
    };
    match walked {
        Walk::File { body, field } => Ok(Preamble::File {
            len: body,
            field,
            other_bytes,
        }),
        Walk::Closed => Err(FormError::NoFileField),
        Walk::NeedMore if complete => Err(FormError::Truncated),
        Walk::NeedMore => Ok(Preamble::NeedMore),
    }
}

/// Checks the bytes that follow the file field's closing delimiter (`\r\n--<boundary>`, not
/// included in `trailer`): more non-file fields (their bodies, with `other_bytes` already
/// counted before the file, at most `other_limit`), then `--` and anything (the epilogue).
/// `complete`: `trailer` is everything up to the end of the body.
pub fn check_trailer(
    trailer: &[u8],
    boundary: &str,
    mut other_bytes: usize,
    other_limit: usize,
    complete: bool,
) -> Result<(), FormError> {
    let delimiter = delimiter(boundary);
    match walk(trailer, 0, &delimiter, true, &mut other_bytes, other_limit)? {
        Walk::Closed => Ok(()),
        Walk::File { .. } => Err(FormError::SecondFile),
        Walk::NeedMore if complete => Err(FormError::Truncated),
        Walk::NeedMore => Ok(()),
    }
}

/// Finds the end of the file field in the frames that follow its headers: the first
/// `\r\n--<boundary>`, wherever frames cut it. Hands out the bytes before it as file bytes,
/// holding back (copied) only the last `delimiter - 1` bytes that could be the start of it.
#[derive(Debug)]
pub struct FileEnd {
    finder: memmem::Finder<'static>,
    /// Unresolved bytes from the end of the previous frames: shorter than the delimiter.
    tail: Vec<u8>,
    file_len: u64,
    found: bool,
}

impl FileEnd {
    pub fn new(boundary: &str) -> FileEnd {
        let delimiter = delimiter(boundary);
        FileEnd {
            tail: Vec::with_capacity(delimiter.len()),
            finder: memmem::Finder::new(&delimiter).into_owned(),
            file_len: 0,
            found: false,
        }
    }

    fn delimiter_len(&self) -> usize {
        self.finder.needle().len()
    }

    /// File bytes handed out so far; the file's size once [`FileEnd::found`].
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Whether the delimiter has been seen.
    pub fn found(&self) -> bool {
        self.found
    }

    /// Takes the next frame. `file` receives, in order, every run of bytes now known to be the
    /// file's. Returns `Some(rest)` once the delimiter is found in or through this frame: `rest`
    /// is what follows the delimiter in this frame (every later frame is trailer too). Must not
    /// be called after that.
    pub fn push<'f>(&mut self, frame: &'f [u8], mut file: impl FnMut(&[u8])) -> Option<&'f [u8]> {
        debug_assert!(!self.found);
        let d = self.delimiter_len();
        let t = self.tail.len();
        let mut emit = |bytes: &[u8], len: &mut u64| {
            if !bytes.is_empty() {
                *len += bytes.len() as u64;
                file(bytes);
            }
        };
        // Where the delimiter could straddle the held-back tail and this frame: search the tail
        // plus the frame's first `d - 1` bytes (a small copy).
        let head_len = frame.len().min(d - 1);
        let mut joint = Vec::with_capacity(t + head_len);
        joint.extend_from_slice(&self.tail);
        joint.extend_from_slice(&frame[..head_len]);
        if let Some(k) = self.finder.find(&joint) {
            // `k + d > t` since the tail is shorter than the delimiter.
            emit(&joint[..k], &mut self.file_len);
            self.found = true;
            self.tail.clear();
            return Some(&frame[k + d - t..]);
        }
        if let Some(m) = self.finder.find(frame) {
            emit(&self.tail, &mut self.file_len);
            emit(&frame[..m], &mut self.file_len);
            self.found = true;
            self.tail.clear();
            return Some(&frame[m + d..]);
        }
        // No delimiter: all but the last `d - 1` bytes of tail + frame are the file's.
        let keep = (t + frame.len()).min(d - 1);
        if frame.len() >= keep {
            emit(&self.tail, &mut self.file_len);
            emit(&frame[..frame.len() - keep], &mut self.file_len);
            self.tail.clear();
            self.tail.extend_from_slice(&frame[frame.len() - keep..]);
        } else {
            // A frame shorter than what is kept: the oldest tail bytes become the file's.
            let release = t + frame.len() - keep;
            emit(&self.tail[..release], &mut self.file_len);
            self.tail.drain(..release);
            self.tail.extend_from_slice(frame);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: &str = "XyZ-bound";
    const LIMIT: usize = 1000;

    fn field(name: &str, value: &str) -> String {
        format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    }

    fn file_head(extra: &str) -> String {
        format!(
            "--{B}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.bin\"{extra}\r\nContent-Type: application/x-test\r\n\r\n"
        )
    }

    #[test]
    fn boundary_param_quoted_unquoted_and_missing() {
        let b = |ct: &str| boundary_from_content_type(ct);
        assert_eq!(b("multipart/form-data; boundary=abc").as_deref(), Ok("abc"));
        assert_eq!(
            b("Multipart/Form-Data;charset=utf-8;  BOUNDARY=\"a;b c\"").as_deref(),
            Ok("a;b c")
        );
        assert_eq!(
            b("multipart/form-data; boundary=\"q\\\"x\"").as_deref(),
            Ok("q\"x")
        );
        assert_eq!(
            b("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk; x=1").as_deref(),
            Ok("----WebKitFormBoundary7MA4YWxk")
        );
        assert_eq!(b("multipart/form-data"), Err(FormError::NoBoundary));
        assert_eq!(b("multipart/form-data; x=1"), Err(FormError::NoBoundary));
        assert_eq!(
            b("multipart/form-data; boundary="),
            Err(FormError::BadBoundary)
        );
        assert_eq!(
            b("multipart/form-data; boundary=\"\""),
            Err(FormError::BadBoundary)
        );
        let long = format!("multipart/form-data; boundary={}", "x".repeat(201));
        assert_eq!(b(&long), Err(FormError::BadBoundary));
        assert!(b("multipart/form-data; boundary=\"abc").is_err());
        assert!(b("text/plain; boundary=abc").is_err());
    }

    #[test]
    fn field_headers_names_quotes_and_ext_values() {
        let h = FieldHeaders::parse(
            b"Content-Disposition: form-data; name=\"up\"; filename=\"photo \\\"x\\\" \xc3\xa9.jpg\"\r\ncontent-type:  image/jpeg ",
        );
        assert_eq!(h.name.as_deref(), Some("up"));
        assert_eq!(h.file_name.as_deref(), Some("photo \"x\" é.jpg"));
        assert_eq!(h.content_type.as_deref(), Some("image/jpeg"));
        assert!(h.is_file());
        // filename* wins over filename; a semicolon inside quotes is part of the name.
        let h = FieldHeaders::parse(
            b"content-disposition: form-data; filename=\"fallback;.txt\"; filename*=UTF-8''na%C3%AFve%20r.txt; name=f",
        );
        assert_eq!(h.file_name.as_deref(), Some("naïve r.txt"));
        assert_eq!(h.name.as_deref(), Some("f"));
        let h = FieldHeaders::parse(
            b"content-disposition: form-data; filename=\"a;b.txt\"; name=\"x\"",
        );
        assert_eq!(h.file_name.as_deref(), Some("a;b.txt"));
        assert_eq!(h.name.as_deref(), Some("x"));
        // An undecodable filename* falls back to filename.
        let h = FieldHeaders::parse(
            b"Content-Disposition: form-data; name=x; filename=plain.txt; filename*=latin1''%E9",
        );
        assert_eq!(h.file_name.as_deref(), Some("plain.txt"));
        // `filename` inside another parameter's name is not a file name.
        let h = FieldHeaders::parse(b"Content-Disposition: form-data; xfilename=\"a\"; name=b");
        assert_eq!((h.file_name, h.name.as_deref()), (None, Some("b")));
        // A field named `file` is the file even without a file name; empty names count.
        assert!(FieldHeaders::parse(b"Content-Disposition: form-data; name=\"file\"").is_file());
        assert!(
            FieldHeaders::parse(b"Content-Disposition: form-data; name=a; filename=\"\"").is_file()
        );
        assert!(!FieldHeaders::parse(b"Content-Disposition: form-data; name=\"note\"").is_file());
    }

    #[test]
    fn preamble_with_fields_before_the_file() {
        let head = format!("{}{}{}", field("a", "1"), field("b", "22"), file_head(""));
        let mut body = head.clone().into_bytes();
        body.extend_from_slice(b"FILEDATA");
        match parse_preamble(&body, B, LIMIT, false) {
            Ok(Preamble::File {
                len,
                field,
                other_bytes,
            }) => {
                assert_eq!(len, head.len());
                assert_eq!(field.file_name.as_deref(), Some("a.bin"));
                assert_eq!(field.content_type.as_deref(), Some("application/x-test"));
                assert_eq!(other_bytes, 3);
            }
            other => panic!("{other:?}"),
        }
        // Every strict prefix of the preamble needs more bytes.
        for cut in 0..head.len() {
            assert_eq!(
                parse_preamble(&body[..cut], B, LIMIT, false),
                Ok(Preamble::NeedMore),
                "cut at {cut}"
            );
            assert!(parse_preamble(&body[..cut], B, LIMIT, true).is_err());
        }
    }

    #[test]
    fn preamble_text_padding_and_empty_headers() {
        // A preamble text before the first boundary, padding after it, a field with no headers.
        let body = format!(
            "ignored preamble\r\n--{B}  \r\n\r\nno headers\r\n--{B}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nX"
        );
        match parse_preamble(body.as_bytes(), B, LIMIT, false) {
            Ok(Preamble::File {
                len,
                field,
                other_bytes,
            }) => {
                assert_eq!(&body[len..], "X");
                assert_eq!(field.name.as_deref(), Some("file"));
                assert_eq!(other_bytes, "no headers".len());
            }
            other => panic!("{other:?}"),
        }
        let bad = format!("--{B}junk\r\n");
        assert!(matches!(
            parse_preamble(bad.as_bytes(), B, LIMIT, false),
            Err(FormError::Malformed(_))
        ));
    }

    #[test]
    fn preamble_errors() {
        let no_file = format!("{}--{B}--\r\n", field("note", "hi"));
        assert_eq!(
            parse_preamble(no_file.as_bytes(), B, LIMIT, false),
            Err(FormError::NoFileField)
        );
        let big = field("note", &"x".repeat(LIMIT + 50));
        assert_eq!(
            parse_preamble(big.as_bytes(), B, LIMIT, false),
            Err(FormError::OtherFieldsTooLarge(LIMIT))
        );
        // Too large is noticed before the field's end arrives.
        assert_eq!(
            parse_preamble(&big.as_bytes()[..big.len() - 20], B, LIMIT, false),
            Err(FormError::OtherFieldsTooLarge(LIMIT))
        );
        let cut = field("note", "hi");
        assert_eq!(
            parse_preamble(cut.as_bytes(), B, LIMIT, true),
            Err(FormError::Truncated)
        );
        // CR or LF alone are not line breaks, and a boundary-like text is not the boundary.
        let lf = format!("--{B}\nContent-Disposition: form-data; name=\"file\"\n\n");
        assert!(parse_preamble(lf.as_bytes(), B, LIMIT, true).is_err());
        let other = format!("--{B}X\r\n");
        assert!(parse_preamble(other.as_bytes(), "XyZ-bou", LIMIT, true).is_err());
    }

    #[test]
    fn trailer_fields_closing_and_second_file() {
        let t = |s: &str, complete| check_trailer(s.as_bytes(), B, 0, LIMIT, complete);
        assert_eq!(t("--\r\n", true), Ok(()));
        assert_eq!(t("--", true), Ok(()));
        assert_eq!(t("--\r\nepilogue, anything --XyZ-bound", true), Ok(()));
        let after = format!(
            "\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nafter\r\n--{B}--\r\n"
        );
        assert_eq!(t(&after, true), Ok(()));
        // A field named `file` after the file is just another field.
        let named_file =
            format!("\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--{B}--");
        assert_eq!(t(&named_file, true), Ok(()));
        let second =
            "\r\nContent-Disposition: form-data; name=\"b\"; filename=\"b.bin\"\r\n\r\nyyy";
        assert_eq!(t(second, false), Err(FormError::SecondFile));
        // Ending before the closing boundary.
        assert_eq!(t("", true), Err(FormError::Truncated));
        assert_eq!(t("-", true), Err(FormError::Truncated));
        assert_eq!(
            t(&after[..after.len() - 6], true),
            Err(FormError::Truncated)
        );
        assert_eq!(t(&after[..after.len() - 6], false), Ok(()));
        // Other fields are counted together with those before the file.
        assert_eq!(
            check_trailer(after.as_bytes(), B, LIMIT - 2, LIMIT, true),
            Err(FormError::OtherFieldsTooLarge(LIMIT))
        );
    }

    /// Runs `FileEnd` over `body` cut at `cuts`; returns (file bytes, rest after the delimiter).
    fn scan(body: &[u8], cuts: &[usize], boundary: &str) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut end = FileEnd::new(boundary);
        let mut file = Vec::new();
        let mut rest: Option<Vec<u8>> = None;
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < body.len() {
            let n = (*cut.next().unwrap_or(&1)).max(1).min(body.len() - at);
            let frame = &body[at..at + n];
            at += n;
            match rest.as_mut() {
                Some(r) => r.extend_from_slice(frame),
                None => {
                    if let Some(r) = end.push(frame, |b| file.extend_from_slice(b)) {
                        rest = Some(r.to_vec());
                    }
                }
            }
        }
        assert_eq!(end.file_len(), file.len() as u64);
        assert_eq!(end.found(), rest.is_some());
        (file, rest)
    }

    #[test]
    fn delimiter_split_across_frames_and_crlf_edges() {
        let d = delimiter(B);
        // A file that itself ends in CR, CRLF, "\r\n--" and a near-boundary.
        for file in [
            &b""[..],
            b"x",
            b"ab\r",
            b"ab\r\n",
            b"\r\n--",
            b"\r\n--XyZ-boun",
            b"\r\r\n--XyZ-bounX\r\n",
        ] {
            let mut body = file.to_vec();
            body.extend_from_slice(&d);
            body.extend_from_slice(b"--\r\n");
            for cuts in [
                vec![1],
                vec![2],
                vec![3, 1],
                vec![d.len() - 1],
                vec![d.len()],
                vec![1000],
            ] {
                let (got, rest) = scan(&body, &cuts, B);
                assert_eq!(got, file, "cuts {cuts:?}");
                assert_eq!(rest.as_deref(), Some(&b"--\r\n"[..]), "cuts {cuts:?}");
            }
        }
        // No delimiter: the held-back bytes are never handed out.
        let (got, rest) = scan(b"0123456789abcdefghij", &[3], B);
        assert_eq!(rest, None);
        assert_eq!(
            got, b"01234567",
            "the last delimiter - 1 = 12 bytes are held back"
        );
    }

    proptest! {
        #[test]
        fn file_end_finds_the_delimiter_wherever_frames_cut(
            file in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'-'), Just(b'X'), any::<u8>()], 0..300),
            cuts in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let d = delimiter(B);
            // The form guarantees the delimiter does not occur in the file.
            prop_assume!(memmem::find(&file, &d).is_none());
            let mut body = file.clone();
            body.extend_from_slice(&d);
            body.extend_from_slice(b"--\r\nepilogue");
            let (got, rest) = scan(&body, &cuts, B);
            prop_assert_eq!(got, file);
            prop_assert_eq!(rest.as_deref(), Some(&b"--\r\nepilogue"[..]));
        }
    }
}
