//! The answers a load got, one JSON line each (`loadgen soak --answers FILE`), read back
//! for the figures of a fault (`loadgen rig fault-figures`): when each came, from which
//! entry point, with which status. One format, written and read here.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where a request entered the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// `POST /v1/webhooks/wechat-pay/notify`.
    Webhook,
    /// `POST /v1/platform/notifications`.
    Send,
    /// A new socket (`GET /v1/ws`).
    Connect,
    /// `POST /v1/orders`.
    Order,
}

/// The status a socket admitted (its `welcome` came) is logged with.
pub const ADMITTED: u16 = 101;

/// One answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// When it came, in Unix milliseconds (the clock `date +%s%3N` reads).
    pub at_ms: u64,
    pub entry: Entry,
    /// The HTTP status; [`ADMITTED`] for a socket admitted, the status a refusal's close
    /// code stands for (1013: 503); 0 for no answer (a timeout, a reset).
    pub status: u16,
    /// A webhook answered 2xx: the order it paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status == ADMITTED || (200..300).contains(&self.status)
    }
}

/// Writes answers to a file, or nowhere (no `--answers`). The lock is held only for
/// writing one line into the buffer.
pub struct Recorder(Option<Mutex<BufWriter<File>>>);

impl Recorder {
    pub fn create(path: Option<&Path>) -> anyhow::Result<Recorder> {
        let Some(path) = path else {
            return Ok(Recorder(None));
        };
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Recorder(Some(Mutex::new(BufWriter::new(file)))))
    }

    pub fn record(&self, entry: Entry, status: u16, out_trade_no: Option<&str>) {
        let Some(file) = &self.0 else { return };
        let answer = Answer {
            at_ms: now_ms(),
            entry,
            status,
            out_trade_no: out_trade_no.map(str::to_owned),
        };
        let line = serde_json::to_string(&answer).expect("an answer serialises");
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        // A line that cannot be written is lost from the figures, not the load.
        let _ = writeln!(file, "{line}");
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        if let Some(file) = &self.0 {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.flush().context("cannot write the answers file")?;
        }
        Ok(())
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads an answers file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Answer>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}
