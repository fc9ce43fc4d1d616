use std::fmt;
use std::str::FromStr;

/// What a user may be. Stored as text in `user_roles.role` (checked by the database),
/// spelled exactly as SPEC §4 and the front ends spell it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Consumer,
    Rider,
    Merchant,
    Platform,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Consumer, Role::Rider, Role::Merchant, Role::Platform];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Rider => "rider",
            Role::Merchant => "merchant",
            Role::Platform => "platform",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected consumer, rider, merchant or platform")]
pub struct RoleParseError(pub String);

impl FromStr for Role {
    type Err = RoleParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RoleParseError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_text() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("admin".parse::<Role>().is_err());
        assert!("Rider".parse::<Role>().is_err());
    }
}
