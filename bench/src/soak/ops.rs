//! One soak operation against the gateway, through the same transfer code as `run`: uploads
//! generated on the fly, downloads verified as they stream, and `503 busy` retried after its
//! `Retry-After` when asked to.

use super::scheduler::{FileEntry, Outcome, Planned};
use crate::content::Content;
use crate::pool::BufPool;
use crate::transfer::{self, TransferError};
use std::time::{Duration, Instant};

/// `Retry-After` assumed when a busy answer has none.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// A longer `Retry-After` is cut to this, so one answer cannot park a worker for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What every operation shares.
pub(super) struct Ctx {
    pub client: reqwest::Client,
    pub gateway: String,
    pub content: Content,
    pub pool: BufPool,
    pub retry_busy: bool,
    /// The HTTP client's limit on each request, and here also on an operation's retries:
    /// none starts once the operation has run this long.
    pub request_timeout: Duration,
    pub name_prefix: String,
    pub seed: u64,
}

/// How one operation went.
pub(super) struct Done {
    pub latency: Duration,
    pub busy_retries: u64,
    /// Bytes moved (reads and writes), or what the scheduler needs to know.
    pub result: Result<(u64, Outcome), TransferError>,
    /// Bytes read and found equal, also those before a failure.
    pub verified: u64,
}

impl Done {
    /// The scheduler's view of the result.
    pub fn outcome(&self, planned: &Planned) -> Outcome {
        match (&self.result, planned) {
            (Ok((_, o)), _) => o.clone(),
            (Err(_), Planned::Read(_)) => Outcome::Read,
            (Err(_), Planned::Write { .. }) => Outcome::Written(None),
            (Err(_), Planned::Delete(_)) => Outcome::Deleted(false),
        }
    }
}

impl Ctx {
    pub fn file_name(&self, index: u64) -> String {
        format!("{}-{}-{index:06}", self.name_prefix, self.seed)
    }

    pub async fn execute(&self, planned: &Planned) -> Done {
        let start = Instant::now();
        let mut busy_retries = 0;
        let mut verified = 0;
        loop {
            let (result, v) = self.attempt(planned).await;
            verified += v;
            match result {
                Err(e) if self.retry_busy && e.is_busy() => {
                    let wait = e
                        .retry_after()
                        .map(Duration::from_secs)
                        .unwrap_or(DEFAULT_RETRY_AFTER)
                        .min(MAX_RETRY_AFTER);
                    if start.elapsed() + wait >= self.request_timeout {
                        return self.done(start, busy_retries, Err(e), verified);
                    }
                    busy_retries += 1;
                    tokio::time::sleep(wait).await;
                }
                result => return self.done(start, busy_retries, result, verified),
            }
        }
    }

    fn done(
        &self,
        start: Instant,
        busy_retries: u64,
        result: Result<(u64, Outcome), TransferError>,
        verified: u64,
    ) -> Done {
        Done {
            latency: start.elapsed(),
            busy_retries,
            result,
            verified,
        }
    }

    /// One request; also the bytes it verified.
    async fn attempt(&self, planned: &Planned) -> (Result<(u64, Outcome), TransferError>, u64) {
        match planned {
            Planned::Read(f) => self.read(f).await,
            Planned::Write { index, size } => {
                let body = self.content.stream(*index, *size, &self.pool);
                let name = self.file_name(*index);
                let r = transfer::upload(&self.client, &self.gateway, &name, *size, body).await;
                (r.map(|resp| (*size, Outcome::Written(Some(resp.id)))), 0)
            }
            Planned::Delete(f) => {
                let r = transfer::delete(&self.client, &self.gateway, &f.id).await;
                (r.map(|()| (0, Outcome::Deleted(true))), 0)
            }
        }
    }

    async fn read(&self, f: &FileEntry) -> (Result<(u64, Outcome), TransferError>, u64) {
        let mut verifier = self.content.verifier(f.index, f.size, &self.pool);
        let r = transfer::download(
            &self.client,
            &self.gateway,
            &f.id,
            f.size,
            &mut verifier,
            |_| {},
        )
        .await;
        (r.map(|n| (n, Outcome::Read)), verifier.verified())
    }
}
