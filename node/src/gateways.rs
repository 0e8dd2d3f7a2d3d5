//! Which gateway the registration thread talks to, and how long it waits before the next
//! report: pure logic, no I/O and no clock (the caller sleeps the returned waits).
//!
//! A node is given one or more gateways (`--gateway A,B,C`). It talks to one at a time, the
//! current one. When a report finds the current gateway away (no HTTP answer, or a 5xx), the
//! node moves on to the next gateway in the list, in order and wrapping around, and registers
//! there: that gateway may never have seen this process. An answer that refuses the node
//! (401/403, another 4xx, 404) is not a reason to move: another gateway of the same cluster
//! would give the same answer, so the caller handles it as with a single gateway.
//!
//! Backoff: moving to the next gateway within a pass over the list is immediate; once every
//! gateway in the list has been found away in a row (a full pass), the node waits one
//! exponential backoff step ([`Backoff`]) before the next pass. So with one gateway each
//! failure waits one step, exactly as before there were several, and a node whose every
//! gateway is down sends one round of reports per backoff step, never spinning. Any answer
//! (accepted or refused) ends the pass; only an accepted report resets the backoff.

use std::time::Duration;

/// First retry delay while the gateways are away; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Exponential backoff: 100 ms, 200 ms, ... capped at 5 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// What a report came to, as far as the choice of gateway goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 2xx: the report was taken.
    Accepted,
    /// The gateway answered but refused the report (4xx of any kind).
    Refused,
    /// No HTTP answer, or a 5xx: the gateway is away or failing.
    Away,
}

/// What the registration thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The gateway answered: stay with it and go on as for a single gateway.
    Stay,
    /// The only gateway is away: report to it again (same phase) after `wait`.
    Retry { wait: Duration },
    /// Make gateway `to` (an index into the list) the current one and register with it
    /// after `wait`. `first_pass`: this is part of the first pass over the list since the
    /// last answer (later passes repeat the same moves and need not be logged loudly).
    Switch {
        from: usize,
        to: usize,
        wait: Duration,
        first_pass: bool,
    },
}

/// The gateways a node reports to, the current one, and the backoff across them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayList {
    urls: Vec<String>,
    current: usize,
    /// Gateways found away in a row in this pass (since the last answer or full pass).
    away_in_pass: usize,
    /// Full passes of the list found away since the last answer.
    passes: u32,
    backoff: Backoff,
}

impl GatewayList {
    /// `urls` is non-empty (the config refuses an empty list); the first is current.
    pub fn new(urls: Vec<String>) -> Self {
        assert!(!urls.is_empty(), "a node has at least one gateway");
        Self {
            urls,
            current: 0,
            away_in_pass: 0,
            passes: 0,
            backoff: Backoff::default(),
        }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Index of the current gateway.
    pub fn current(&self) -> usize {
        self.current
    }

    pub fn current_url(&self) -> &str {
        &self.urls[self.current]
    }

    /// Takes the outcome of a report to the current gateway and says what to do next.
    pub fn on_reply(&mut self, reply: Reply) -> Action {
        match reply {
            Reply::Accepted => {
                self.backoff.reset();
                self.end_pass();
                Action::Stay
            }
            Reply::Refused => {
                self.end_pass();
                Action::Stay
            }
            Reply::Away => {
                self.away_in_pass += 1;
                let first_pass = self.passes == 0;
                let wait = if self.away_in_pass >= self.urls.len() {
                    // Every gateway in the list was away in a row: one backoff step.
                    self.away_in_pass = 0;
                    self.passes = self.passes.saturating_add(1);
                    self.backoff.next_delay()
                } else {
                    Duration::ZERO
                };
                if self.urls.len() == 1 {
                    return Action::Retry { wait };
                }
                let from = self.current;
                self.current = (self.current + 1) % self.urls.len();
                Action::Switch {
                    from,
                    to: self.current,
                    wait,
                    first_pass,
                }
            }
        }
    }

    fn end_pass(&mut self) {
        self.away_in_pass = 0;
        self.passes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> GatewayList {
        GatewayList::new((0..n).map(|i| format!("https://g{i}:8081")).collect())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_START);
    }

    #[test]
    fn one_gateway_retries_with_backoff_as_before() {
        let mut g = list(1);
        let waits: Vec<Action> = (0..3).map(|_| g.on_reply(Reply::Away)).collect();
        assert_eq!(
            waits,
            [
                Action::Retry { wait: ms(100) },
                Action::Retry { wait: ms(200) },
                Action::Retry { wait: ms(400) },
            ]
        );
        assert_eq!(g.current(), 0);
        assert_eq!(g.on_reply(Reply::Accepted), Action::Stay);
        assert_eq!(g.on_reply(Reply::Away), Action::Retry { wait: ms(100) });
    }

    #[test]
    fn an_away_gateway_hands_over_to_the_next_at_once() {
        let mut g = list(3);
        assert_eq!(g.on_reply(Reply::Accepted), Action::Stay);
        assert_eq!(
            g.on_reply(Reply::Away),
            Action::Switch {
                from: 0,
                to: 1,
                wait: Duration::ZERO,
                first_pass: true
            }
        );
        assert_eq!(g.current_url(), "https://g1:8081");
        // The next one answers: the node stays there, and a later failure moves on again.
        assert_eq!(g.on_reply(Reply::Accepted), Action::Stay);
        assert_eq!(
            g.on_reply(Reply::Away),
            Action::Switch {
                from: 1,
                to: 2,
                wait: Duration::ZERO,
                first_pass: true
            }
        );
    }

    #[test]
    fn every_gateway_away_waits_one_backoff_step_per_pass() {
        let mut g = list(3);
        let mut seen = Vec::new();
        for _ in 0..9 {
            match g.on_reply(Reply::Away) {
                Action::Switch {
                    from,
                    to,
                    wait,
                    first_pass,
                } => seen.push((from, to, wait.as_millis() as u64, first_pass)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                (0, 1, 0, true),
                (1, 2, 0, true),
                (2, 0, 100, true),
                (0, 1, 0, false),
                (1, 2, 0, false),
                (2, 0, 200, false),
                (0, 1, 0, false),
                (1, 2, 0, false),
                (2, 0, 400, false),
            ]
        );
        // An accepted report ends the streak and resets the backoff.
        assert_eq!(g.on_reply(Reply::Accepted), Action::Stay);
        let waits: Vec<Action> = (0..3).map(|_| g.on_reply(Reply::Away)).collect();
        assert_eq!(
            waits[2],
            Action::Switch {
                from: 2,
                to: 0,
                wait: ms(100),
                first_pass: true
            }
        );
    }

    #[test]
    fn a_refusal_stays_and_ends_the_pass_but_keeps_the_backoff() {
        let mut g = list(2);
        g.on_reply(Reply::Away); // 0 -> 1
        g.on_reply(Reply::Away); // 1 -> 0, 100 ms
        assert_eq!(g.on_reply(Reply::Refused), Action::Stay);
        assert_eq!(g.current(), 0);
        // A new pass starts at the gateway that answered; the backoff goes on from 200 ms.
        assert_eq!(
            g.on_reply(Reply::Away),
            Action::Switch {
                from: 0,
                to: 1,
                wait: Duration::ZERO,
                first_pass: true
            }
        );
        assert_eq!(
            g.on_reply(Reply::Away),
            Action::Switch {
                from: 1,
                to: 0,
                wait: ms(200),
                first_pass: true
            }
        );
    }

    #[test]
    fn backoff_is_capped_however_long_every_gateway_is_away() {
        let mut g = list(2);
        let mut longest = Duration::ZERO;
        for _ in 0..200 {
            if let Action::Switch { wait, .. } = g.on_reply(Reply::Away) {
                longest = longest.max(wait);
            }
        }
        assert_eq!(longest, BACKOFF_MAX);
    }
}
