//! The endpoints of the native files API and the admin API, parsed purely from (method, path),
//! each with the access it needs, in the shape of Garage's S3 router.

use axum::http::Method;

use crate::auth::{AuthPolicy, Scope};

/// Every endpoint the gateway serves on its public port. Path parameters are kept raw; the
/// handlers check them (a bad file id is their `400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /nodes`.
    ListNodes,
    /// `GET /files`.
    ListFiles,
    /// `POST /files`, `POST /upload`.
    Upload,
    /// `GET`/`HEAD /files/{id}`, `GET`/`HEAD /download/{id}`.
    Download { id: String },
    /// `GET /files/{id}/meta`.
    FileMeta { id: String },
    /// `DELETE /files/{id}`.
    DeleteFile { id: String },
    /// `POST /files/{id}/presign`.
    Presign { id: String },
    /// `POST /admin/keys`.
    CreateKey,
    /// `GET /admin/keys`.
    ListKeys,
    /// `DELETE /admin/keys/{id}`.
    RevokeKey { id: String },
    /// `DELETE /admin/nodes/{id}`.
    RemoveNode { id: String },
    /// `PATCH /admin/nodes/{id}`: the operator's state of a node.
    SetNodeState { id: String },
    /// `POST /admin/backup`: a snapshot of the metadata (every key's secret in it).
    Backup,
    /// `POST /admin/recover`: rebuild the metadata from the nodes.
    StartRecovery,
    /// `GET /admin/recover`: the rebuild's progress and report.
    RecoveryStatus,
    /// `POST /admin/scrub`: every node starts a scrub pass now.
    StartScrub,
    /// `GET /admin/scrub`: the nodes' scrub progress.
    ScrubStatus,
    /// `GET /admin/damaged`: files with a part found corrupt or unreadable.
    ListDamaged,
    /// `GET /admin/rebalance`: the rebalance job's progress.
    RebalanceStatus,
    /// `POST /admin/rebalance`, `POST /admin/rebalance/{pause,resume}`, `PATCH
    /// /admin/rebalance`: start, pause, resume, limits.
    ControlRebalance,
    /// `/internal/*`: the nodes' registration and heartbeats, authenticated by the cluster
    /// token (and, later, certificates on their own listener), not by access keys.
    Internal,
    /// Anything else under `/admin/`: no one below admin learns what is there.
    UnknownAdmin,
    /// Any other method and path; the router answers `404`/`405` to whoever may read.
    Unknown,
}

/// What an endpoint needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Open,
    /// Credentials of at least this scope (or anonymous access configured that high).
    Scope(Scope),
    /// Not an access-key matter: the endpoint authenticates its callers itself.
    Internal,
}

impl Endpoint {
    /// Names the endpoint of a request. `HEAD` is `GET` without a body everywhere.
    pub fn parse(method: &Method, path: &str) -> Endpoint {
        let get = *method == Method::GET || *method == Method::HEAD;
        let post = *method == Method::POST;
        let delete = *method == Method::DELETE;
        let patch = *method == Method::PATCH;
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let id = |s: &str| s.to_owned();
        match segments.as_slice() {
            ["internal", ..] => Endpoint::Internal,
            ["health"] if get => Endpoint::Health,
            ["metrics"] if get => Endpoint::Metrics,
            ["nodes"] if get => Endpoint::ListNodes,
            ["files"] if get => Endpoint::ListFiles,
            ["files"] | ["upload"] if post => Endpoint::Upload,
            ["files", file] | ["download", file] if get && !file.is_empty() => {
                Endpoint::Download { id: id(file) }
            }
            ["files", file] if delete && !file.is_empty() => Endpoint::DeleteFile { id: id(file) },
            ["files", file, "meta"] if get && !file.is_empty() => {
                Endpoint::FileMeta { id: id(file) }
            }
            ["files", file, "presign"] if post && !file.is_empty() => {
                Endpoint::Presign { id: id(file) }
            }
            ["admin", "keys"] if post => Endpoint::CreateKey,
            ["admin", "keys"] if get => Endpoint::ListKeys,
            ["admin", "keys", key] if delete && !key.is_empty() => {
                Endpoint::RevokeKey { id: id(key) }
            }
            ["admin", "nodes", node] if delete && !node.is_empty() => {
                Endpoint::RemoveNode { id: id(node) }
            }
            ["admin", "nodes", node] if patch && !node.is_empty() => {
                Endpoint::SetNodeState { id: id(node) }
            }
            ["admin", "backup"] if post => Endpoint::Backup,
            ["admin", "recover"] if post => Endpoint::StartRecovery,
            ["admin", "recover"] if get => Endpoint::RecoveryStatus,
            ["admin", "scrub"] if post => Endpoint::StartScrub,
            ["admin", "scrub"] if get => Endpoint::ScrubStatus,
            ["admin", "damaged"] if get => Endpoint::ListDamaged,
            ["admin", "rebalance"] if get => Endpoint::RebalanceStatus,
            ["admin", "rebalance"] if post || patch => Endpoint::ControlRebalance,
            ["admin", "rebalance", "pause" | "resume"] if post => Endpoint::ControlRebalance,
            ["admin", ..] => Endpoint::UnknownAdmin,
            _ => Endpoint::Unknown,
        }
    }

    /// What the endpoint needs, under the configured policy.
    pub fn access(&self, policy: &AuthPolicy) -> Access {
        match self {
            Endpoint::Health => Access::Open,
            Endpoint::Metrics if !policy.protect_metrics => Access::Open,
            Endpoint::Internal => Access::Internal,
            Endpoint::Metrics
            | Endpoint::ListNodes
            | Endpoint::ListFiles
            | Endpoint::Download { .. }
            | Endpoint::FileMeta { .. }
            | Endpoint::Presign { .. }
            | Endpoint::Unknown => Access::Scope(Scope::Read),
            Endpoint::Upload | Endpoint::DeleteFile { .. } => Access::Scope(Scope::Write),
            Endpoint::CreateKey
            | Endpoint::ListKeys
            | Endpoint::RevokeKey { .. }
            | Endpoint::RemoveNode { .. }
            | Endpoint::SetNodeState { .. }
            | Endpoint::Backup
            | Endpoint::StartRecovery
            | Endpoint::RecoveryStatus
            | Endpoint::StartScrub
            | Endpoint::ScrubStatus
            | Endpoint::ListDamaged
            | Endpoint::RebalanceStatus
            | Endpoint::ControlRebalance
            | Endpoint::UnknownAdmin => Access::Scope(Scope::Admin),
        }
    }

    /// Whether a presigned URL can authorize this endpoint (GET/HEAD of one file).
    pub fn presignable(&self) -> bool {
        matches!(self, Endpoint::Download { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8f6b0a4e-1c1e-4a3b-9d0e-2b7f4f0c9a11";

    fn read() -> Access {
        Access::Scope(Scope::Read)
    }
    fn write() -> Access {
        Access::Scope(Scope::Write)
    }
    fn admin() -> Access {
        Access::Scope(Scope::Admin)
    }

    /// Every route the router serves, with every method, and what it needs. A route added to
    /// the router without a line here parses as `Unknown` and fails this test's sibling below.
    #[test]
    fn the_table() {
        let id = || ID.to_owned();
        let policy = AuthPolicy::default();
        let rows: Vec<(Method, String, Endpoint, Access)> = vec![
            (
                Method::GET,
                "/health".into(),
                Endpoint::Health,
                Access::Open,
            ),
            (
                Method::HEAD,
                "/health".into(),
                Endpoint::Health,
                Access::Open,
            ),
            (
                Method::GET,
                "/metrics".into(),
                Endpoint::Metrics,
                Access::Open,
            ),
            (Method::GET, "/nodes".into(), Endpoint::ListNodes, read()),
            (Method::GET, "/files".into(), Endpoint::ListFiles, read()),
            (Method::HEAD, "/files".into(), Endpoint::ListFiles, read()),
            (Method::POST, "/files".into(), Endpoint::Upload, write()),
            (Method::POST, "/upload".into(), Endpoint::Upload, write()),
            (
                Method::GET,
                format!("/files/{ID}"),
                Endpoint::Download { id: id() },
                read(),
            ),
            (
                Method::HEAD,
                format!("/files/{ID}"),
                Endpoint::Download { id: id() },
                read(),
            ),
            (
                Method::GET,
                format!("/download/{ID}"),
                Endpoint::Download { id: id() },
                read(),
            ),
            (
                Method::HEAD,
                format!("/download/{ID}"),
                Endpoint::Download { id: id() },
                read(),
            ),
            (
                Method::DELETE,
                format!("/files/{ID}"),
                Endpoint::DeleteFile { id: id() },
                write(),
            ),
            (
                Method::GET,
                format!("/files/{ID}/meta"),
                Endpoint::FileMeta { id: id() },
                read(),
            ),
            (
                Method::POST,
                format!("/files/{ID}/presign"),
                Endpoint::Presign { id: id() },
                read(),
            ),
            (
                Method::POST,
                "/admin/keys".into(),
                Endpoint::CreateKey,
                admin(),
            ),
            (
                Method::GET,
                "/admin/keys".into(),
                Endpoint::ListKeys,
                admin(),
            ),
            (
                Method::DELETE,
                "/admin/keys/SFAAAAAAAAAAAAAAAAAA".into(),
                Endpoint::RevokeKey {
                    id: "SFAAAAAAAAAAAAAAAAAA".into(),
                },
                admin(),
            ),
            (
                Method::DELETE,
                format!("/admin/nodes/{ID}"),
                Endpoint::RemoveNode { id: id() },
                admin(),
            ),
            (
                Method::POST,
                "/admin/backup".into(),
                Endpoint::Backup,
                admin(),
            ),
            (
                Method::GET,
                "/admin/backup".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
            (
                Method::PATCH,
                format!("/admin/nodes/{ID}"),
                Endpoint::SetNodeState { id: id() },
                admin(),
            ),
            (
                Method::POST,
                "/admin/recover".into(),
                Endpoint::StartRecovery,
                admin(),
            ),
            (
                Method::GET,
                "/admin/recover".into(),
                Endpoint::RecoveryStatus,
                admin(),
            ),
            (
                Method::POST,
                "/admin/scrub".into(),
                Endpoint::StartScrub,
                admin(),
            ),
            (
                Method::GET,
                "/admin/scrub".into(),
                Endpoint::ScrubStatus,
                admin(),
            ),
            (
                Method::GET,
                "/admin/damaged".into(),
                Endpoint::ListDamaged,
                admin(),
            ),
            (
                Method::POST,
                "/admin/damaged".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
            (
                Method::POST,
                "/internal/nodes/register".into(),
                Endpoint::Internal,
                Access::Internal,
            ),
            (
                Method::POST,
                "/internal/nodes/heartbeat".into(),
                Endpoint::Internal,
                Access::Internal,
            ),
            // Unknown methods and paths: the router's 404/405, for readers only.
            (Method::POST, "/health".into(), Endpoint::Unknown, read()),
            (Method::PUT, "/files".into(), Endpoint::Unknown, read()),
            (
                Method::PUT,
                format!("/files/{ID}"),
                Endpoint::Unknown,
                read(),
            ),
            (
                Method::POST,
                format!("/files/{ID}"),
                Endpoint::Unknown,
                read(),
            ),
            (Method::DELETE, "/files".into(), Endpoint::Unknown, read()),
            (
                Method::DELETE,
                format!("/download/{ID}"),
                Endpoint::Unknown,
                read(),
            ),
            (
                Method::GET,
                format!("/files/{ID}/presign"),
                Endpoint::Unknown,
                read(),
            ),
            (
                Method::POST,
                format!("/files/{ID}/meta"),
                Endpoint::Unknown,
                read(),
            ),
            (Method::GET, "/files/".into(), Endpoint::Unknown, read()),
            (
                Method::GET,
                "/files//meta".into(),
                Endpoint::Unknown,
                read(),
            ),
            (
                Method::GET,
                format!("/files/{ID}/meta/x"),
                Endpoint::Unknown,
                read(),
            ),
            (Method::GET, "/".into(), Endpoint::Unknown, read()),
            (Method::GET, "".into(), Endpoint::Unknown, read()),
            (Method::GET, "/nope".into(), Endpoint::Unknown, read()),
            (Method::GET, "/health/".into(), Endpoint::Unknown, read()),
            (Method::GET, "//files".into(), Endpoint::Unknown, read()),
            // Nothing under /admin is less than admin, whatever the method.
            (
                Method::PUT,
                "/admin/keys".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
            (
                Method::GET,
                "/admin/keys/SFAAAAAAAAAAAAAAAAAA".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
            (
                Method::DELETE,
                "/admin/keys".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
            (
                Method::DELETE,
                "/admin/keys/".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
            (
                Method::GET,
                "/admin/nodes".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
            (
                Method::POST,
                "/admin/rebalance".into(),
                Endpoint::ControlRebalance,
                admin(),
            ),
            (
                Method::GET,
                "/admin/rebalance".into(),
                Endpoint::RebalanceStatus,
                admin(),
            ),
            (
                Method::POST,
                "/admin/rebalance/pause".into(),
                Endpoint::ControlRebalance,
                admin(),
            ),
            (
                Method::PATCH,
                "/admin/rebalance".into(),
                Endpoint::ControlRebalance,
                admin(),
            ),
            (
                Method::POST,
                "/admin/rebalance/go".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
            (
                Method::GET,
                "/admin".into(),
                Endpoint::UnknownAdmin,
                admin(),
            ),
        ];
        for (method, path, endpoint, access) in rows {
            let parsed = Endpoint::parse(&method, &path);
            assert_eq!(parsed, endpoint, "{method} {path}");
            assert_eq!(parsed.access(&policy), access, "{method} {path}");
            assert_eq!(
                parsed.presignable(),
                matches!(parsed, Endpoint::Download { .. }),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn policy_moves_only_metrics() {
        let protected = AuthPolicy {
            protect_metrics: true,
            ..AuthPolicy::default()
        };
        assert_eq!(Endpoint::Metrics.access(&protected), read());
        assert_eq!(Endpoint::Health.access(&protected), Access::Open);
        assert_eq!(Endpoint::Internal.access(&protected), Access::Internal);
        assert_eq!(Endpoint::Upload.access(&protected), write());
    }

    /// Exhaustively over methods and the shapes of paths: only the listed endpoints are open,
    /// and only /internal escapes access keys.
    #[test]
    fn nothing_else_is_open() {
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ];
        let firsts = [
            "", "files", "upload", "download", "admin", "health", "metrics", "nodes", "internal",
            "x",
        ];
        let seconds = ["", "keys", "nodes", ID, "x"];
        let thirds = ["", "meta", "presign", ID, "x"];
        let policy = AuthPolicy::default();
        for method in &methods {
            for a in firsts {
                for b in seconds {
                    for c in thirds {
                        for path in [
                            format!("/{a}"),
                            format!("/{a}/{b}"),
                            format!("/{a}/{b}/{c}"),
                        ] {
                            let endpoint = Endpoint::parse(method, &path);
                            match endpoint.access(&policy) {
                                Access::Open => assert!(
                                    matches!(endpoint, Endpoint::Health | Endpoint::Metrics),
                                    "{method} {path}"
                                ),
                                Access::Internal => {
                                    assert!(path.starts_with("/internal"), "{method} {path}")
                                }
                                Access::Scope(scope) => {
                                    if path.starts_with("/admin") {
                                        assert_eq!(scope, Scope::Admin, "{method} {path}");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
