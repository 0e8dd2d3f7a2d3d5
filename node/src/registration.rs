//! Registration with the gateway and heartbeats: a plain std thread with a small blocking
//! HTTPS client ([`crate::https_client`]), so no async runtime besides the shards' monoio
//! exists in the node.
//!
//! The thread registers (`POST /internal/nodes/register` on the gateway's internal listener,
//! mutual TLS with the node certificate), retrying with exponential backoff while the gateway
//! is away, then heartbeats (`POST /internal/nodes/heartbeat`) at the interval the gateway's
//! answer asks for. A heartbeat the gateway answers with 404 (it forgot the node) leads to a
//! fresh registration. A refused certificate is logged as an error and retried slowly, since an
//! operator has to fix it. Each change of the link's state is logged once, not every attempt.
//!
//! With several gateways (`--gateway A,B`) the thread talks to one at a time and moves on to
//! the next, registering there, when the current one is away (no answer or a 5xx); see
//! [`crate::gateways`] for the order and the backoff across them.
//!
//! Reports go out in the newest version the gateway said it reads (its ack's
//! `report_version`; version 1 until it said, and again after a gateway refused a newer one),
//! so an older gateway keeps accepting this node.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use sixfold_wire::registration::{
    HEARTBEAT_PATH, MIN_REPORT_VERSION, NodeReport, REGISTER_PATH, REPORT_VERSION, ReportAck,
};

use crate::gateways::{Action, GatewayList, Reply};
pub use crate::gateways::{BACKOFF_MAX, BACKOFF_START, Backoff};
use crate::https_client::HttpsClient;

/// Retry delay when the gateway refuses the node (certificate, rejected report): a human has to
/// act, so the node does not hammer the gateway meanwhile.
pub const SLOW_RETRY: Duration = Duration::from_secs(15);
/// Heartbeat interval until the gateway says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
const MAX_HEARTBEAT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error body kept for a log line.
const MAX_LOGGED_BODY: usize = 1024;

/// Where and how the node reports itself.
#[derive(Clone)]
pub struct RegistrationSettings {
    /// The gateways' internal listeners, `https://HOST:PORT`, in the order they are tried
    /// (at least one).
    pub gateways: Vec<String>,
    /// Mutual TLS towards it (`sixfold_certs::NodeTls::registration_config`).
    pub tls: Arc<rustls::ClientConfig>,
    /// Shown in the error logged when the gateway refuses the node's certificate.
    pub cert_path: String,
    /// Where the id of the cluster the node joined is kept; the gateway's ack may set it.
    pub cluster_id: Arc<crate::cluster_id::ClusterId>,
    /// Called when the gateway's answer asks for a scrub pass now.
    pub on_scrub_now: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for RegistrationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationSettings")
            .field("gateways", &self.gateways)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// What one report POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx; the ack when the body was one.
    Accepted(Option<ReportAck>),
    /// No HTTP answer at all (refused, timed out, DNS...).
    Unreachable(String),
    /// 401 or 403: the gateway refuses this node's certificate (or its report's node id).
    Unauthorized(String),
    /// 404: the gateway does not know the node (or the route).
    NotFound,
    /// Another 4xx: the gateway rejects the report itself.
    Refused(u16, String),
    /// 5xx: the gateway is there but failing.
    GatewayError(u16, String),
}

impl Outcome {
    /// What the outcome says about the gateway: there and answering, or away.
    pub fn reply(&self) -> Reply {
        match self {
            Outcome::Accepted(_) => Reply::Accepted,
            Outcome::Unauthorized(_) | Outcome::NotFound | Outcome::Refused(..) => Reply::Refused,
            Outcome::Unreachable(_) | Outcome::GatewayError(..) => Reply::Away,
        }
    }
}

/// Classifies an HTTP status and body.
pub fn classify(status: u16, body: String, ack: Option<ReportAck>) -> Outcome {
    match status {
        200..=299 => Outcome::Accepted(ack),
        401 | 403 => Outcome::Unauthorized(body),
        404 => Outcome::NotFound,
        400..=499 => Outcome::Refused(status, body),
        _ => Outcome::GatewayError(status, body),
    }
}

/// The link's state as logged: a line is written only when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Starting,
    Registered,
    Unreachable,
    Unauthorized,
    Refused,
    GatewayError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Register,
    Heartbeat,
}

enum Command {
    /// Report `draining: true` from now on, starting with a heartbeat right away.
    Drain,
    /// Send the final (draining) heartbeat and end the thread.
    Stop,
}

/// The running registration thread.
pub struct Registration {
    commands: mpsc::Sender<Command>,
    thread: JoinHandle<()>,
}

impl Registration {
    /// Starts the thread. `report(draining)` builds the current report; `on_registered` runs
    /// once, after the first registration the gateway accepted.
    pub fn start<R, F>(
        settings: RegistrationSettings,
        report: R,
        on_registered: F,
    ) -> io::Result<Self>
    where
        R: Fn(bool) -> NodeReport + Send + 'static,
        F: FnOnce() + Send + 'static,
    {
        let (commands, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("registration".into())
            .spawn(move || {
                let client = Client::new(&settings);
                run(&client, &settings, rx, report, on_registered);
            })?;
        Ok(Self { commands, thread })
    }

    /// Tells the gateway now that the node is stopping (no new parts), and keeps saying so.
    pub fn drain(&self) {
        let _ = self.commands.send(Command::Drain);
    }

    /// Sends the final draining heartbeat and waits for the thread to end (bounded by the
    /// HTTP timeouts).
    pub fn stop(self) {
        let _ = self.commands.send(Command::Stop);
        if self.thread.join().is_err() {
            tracing::error!("registration thread panicked");
        }
    }
}

/// One HTTPS client per gateway, in the configured order.
struct Client {
    /// `None`: the address cannot be used (logged once at start); posts to it are away.
    https: Vec<Option<HttpsClient>>,
}

impl Client {
    fn new(settings: &RegistrationSettings) -> Self {
        let https = settings
            .gateways
            .iter()
            .map(|gateway| {
                let https = HttpsClient::new(
                    Arc::clone(&settings.tls),
                    gateway,
                    CONNECT_TIMEOUT,
                    REQUEST_TIMEOUT,
                );
                if let Err(e) = &https {
                    tracing::error!(%gateway, error = %e, "unusable gateway address");
                }
                https.ok()
            })
            .collect();
        Self { https }
    }

    /// Posts `report` to `path` on gateway `index` (of `gateways`).
    fn post(
        &self,
        gateways: &GatewayList,
        index: usize,
        path: &str,
        report: &NodeReport,
    ) -> Outcome {
        let Some(https) = self.https.get(index).and_then(Option::as_ref) else {
            return Outcome::Unreachable(format!(
                "unusable gateway address {}",
                gateways.urls()[index]
            ));
        };
        let body = match serde_json::to_vec(report) {
            Ok(b) => b,
            Err(e) => return Outcome::Unreachable(format!("cannot encode the report: {e}")),
        };
        let response = match https.post_json(path, &body) {
            Ok(r) => r,
            Err(e) => return Outcome::Unreachable(e.to_string()),
        };
        let status = response.status;
        if (200..300).contains(&status) {
            // An ack the node cannot read is not a failure: the report was taken.
            let ack = serde_json::from_slice::<ReportAck>(&response.body).ok();
            classify(status, String::new(), ack)
        } else {
            let end = response.body.len().min(MAX_LOGGED_BODY);
            classify(
                status,
                String::from_utf8_lossy(&response.body[..end]).into_owned(),
                None,
            )
        }
    }
}

fn run<R, F>(
    client: &Client,
    settings: &RegistrationSettings,
    commands: mpsc::Receiver<Command>,
    report: R,
    on_registered: F,
) where
    R: Fn(bool) -> NodeReport,
    F: FnOnce(),
{
    let mut on_registered = Some(on_registered);
    let mut gateways = GatewayList::new(settings.gateways.clone());
    let mut phase = Phase::Register;
    let mut link = Link::Starting;
    let mut interval = DEFAULT_HEARTBEAT;
    let mut draining = false;
    let mut gateway_version = MIN_REPORT_VERSION;
    loop {
        let path = match phase {
            Phase::Register => REGISTER_PATH,
            Phase::Heartbeat => HEARTBEAT_PATH,
        };
        let sent = report(draining).for_version(gateway_version);
        let gateway = gateways.current_url().to_owned();
        let outcome = client.post(&gateways, gateways.current(), path, &sent);
        let action = gateways.on_reply(outcome.reply());
        if let Action::Switch {
            from,
            to,
            wait,
            first_pass,
        } = action
        {
            let reason = match &outcome {
                Outcome::Unreachable(error) => error.clone(),
                Outcome::GatewayError(status, body) => format!("{status}: {}", body.trim()),
                other => format!("{other:?}"),
            };
            let (from, to) = (&gateways.urls()[from], &gateways.urls()[to]);
            if first_pass {
                tracing::warn!(%from, %to, %reason, "gateway away; registering with the next one");
                if !wait.is_zero() {
                    tracing::warn!(
                        gateways = ?gateways.urls(),
                        "every gateway is away; trying them in turn with backoff"
                    );
                }
            } else {
                tracing::debug!(%from, %to, %reason, "gateway away; registering with the next one");
            }
            // The next gateway may never have seen this process, and may read other report
            // versions: start over there as with a fresh gateway.
            phase = Phase::Register;
            gateway_version = MIN_REPORT_VERSION;
            link = match outcome {
                Outcome::GatewayError(..) => Link::GatewayError,
                _ => Link::Unreachable,
            };
            if wait_for_command(&commands, wait, &mut draining) {
                break;
            }
            continue;
        }
        let away_wait = match action {
            Action::Retry { wait } => wait,
            _ => Duration::ZERO,
        };
        let (next_link, wait) = match outcome {
            Outcome::Accepted(ack) => {
                if let Some(ack) = ack {
                    interval = Duration::from_millis(ack.heartbeat_interval_ms)
                        .clamp(MIN_HEARTBEAT, MAX_HEARTBEAT);
                    gateway_version = ack.report_version.min(REPORT_VERSION);
                    adopt_cluster_id(settings, ack.cluster_id.as_deref());
                    if ack.scrub_now {
                        (settings.on_scrub_now)();
                    }
                }
                if phase == Phase::Register || link != Link::Registered {
                    tracing::info!(
                        %gateway,
                        heartbeat_ms = interval.as_millis() as u64,
                        "registered with the gateway"
                    );
                }
                phase = Phase::Heartbeat;
                if let Some(f) = on_registered.take() {
                    f();
                }
                (Link::Registered, interval)
            }
            Outcome::NotFound if phase == Phase::Heartbeat => {
                tracing::info!(%gateway, "the gateway does not know this node; registering again");
                phase = Phase::Register;
                (Link::Starting, Duration::ZERO)
            }
            Outcome::NotFound => {
                log_change(link, Link::Refused, || {
                    tracing::error!(
                        url = %format!("{gateway}{path}"),
                        "the gateway has no registration endpoint (404); is --gateway the \
                         sixfold gateway's internal listener (internal_listen)?"
                    )
                });
                (Link::Refused, SLOW_RETRY)
            }
            Outcome::Unauthorized(body) => {
                log_change(link, Link::Unauthorized, || {
                    tracing::error!(
                        cert = %settings.cert_path,
                        %gateway,
                        answer = ?body.trim(),
                        "the gateway refused this node's certificate or node id; retrying \
                         every {}s",
                        SLOW_RETRY.as_secs()
                    )
                });
                (Link::Unauthorized, SLOW_RETRY)
            }
            Outcome::Refused(status, body) if sent.version > MIN_REPORT_VERSION => {
                // A gateway replaced by an older one: fall back to the oldest version at once.
                tracing::info!(
                    status,
                    answer = %body.trim(),
                    version = sent.version,
                    "the gateway refused the report; sending version {MIN_REPORT_VERSION} reports"
                );
                gateway_version = MIN_REPORT_VERSION;
                (link, Duration::ZERO)
            }
            Outcome::Refused(status, body) => {
                log_change(link, Link::Refused, || {
                    tracing::error!(
                        status,
                        %gateway,
                        answer = %body.trim(),
                        "the gateway rejected the node report; retrying every {}s",
                        SLOW_RETRY.as_secs()
                    )
                });
                (Link::Refused, SLOW_RETRY)
            }
            Outcome::Unreachable(error) => {
                log_change(link, Link::Unreachable, || {
                    tracing::warn!(
                        %gateway,
                        %error,
                        "gateway unreachable; retrying with backoff"
                    )
                });
                (Link::Unreachable, away_wait)
            }
            Outcome::GatewayError(status, body) => {
                log_change(link, Link::GatewayError, || {
                    tracing::warn!(
                        status,
                        %gateway,
                        answer = %body.trim(),
                        "the gateway failed to take the node report; retrying with backoff"
                    )
                });
                (Link::GatewayError, away_wait)
            }
        };
        link = next_link;
        if wait_for_command(&commands, wait, &mut draining) {
            break;
        }
    }
    if phase == Phase::Heartbeat {
        let sent = report(true).for_version(gateway_version);
        match client.post(&gateways, gateways.current(), HEARTBEAT_PATH, &sent) {
            Outcome::Accepted(_) => tracing::info!(
                gateway = %gateways.current_url(),
                "sent the final draining heartbeat"
            ),
            other => tracing::warn!(
                gateway = %gateways.current_url(),
                outcome = ?other,
                "final draining heartbeat failed"
            ),
        }
    }
}

/// Waits up to `wait` for a command; true when the thread is to stop.
fn wait_for_command(
    commands: &mpsc::Receiver<Command>,
    wait: Duration,
    draining: &mut bool,
) -> bool {
    match commands.recv_timeout(wait) {
        Err(RecvTimeoutError::Timeout) => false,
        Ok(Command::Drain) => {
            *draining = true;
            false
        }
        Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => true,
    }
}

/// Keeps the cluster id a gateway told, when the node has none yet.
fn adopt_cluster_id(settings: &RegistrationSettings, told: Option<&str>) {
    let Some(told) = told else { return };
    match uuid::Uuid::parse_str(told) {
        Ok(id) => match settings.cluster_id.adopt(id) {
            Ok(true) => {
                tracing::info!(cluster_id = %id, "joined the cluster; its id is kept in the data dir")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(cluster_id = %id, error = %e, "cannot keep the cluster id in the data dir; will try again")
            }
        },
        Err(e) => {
            tracing::warn!(told = ?told, error = %e, "the gateway sent a malformed cluster id")
        }
    }
}

fn log_change(from: Link, to: Link, log: impl FnOnce()) {
    if from != to {
        log();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn statuses_are_classified() {
        let ack = ReportAck {
            heartbeat_interval_ms: 7,
            report_version: 1,
            cluster_id: None,
            scrub_now: false,
        };
        assert_eq!(
            classify(200, String::new(), Some(ack.clone())),
            Outcome::Accepted(Some(ack))
        );
        assert_eq!(
            classify(401, "no".into(), None),
            Outcome::Unauthorized("no".into())
        );
        assert_eq!(
            classify(403, String::new(), None),
            Outcome::Unauthorized(String::new())
        );
        assert_eq!(classify(404, String::new(), None), Outcome::NotFound);
        assert_eq!(
            classify(400, "bad".into(), None),
            Outcome::Refused(400, "bad".into())
        );
        assert_eq!(
            classify(503, String::new(), None),
            Outcome::GatewayError(503, String::new())
        );
    }

    /// One recorded request: path, the client certificate's common name, body.
    type Seen = Arc<Mutex<Vec<(String, String, NodeReport)>>>;

    /// The node's registration TLS config and a fake gateway's internal-listener config, from
    /// one fresh cluster CA.
    fn test_tls() -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
        use sixfold_certs::{ClusterCa, NodeCertRequest, Validity};
        let ca = ClusterCa::generate(Validity::ca_default()).unwrap();
        let node = ca
            .issue_node(
                &NodeCertRequest {
                    node_id: uuid::Uuid::new_v4(),
                    name: "node-t".into(),
                    ips: vec!["127.0.0.1".parse().unwrap()],
                    dns_names: vec![],
                },
                Validity::leaf_default(),
            )
            .unwrap();
        let gateway = ca.issue_gateway(Validity::leaf_default()).unwrap();
        let roots = [ca.cert_der().clone()];
        let client = sixfold_certs::registration_client_config(
            &roots,
            vec![node.cert_der().clone()],
            node.key_der(),
        )
        .unwrap();
        let server = sixfold_certs::internal_server_config(
            &roots,
            vec![gateway.cert_der().clone()],
            gateway.key_der(),
        )
        .unwrap();
        (Arc::new(client), Arc::new(server))
    }

    fn settings(url: String, tls: Arc<rustls::ClientConfig>) -> RegistrationSettings {
        RegistrationSettings {
            gateways: vec![url],
            tls,
            cert_path: "/x/node.pem".into(),
            cluster_id: Arc::new(
                crate::cluster_id::ClusterId::load(
                    &std::env::temp_dir().join("sixfold-no-such-dir"),
                )
                .expect("no cluster id file"),
            ),
            on_scrub_now: Arc::new(|| {}),
        }
    }

    /// A one-request-per-connection HTTPS server (mutual TLS, as the gateway's internal
    /// listener) answering from a script, then 200 forever.
    fn fake_gateway(
        server: Arc<rustls::ServerConfig>,
        script: Vec<(u16, &'static str)>,
    ) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { return };
                let conn = rustls::ServerConnection::new(Arc::clone(&server)).unwrap();
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                let mut line = String::new();
                let mut reader = BufReader::new(&mut stream);
                reader.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                drop(reader);
                let leaf = stream.conn.peer_certificates().unwrap()[0].clone();
                let auth = sixfold_certs::parse_identity(&leaf)
                    .unwrap()
                    .common_name
                    .unwrap_or_default();
                record
                    .lock()
                    .unwrap()
                    .push((path, auth, serde_json::from_slice(&body).unwrap()));
                let (status, text) = script
                    .next()
                    .unwrap_or((200, r#"{"heartbeat_interval_ms":100}"#));
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                stream.write_all(answer.as_bytes()).unwrap();
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        });
        (url, seen)
    }

    fn report(draining: bool) -> NodeReport {
        NodeReport {
            version: 1,
            node_id: "6f1c1d8e-34a9-4b59-9a8b-2f0a1c3d4e5f".into(),
            name: "n".into(),
            shard_addrs: vec!["127.0.0.1:7000".parse().unwrap()],
            capacity: 10,
            used: 1,
            chunk_count: 1,
            in_flight: 0,
            draining,
            read_only: true,
            software: "test".into(),
            cluster_id: None,
            scrub: None,
        }
    }

    fn wait_for(seen: &Seen, n: usize) -> Vec<(String, String, NodeReport)> {
        // Bounded by the test harness; the thread posts every ≤100 ms.
        loop {
            let got = seen.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn retries_registration_through_gateway_errors_and_stops_without_heartbeat() {
        let (client, server) = test_tls();
        let (url, seen) = fake_gateway(
            server,
            vec![
                (503, "{}"),                       // register: gateway not ready
                (403, r#"{"error":"forbidden"}"#), // register: refused (slow retry)
            ],
        );
        // The 403 makes the thread wait SLOW_RETRY; stop it early instead and check what it
        // sent up to there.
        let settings = settings(url, client);
        let (ready_tx, ready_rx) = mpsc::channel();
        let reg =
            Registration::start(settings, report, move || ready_tx.send(()).unwrap()).unwrap();
        let got = wait_for(&seen, 2);
        assert!(
            got.iter()
                .all(|(p, cn, _)| p == REGISTER_PATH && cn == "node-t")
        );
        assert!(
            ready_rx.try_recv().is_err(),
            "ready before any registration"
        );
        reg.stop();
        // Never registered: no final heartbeat.
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn heartbeats_after_registering_and_registers_again_on_404() {
        let (client, server) = test_tls();
        let (url, seen) = fake_gateway(
            server,
            vec![
                (200, r#"{"heartbeat_interval_ms":100}"#), // register
                (404, "{}"),                               // heartbeat: gateway forgot the node
            ],
        );
        let settings = settings(url, client);
        let (ready_tx, ready_rx) = mpsc::channel();
        let reg =
            Registration::start(settings, report, move || ready_tx.send(()).unwrap()).unwrap();
        ready_rx.recv().unwrap();
        let got = wait_for(&seen, 4);
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths[..4],
            [REGISTER_PATH, HEARTBEAT_PATH, REGISTER_PATH, HEARTBEAT_PATH]
        );
        assert!(got.iter().all(|(_, _, r)| !r.draining));
        reg.drain();
        let first_draining = loop {
            let got = wait_for(&seen, 1);
            if let Some(i) = got.iter().position(|(_, _, r)| r.draining) {
                break i;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let before_stop = seen.lock().unwrap().len();
        reg.stop();
        let got = seen.lock().unwrap().clone();
        assert!(got.len() > before_stop, "no final heartbeat");
        assert!(
            got[first_draining..]
                .iter()
                .all(|(p, _, r)| p == HEARTBEAT_PATH && r.draining)
        );
        // Called exactly once: no second message, and the callback is gone with the thread.
        assert_eq!(ready_rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    }

    #[test]
    fn reports_follow_the_version_the_gateway_reads() {
        let (client, server) = test_tls();
        let (url, seen) = fake_gateway(
            server,
            vec![
                // register: this gateway reads version 2
                (200, r#"{"heartbeat_interval_ms":100,"report_version":2}"#),
                // heartbeat: refused, as by an older gateway that took its place
                (400, r#"{"error":"bad_request"}"#),
            ],
        );
        let settings = settings(url, client);
        let reg = Registration::start(settings, report, || {}).unwrap();
        let got = wait_for(&seen, 4);
        reg.stop();
        let sent: Vec<(u32, bool, u64)> = got[..4]
            .iter()
            .map(|(_, _, r)| (r.version, r.read_only, r.used))
            .collect();
        // Version 1 until the gateway says more, version 2 (with the flag) after, version 1
        // again at once after a refusal. In version 1 a read-only node reports itself full.
        assert_eq!(
            sent,
            [(1, false, 10), (2, true, 1), (1, false, 10), (1, false, 10)]
        );
    }

    #[test]
    fn a_scrub_asked_for_in_an_ack_is_started_once() {
        let (client, server) = test_tls();
        let (url, seen) = fake_gateway(
            server,
            vec![
                (200, r#"{"heartbeat_interval_ms":100,"report_version":4}"#),
                (
                    200,
                    r#"{"heartbeat_interval_ms":100,"report_version":4,"scrub_now":true}"#,
                ),
            ],
        );
        let asked = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let count = Arc::clone(&asked);
        let settings = RegistrationSettings {
            on_scrub_now: Arc::new(move || {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
            ..settings(url, client)
        };
        let reg = Registration::start(settings, report, || {}).unwrap();
        wait_for(&seen, 4);
        reg.stop();
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A `https://127.0.0.1:PORT` nothing listens on (bound, then closed).
    fn dead_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", listener.local_addr().unwrap())
    }

    #[test]
    fn an_unreachable_first_gateway_hands_over_to_the_next() {
        let (client, server) = test_tls();
        let (url, seen) = fake_gateway(server, vec![]);
        let settings = RegistrationSettings {
            gateways: vec![dead_url(), url],
            ..settings(String::new(), client)
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let reg =
            Registration::start(settings, report, move || ready_tx.send(()).unwrap()).unwrap();
        ready_rx.recv().unwrap();
        let got = wait_for(&seen, 2);
        reg.stop();
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(paths[..2], [REGISTER_PATH, HEARTBEAT_PATH]);
    }

    #[test]
    fn a_failing_gateway_hands_over_and_the_next_one_gets_a_registration() {
        let (client, server) = test_tls();
        let (a, seen_a) = fake_gateway(
            server.clone(),
            vec![
                (200, r#"{"heartbeat_interval_ms":100}"#), // register
                (503, "{}"),                               // heartbeat: A is failing
            ],
        );
        let (b, seen_b) = fake_gateway(server, vec![]);
        let settings = RegistrationSettings {
            gateways: vec![a, b],
            ..settings(String::new(), client)
        };
        let reg = Registration::start(settings, report, || {}).unwrap();
        let got_b = wait_for(&seen_b, 2);
        reg.stop();
        let paths: Vec<&str> = got_b.iter().map(|(p, _, _)| p.as_str()).collect();
        // B never saw this process before: a registration first, then heartbeats.
        assert_eq!(paths[..2], [REGISTER_PATH, HEARTBEAT_PATH]);
        assert!(paths[1..].iter().all(|p| *p == HEARTBEAT_PATH), "{paths:?}");
        // A saw the registration and the failed heartbeat, and nothing after the move.
        let paths_a: Vec<String> = seen_a.lock().unwrap().iter().map(|r| r.0.clone()).collect();
        assert_eq!(paths_a, [REGISTER_PATH, HEARTBEAT_PATH]);
    }

    #[test]
    fn a_refusing_gateway_is_not_left_for_another() {
        let (client, server) = test_tls();
        let (a, seen_a) = fake_gateway(server.clone(), vec![(403, r#"{"error":"forbidden"}"#)]);
        let (b, seen_b) = fake_gateway(server, vec![]);
        let settings = RegistrationSettings {
            gateways: vec![a, b],
            ..settings(String::new(), client)
        };
        let reg = Registration::start(settings, report, || {}).unwrap();
        wait_for(&seen_a, 1);
        // The 403 makes the thread wait SLOW_RETRY at A; a move would have posted to B at once.
        reg.stop();
        assert_eq!(seen_a.lock().unwrap().len(), 1);
        assert!(seen_b.lock().unwrap().is_empty());
    }
}
