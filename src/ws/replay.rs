//! What a socket is sent first, right after `welcome`: the user's inbox.

use crate::hub::{Close, Outgoing, Socket, Work};
use crate::state::AppState;

const TRY_LATER: Close = Close {
    code: 1013,
    reason: "try again later",
};

/// What the user's inbox holds, oldest first, to send right after `welcome` and
/// before anything live. Live notifications that arrive meanwhile wait in the socket's
/// queue and are skipped as copies if the replay already sent them: no gap, and no
/// duplicate on this socket. An inbox that cannot be read closes the socket (1013)
/// before `welcome`: a welcomed socket has always been given its inbox.
pub(super) async fn pending(state: &AppState, socket: &Socket) -> Result<Work, Close> {
    let entries = match state.engine().inbox(socket.user).await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the inbox; the client will reconnect");
            return Err(TRY_LATER);
        }
    };
    let messages = entries
        .into_iter()
        .map(|e| Outgoing {
            frame: e.frame,
            tracked: Some(crate::hub::socket::Tracked {
                id: e.id,
                expires_ms: e.expires_ms,
                redelivery: false,
                replay: true,
            }),
        })
        .collect();
    Ok(Work {
        messages,
        ..Work::default()
    })
}
