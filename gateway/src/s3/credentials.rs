//! The AWS shared-credentials file `dev` writes next to `admin.token`, so that
//! `AWS_SHARED_CREDENTIALS_FILE=<data-dir>/credentials aws --endpoint-url ... s3 ls` works.
//! botocore (aws-cli, boto3) reads profile settings such as `region` from the credentials file
//! too, so the one file carries the region as well.

use std::io;
use std::path::Path;

use crate::auth::Token;
use crate::auth::secret_file;

/// File name in the data dir.
pub const CREDENTIALS_FILE: &str = "credentials";

/// The file's text for `token`: profile `default`, region [`super::REGION`].
pub fn credentials_text(token: &Token) -> String {
    format!(
        "# sixfold S3 credentials (the bootstrap admin key), written by `sixfold-gateway dev`\n\
         [default]\n\
         aws_access_key_id = {}\n\
         aws_secret_access_key = {}\n\
         region = {}\n",
        token.id.as_str(),
        token.secret.expose(),
        super::REGION
    )
}

/// Writes the credentials of the token in `token_file` (`<id>.<secret>`) to `path`, mode 0600,
/// unless `path` exists already with the same text. A file with other contents (a key that was
/// replaced) is replaced.
pub fn write_from_token_file(token_file: &Path, path: &Path) -> io::Result<()> {
    let text = std::fs::read_to_string(token_file)?;
    let token = Token::parse(text.trim())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let wanted = credentials_text(&token);
    match std::fs::read_to_string(path) {
        Ok(existing) if existing == wanted => return Ok(()),
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    secret_file::create_new(path, wanted.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_are_written_private_in_aws_format() {
        let dir = tempfile::tempdir().expect("dir");
        let token_file = dir.path().join("admin.token");
        let id = "SFABCDEFGHIJKLMNOPQR";
        let secret = "a".repeat(40);
        std::fs::write(&token_file, format!("{id}.{secret}\n")).expect("token");
        let path = dir.path().join(CREDENTIALS_FILE);
        write_from_token_file(&token_file, &path).expect("write");
        write_from_token_file(&token_file, &path).expect("again, unchanged");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("[default]\n"));
        assert!(text.contains(&format!("aws_access_key_id = {id}\n")));
        assert!(text.contains(&format!("aws_secret_access_key = {secret}\n")));
        assert!(text.contains("region = us-east-1\n"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
