//! How a put ends, as data. The put handler's loop only finds out which [`PutEnd`] happened;
//! [`effects`] decides what that ending does: what becomes of the open writer (keep the durable
//! prefix or not), whether the receive side is stopped and with which code, and what the client
//! is answered (which also makes the request's log line). No I/O, so every ending is unit-tested
//! here, as [`super::rules`] does for store errors.

use sixfold_wire::{ErrorResponse, Op, Response, Status};

use super::put::BODY_IDLE_TIMEOUT;
use super::rules;
use crate::store::PutError;

/// Every way a put ends. `received` counts body bytes taken from the stream (after
/// `resume_from`), `body_len` those the header announced.
#[derive(Debug)]
pub enum PutEnd {
    /// The store would not open the put; `durable_len` is the chunk's, for the `Conflict` a
    /// busy chunk gets.
    Refused {
        error: PutError,
        durable_len: Option<u64>,
    },
    /// The client finished the stream before the whole body.
    BodyEnded { received: u64, body_len: u64 },
    /// The stream broke (reset, lost connection, node closing): nobody is left to answer.
    StreamBroken { received: u64, error: String },
    /// No body bytes for [`BODY_IDLE_TIMEOUT`].
    Idle { received: u64 },
    /// The client sent more than the header announced.
    TooLong { received: u64, body_len: u64 },
    /// The store failed to take a piece of the body.
    WriteFailed { received: u64, error: PutError },
    /// The whole body arrived, but the store could not finish the chunk.
    FinishFailed { body_len: u64, error: PutError },
    /// The store synced the whole chunk.
    Stored {
        body_len: u64,
        length: u64,
        crc32c: u32,
    },
}

/// What the handler does once a put has ended, in this order: the writer, the receive side,
/// the answer.
#[derive(Debug, PartialEq, Eq)]
pub struct PutEffects {
    pub writer: WriterEnd,
    /// Stop the receive side with this status's code: the client may still be sending, and
    /// nothing more will be read.
    pub stop: Option<Status>,
    pub answer: PutAnswer,
    /// Body bytes received, for the log line.
    pub bytes: u64,
}

/// What becomes of the put's writer.
#[derive(Debug, PartialEq, Eq)]
pub enum WriterEnd {
    /// There is none: the store refused the put, or `finish` consumed it.
    Gone,
    /// Interrupt it: the store keeps the durable prefix so a later put can resume there.
    KeepPrefix,
    /// Drop it as it is: after `DiskFull` the writer already removed the partial chunk.
    Discard,
}

/// The answer, less the durable length, known only once the writer is interrupted.
#[derive(Debug, PartialEq, Eq)]
pub enum PutAnswer {
    /// The chunk is stored: its length and crc32c.
    Stored { length: u64, crc32c: u32 },
    /// An error header (status `failed` in the log).
    Error {
        status: Status,
        detail: u64,
        message: Message,
    },
    /// No answer: the stream is gone (status `aborted` in the log).
    Abort(Message),
}

/// An answer's message, to be completed with the durable length.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub durable: DurableNote,
}

/// How a message tells the durable length.
#[derive(Debug, PartialEq, Eq)]
pub enum DurableNote {
    /// It does not.
    Omitted,
    /// `; {n} bytes of the chunk are durable`
    OfTheChunk,
    /// `; put interrupted, {n} bytes durable`
    Interrupted,
}

/// A put answer made whole: what goes to the client, and the log line's status.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `Response::Put`; logged `Ok` (or `aborted` if the answer cannot be delivered).
    Stored(Response),
    /// Logged with its status, a warning where [`rules::worth_a_warning`] says so.
    Error(ErrorResponse),
    /// Nothing goes out; logged `aborted`, with this.
    Abort(String),
}

pub fn effects(end: PutEnd) -> PutEffects {
    use DurableNote::{Interrupted, OfTheChunk};
    let bad_request = |text: String, durable| PutAnswer::Error {
        status: Status::BadRequest,
        detail: 0,
        message: Message { text, durable },
    };
    match end {
        PutEnd::Refused { error, durable_len } => {
            let response = rules::put_error_response(&error, durable_len);
            PutEffects {
                writer: WriterEnd::Gone,
                stop: Some(response.status),
                answer: store_answer(response),
                bytes: 0,
            }
        }
        PutEnd::BodyEnded { received, body_len } => PutEffects {
            writer: WriterEnd::KeepPrefix,
            // The client finished its side: nothing to stop.
            stop: None,
            answer: bad_request(
                format!("body ended after {received} of {body_len} bytes"),
                OfTheChunk,
            ),
            bytes: received,
        },
        PutEnd::StreamBroken { received, error } => PutEffects {
            writer: WriterEnd::KeepPrefix,
            stop: None,
            answer: PutAnswer::Abort(Message {
                text: error,
                durable: Interrupted,
            }),
            bytes: received,
        },
        PutEnd::Idle { received } => PutEffects {
            writer: WriterEnd::KeepPrefix,
            stop: Some(Status::BadRequest),
            answer: bad_request(
                format!("no body bytes for {}s", BODY_IDLE_TIMEOUT.as_secs()),
                Interrupted,
            ),
            bytes: received,
        },
        PutEnd::TooLong { received, body_len } => PutEffects {
            writer: WriterEnd::KeepPrefix,
            stop: Some(Status::BadRequest),
            answer: bad_request(
                format!("more body bytes than the {body_len} the header announced"),
                OfTheChunk,
            ),
            bytes: received,
        },
        PutEnd::WriteFailed { received, error } => {
            let response = rules::put_error_response(&error, None);
            PutEffects {
                // After DiskFull the writer already removed the partial chunk.
                writer: if matches!(error, PutError::DiskFull) {
                    WriterEnd::Discard
                } else {
                    WriterEnd::KeepPrefix
                },
                stop: Some(response.status),
                answer: store_answer(response),
                bytes: received,
            }
        }
        PutEnd::FinishFailed { body_len, error } => PutEffects {
            writer: WriterEnd::Gone,
            stop: None,
            answer: store_answer(rules::put_error_response(&error, None)),
            bytes: body_len,
        },
        PutEnd::Stored {
            body_len,
            length,
            crc32c,
        } => PutEffects {
            writer: WriterEnd::Gone,
            stop: None,
            answer: PutAnswer::Stored { length, crc32c },
            bytes: body_len,
        },
    }
}

/// A store error's answer, its message as the store put it.
fn store_answer(response: ErrorResponse) -> PutAnswer {
    PutAnswer::Error {
        status: response.status,
        detail: response.detail,
        message: Message {
            text: response.message,
            durable: DurableNote::Omitted,
        },
    }
}

impl Message {
    pub fn render(self, durable: u64) -> String {
        match self.durable {
            DurableNote::Omitted => self.text,
            DurableNote::OfTheChunk => {
                format!("{}; {durable} bytes of the chunk are durable", self.text)
            }
            DurableNote::Interrupted => {
                format!("{}; put interrupted, {durable} bytes durable", self.text)
            }
        }
    }
}

impl PutAnswer {
    /// The answer, given the durable length the writer's interrupt returned (0 when it was not
    /// interrupted or its checkpoint failed).
    pub fn reply(self, durable: u64) -> Reply {
        match self {
            PutAnswer::Stored { length, crc32c } => Reply::Stored(Response::Put { length, crc32c }),
            PutAnswer::Error {
                status,
                detail,
                message,
            } => Reply::Error(ErrorResponse::new(
                Op::Put,
                status,
                detail,
                message.render(durable),
            )),
            PutAnswer::Abort(message) => Reply::Abort(message.render(durable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURABLE: u64 = 3 << 20;

    fn error(status: Status, detail: u64, message: &str) -> Reply {
        Reply::Error(ErrorResponse::new(Op::Put, status, detail, message))
    }

    /// Every ending, and what it does: writer, stop code, the answer once the durable length
    /// is known, log bytes.
    #[test]
    fn every_put_ending_has_its_effects() {
        use WriterEnd::{Discard, Gone, KeepPrefix};
        let bad = Some(Status::BadRequest);
        let refused = |error, durable_len| PutEnd::Refused { error, durable_len };
        let write_failed = |error| PutEnd::WriteFailed {
            received: 50,
            error,
        };
        let finish_failed = |error| PutEnd::FinishFailed {
            body_len: 100,
            error,
        };
        let cases: Vec<(PutEnd, WriterEnd, Option<Status>, Reply, u64)> = vec![
            (
                refused(PutError::Busy, Some(1 << 20)),
                Gone,
                Some(Status::Conflict),
                error(
                    Status::Conflict,
                    1 << 20,
                    "chunk is busy: another put is in progress",
                ),
                0,
            ),
            (
                refused(PutError::Conflict { durable_len: 5 }, Some(9)),
                Gone,
                Some(Status::Conflict),
                error(
                    Status::Conflict,
                    5,
                    "conflict: the chunk's durable length is 5",
                ),
                0,
            ),
            (
                refused(PutError::DiskFull, None),
                Gone,
                Some(Status::DiskFull),
                error(Status::DiskFull, 0, "disk full"),
                0,
            ),
            (
                PutEnd::BodyEnded {
                    received: 10,
                    body_len: 100,
                },
                KeepPrefix,
                None,
                error(
                    Status::BadRequest,
                    0,
                    "body ended after 10 of 100 bytes; 3145728 bytes of the chunk are durable",
                ),
                10,
            ),
            (
                PutEnd::StreamBroken {
                    received: 7,
                    error: "stream reset by peer".into(),
                },
                KeepPrefix,
                None,
                Reply::Abort("stream reset by peer; put interrupted, 3145728 bytes durable".into()),
                7,
            ),
            (
                PutEnd::Idle { received: 4 },
                KeepPrefix,
                bad,
                error(
                    Status::BadRequest,
                    0,
                    "no body bytes for 60s; put interrupted, 3145728 bytes durable",
                ),
                4,
            ),
            (
                PutEnd::TooLong {
                    received: 90,
                    body_len: 100,
                },
                KeepPrefix,
                bad,
                error(
                    Status::BadRequest,
                    0,
                    "more body bytes than the 100 the header announced; \
                     3145728 bytes of the chunk are durable",
                ),
                90,
            ),
            (
                write_failed(PutError::DiskFull),
                Discard,
                Some(Status::DiskFull),
                error(Status::DiskFull, 0, "disk full"),
                50,
            ),
            (
                write_failed(PutError::Io(std::io::Error::other("z"))),
                KeepPrefix,
                Some(Status::Internal),
                error(Status::Internal, 0, "I/O error: z"),
                50,
            ),
            (
                write_failed(PutError::BadRequest("put failed earlier".into())),
                KeepPrefix,
                bad,
                error(Status::BadRequest, 0, "bad request: put failed earlier"),
                50,
            ),
            (
                finish_failed(PutError::DiskFull),
                Gone,
                None,
                error(Status::DiskFull, 0, "disk full"),
                100,
            ),
            (
                finish_failed(PutError::Corrupt("header".into())),
                Gone,
                None,
                error(Status::Internal, 0, "corrupt chunk store data: header"),
                100,
            ),
            (
                PutEnd::Stored {
                    body_len: 60,
                    length: 100,
                    crc32c: 0xdead_beef,
                },
                Gone,
                None,
                Reply::Stored(Response::Put {
                    length: 100,
                    crc32c: 0xdead_beef,
                }),
                60,
            ),
        ];
        for (end, writer, stop, reply, bytes) in cases {
            let what = format!("{end:?}");
            let e = effects(end);
            assert_eq!(
                (&e.writer, e.stop, e.bytes),
                (&writer, stop, bytes),
                "{what}"
            );
            let got = e.answer.reply(DURABLE);
            assert_eq!(got, reply, "{what}");
            // Every answer encodes to a valid response header.
            let response = match got {
                Reply::Stored(response) => response,
                Reply::Error(e) => Response::Error(e),
                Reply::Abort(_) => continue,
            };
            let (back, _) = Response::decode(&response.to_vec()).unwrap();
            assert_eq!(back, response, "{what}");
        }
    }

    #[test]
    fn messages_tell_the_durable_length_only_where_asked() {
        let message = |durable| Message {
            text: "x".into(),
            durable,
        };
        assert_eq!(message(DurableNote::Omitted).render(5), "x");
        assert_eq!(
            message(DurableNote::OfTheChunk).render(5),
            "x; 5 bytes of the chunk are durable"
        );
        assert_eq!(
            message(DurableNote::Interrupted).render(0),
            "x; put interrupted, 0 bytes durable"
        );
    }
}
