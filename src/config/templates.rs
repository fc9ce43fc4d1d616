//! The templates of `WECHAT_SUBSCRIBE_FILE` (SPEC §9), read and checked at start-up;
//! [`crate::wechat::subscribe`] fills and sends them.
//!
//! The file maps events to templates:
//! `{"order.paid": {"template_id": "TPL", "page": "pages/order?id={order_id}",
//! "data": {"thing1": "{title}", "character_string2": "{out_trade_no}"}}}`.
//! `{name}` placeholders take the notification's fields.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::domain::Kind;

/// One event's template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub template_id: String,
    /// The mini-program page the message opens, with placeholders.
    #[serde(default)]
    pub page: Option<String>,
    /// WeChat's keys (`thing1`, `time2`, …) to values with placeholders.
    pub data: BTreeMap<String, String>,
}

/// The templates by event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    by_event: BTreeMap<String, Template>,
}

impl Templates {
    /// Reads and checks the file; the error names the entry at fault.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let raw: BTreeMap<String, Value> = serde_json::from_slice(text)
            .map_err(|e| format!("not a JSON object of events: {e}"))?;
        let mut by_event = BTreeMap::new();
        for (event, entry) in raw {
            let at = |why: String| format!("entry {event:?}: {why}");
            let kind = Kind::from_event(&event).ok_or_else(|| at("no such event".into()))?;
            if !kind.requires_ack() {
                return Err(at(
                    "a live-only event (no ack, no inbox) never falls back".into()
                ));
            }
            let template: Template =
                serde_json::from_value(entry).map_err(|e| at(e.to_string()))?;
            let id = &template.template_id;
            if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(at(
                    "template_id must be 1 to 128 visible ASCII characters".into()
                ));
            }
            if template.data.is_empty() {
                return Err(at(
                    "data must name at least one of the template's keys".into()
                ));
            }
            for (key, value) in &template.data {
                let split = key.trim_end_matches(|c: char| c.is_ascii_digit());
                if split.is_empty()
                    || split.len() == key.len()
                    || !split.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                {
                    return Err(at(format!(
                        "data key {key:?} is not a WeChat key (like thing1 or time2)"
                    )));
                }
                placeholders(value).map_err(|e| at(format!("data {key:?}: {e}")))?;
            }
            if let Some(page) = &template.page {
                if page.len() > 1024 {
                    return Err(at("page is at most 1024 bytes".into()));
                }
                placeholders(page).map_err(|e| at(format!("page: {e}")))?;
            }
            by_event.insert(event, template);
        }
        Ok(Self { by_event })
    }

    pub fn for_event(&self, event: &str) -> Option<&Template> {
        self.by_event.get(event)
    }

    /// (event, template id) of every entry.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_event
            .iter()
            .map(|(e, t)| (e.as_str(), t.template_id.as_str()))
    }

    /// Every template id, once.
    pub fn template_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .by_event
            .values()
            .map(|t| t.template_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// The placeholder names in `text`; an error for an unclosed or empty `{}`.
fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {text:?}"))?;
        let name = &after[..close];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("{{{name}}} is not a field name"));
        }
        names.push(name);
        rest = &after[close + 1..];
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_are_named() {
        for (text, wanted) in [
            (
                r#"{"order.nope": {"template_id": "T", "data": {"thing1": "x"}}}"#,
                "\"order.nope\": no such event",
            ),
            (
                r#"{"announcement": {"template_id": "T", "data": {"thing1": "x"}}}"#,
                "\"announcement\": a live-only",
            ),
            (
                r#"{"order.paid": {"template_id": "", "data": {"thing1": "x"}}}"#,
                "\"order.paid\": template_id",
            ),
            (
                r#"{"order.paid": {"template_id": "T", "data": {}}}"#,
                "\"order.paid\": data must",
            ),
            (
                r#"{"order.paid": {"template_id": "T", "data": {"Thing": "x"}}}"#,
                "not a WeChat key",
            ),
            (
                r#"{"order.paid": {"template_id": "T", "data": {"thing1": "{title"}}}"#,
                "unclosed",
            ),
            (
                r#"{"order.paid": {"template_id": "T", "data": {"thing1": "{a b}"}}}"#,
                "not a field name",
            ),
            (
                r#"{"order.paid": {"template_id": "T", "data": {"thing1": "x"}, "extra": 1}}"#,
                "unknown field",
            ),
            (r#"[1]"#, "not a JSON object"),
        ] {
            let e = Templates::parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }
}
