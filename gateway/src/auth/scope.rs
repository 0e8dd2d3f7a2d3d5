//! Scopes, ordered: each includes the ones below it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a key may do. `read`: list, download, meta, HEAD, presign. `write`: read plus upload and
/// delete. `admin`: everything plus `/admin/*`. The order is the inclusion: `Read < Write <
/// Admin`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Whether a key of this scope may do what `needed` is required for.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not `read`, `write` or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (expected read, write or admin)")]
pub struct ScopeParseError(pub String);

impl FromStr for Scope {
    type Err = ScopeParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| ScopeParseError(text.chars().take(32).collect()))
    }
}

/// What requests without credentials may do (config `anonymous`). There is no anonymous admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    #[default]
    None,
    Read,
    Write,
}

impl Anonymous {
    /// The scope an anonymous request gets, if any.
    pub fn scope(self) -> Option<Scope> {
        match self {
            Anonymous::None => None,
            Anonymous::Read => Some(Scope::Read),
            Anonymous::Write => Some(Scope::Write),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered_by_inclusion() {
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
        let allowed = |have: Scope, needed: Scope| have.allows(needed);
        for (have, needed, expected) in [
            (Scope::Read, Scope::Read, true),
            (Scope::Read, Scope::Write, false),
            (Scope::Read, Scope::Admin, false),
            (Scope::Write, Scope::Read, true),
            (Scope::Write, Scope::Write, true),
            (Scope::Write, Scope::Admin, false),
            (Scope::Admin, Scope::Read, true),
            (Scope::Admin, Scope::Write, true),
            (Scope::Admin, Scope::Admin, true),
        ] {
            assert_eq!(allowed(have, needed), expected, "{have} needs {needed}");
        }
    }

    #[test]
    fn scopes_parse_and_print() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            assert_eq!(
                serde_json::to_string(&scope).expect("json"),
                format!("\"{scope}\"")
            );
        }
        assert!("Admin".parse::<Scope>().is_err());
        assert!("".parse::<Scope>().is_err());
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn anonymous_is_never_admin() {
        assert_eq!(Anonymous::default(), Anonymous::None);
        assert_eq!(Anonymous::None.scope(), None);
        assert_eq!(Anonymous::Read.scope(), Some(Scope::Read));
        assert_eq!(Anonymous::Write.scope(), Some(Scope::Write));
    }
}
