//! A member's role in a tenant: one type for the Tenant spec, identity's
//! tokens and API, and the instance's authorisation.
//!
//! The wire form is the variant name (`Viewer`, `Editor`, `Admin`) in the
//! CRD schema, in the `role` claim of tenant tokens and in identity's JSON
//! alike. Variants are declared from least to most privileged, so `Ord`
//! answers "may this role do what that one may" (`role >= Role::Editor`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A member's role in a tenant.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum Role {
    /// Reads flows, executions and logs.
    Viewer,
    /// Also writes and runs flows.
    Editor,
    /// Everything, including the tenant's settings.
    Admin,
}

impl Role {
    /// The role's name as written in the spec and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::Editor => "Editor",
            Role::Admin => "Admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "Viewer" => Ok(Role::Viewer),
            "Editor" => Ok(Role::Editor),
            "Admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `Admin`, `Editor`, `Viewer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl std::fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown role {:?} (expected Admin, Editor or Viewer)",
            self.0
        )
    }
}

impl std::error::Error for UnknownRole {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_by_privilege() {
        for role in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
            assert_eq!(
                serde_json::to_value(role).ok(),
                Some(serde_json::Value::from(role.as_str()))
            );
        }
        assert_eq!(
            "Owner".parse::<Role>(),
            Err(UnknownRole("Owner".to_owned()))
        );
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
    }
}
