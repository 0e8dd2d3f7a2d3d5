//! What a file of the run contains (generated from the run seed, or a source file) and how to
//! produce it as an upload body or check it against a download.

use crate::datagen::{DataGen, GenVerifier};
use crate::pool::BufPool;
use crate::source::SourceFile;
use crate::verify::{ExpectedStream, StreamVerifier, VerifyError};
use futures_util::stream;
use std::sync::Arc;

#[derive(Clone)]
pub enum Content {
    /// File `i` is the generated stream of `file_seed(run_seed, i)`.
    Generated { run_seed: u64 },
    /// Every file is a copy of this source file.
    File {
        source: Arc<SourceFile>,
        sections: usize,
    },
}

impl Content {
    /// The bytes of file `index` (of `size` bytes) as pool-sized pieces.
    pub fn stream(&self, index: u64, size: u64, pool: &BufPool) -> ExpectedStream {
        match self {
            Content::Generated { run_seed } => {
                generated_stream(DataGen::for_file(*run_seed, index), size, pool.clone())
            }
            Content::File { source, sections } => source.stream(*sections, pool),
        }
    }

    /// A verifier for a download of file `index`.
    pub fn verifier(&self, index: u64, size: u64, pool: &BufPool) -> Verifier {
        match self {
            Content::Generated { run_seed } => {
                Verifier::Gen(GenVerifier::new(DataGen::for_file(*run_seed, index), size))
            }
            Content::File { .. } => {
                Verifier::Stream(StreamVerifier::new(self.stream(index, size, pool), size))
            }
        }
    }
}

/// The generated stream, produced lazily piece by piece into pooled buffers as the HTTP client
/// asks for it.
pub fn generated_stream(datagen: DataGen, size: u64, pool: BufPool) -> ExpectedStream {
    let mut pos = 0u64;
    let pieces = std::iter::from_fn(move || {
        if pos >= size {
            return None;
        }
        let n = (size - pos).min(pool.buf_size() as u64) as usize;
        let mut buf = pool.take();
        datagen.fill(pos, &mut buf.as_mut_slice()[..n]);
        buf.truncate(n);
        pos += n as u64;
        Some(Ok(buf.freeze()))
    });
    Box::pin(stream::iter(pieces))
}

/// Verifies a download against either kind of content.
pub enum Verifier {
    Gen(GenVerifier),
    Stream(StreamVerifier),
}

impl Verifier {
    pub async fn feed(&mut self, data: &[u8]) -> Result<(), VerifyError> {
        match self {
            Verifier::Gen(v) => v.feed(data),
            Verifier::Stream(v) => v.feed(data).await,
        }
    }

    pub fn finish(&self) -> Result<u64, VerifyError> {
        match self {
            Verifier::Gen(v) => v.finish(),
            Verifier::Stream(v) => v.finish(),
        }
    }

    pub fn verified(&self) -> u64 {
        match self {
            Verifier::Gen(v) => v.verified(),
            Verifier::Stream(v) => v.verified(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn generated_body_matches_the_generator_and_verifies() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pool = BufPool::new(4096, 4);
        let content = Content::Generated { run_seed: 11 };
        let size = 3 * 4096 + 5;
        rt.block_on(async {
            let mut body = Vec::new();
            let mut s = content.stream(2, size, &pool);
            while let Some(piece) = s.next().await {
                body.extend_from_slice(&piece.unwrap());
            }
            let mut expect = vec![0u8; size as usize];
            DataGen::for_file(11, 2).fill(0, &mut expect);
            assert_eq!(body, expect);

            let mut v = content.verifier(2, size, &pool);
            v.feed(&body).await.unwrap();
            assert_eq!(v.finish(), Ok(size));
            // The same bytes do not verify as another file of the run.
            let mut other = content.verifier(3, size, &pool);
            assert!(matches!(
                other.feed(&body).await,
                Err(VerifyError::Mismatch { .. })
            ));
        });
        assert!(pool.idle() > 0, "pieces went back to the pool");
    }
}
