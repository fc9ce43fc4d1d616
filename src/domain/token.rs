/// Where a user's access tokens stand, as logouts left them (`users.token_epoch` and
/// `users.tokens_valid_from`): read with the user's row on every request and at socket
/// admission, and compared with a token's claims by [`crate::auth::Claims::revoked_by`].
///
/// Why a count and not a time: a logout on one replica and a login on another would
/// compare two replicas' clocks, and skew between them let older tokens through or
/// refused new ones. The epoch moves on in the database, and a login reads it there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenEpoch {
    /// How many times the user has logged out. A token carries the epoch it was minted
    /// in; one of an earlier epoch is refused.
    pub epoch: u64,
    /// When the user last logged out (unix ms, the database's clock): how tokens minted
    /// by the previous release, which carry no epoch, are judged.
    pub valid_from_ms: Option<u64>,
}

impl TokenEpoch {
    /// The later of two readings of the same user (each part only ever grows).
    pub fn max(self, other: TokenEpoch) -> TokenEpoch {
        TokenEpoch {
            epoch: self.epoch.max(other.epoch),
            valid_from_ms: self.valid_from_ms.max(other.valid_from_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_later_reading_wins_part_by_part() {
        let a = TokenEpoch {
            epoch: 2,
            valid_from_ms: Some(10),
        };
        let b = TokenEpoch {
            epoch: 1,
            valid_from_ms: Some(20),
        };
        assert_eq!(
            a.max(b),
            TokenEpoch {
                epoch: 2,
                valid_from_ms: Some(20)
            }
        );
        assert_eq!(TokenEpoch::default().max(a), a);
    }
}
