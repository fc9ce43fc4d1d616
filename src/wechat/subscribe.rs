//! WeChat subscription messages (订阅消息, SPEC §9): the templates of
//! `WECHAT_SUBSCRIBE_FILE`, filled from a notification, and the two calls to WeChat
//! that send one (`/cgi-bin/token`, `/cgi-bin/message/subscribe/send`).
//!
//! The file maps events to templates:
//! `{"order.paid": {"template_id": "TPL", "page": "pages/order?id={order_id}",
//! "data": {"thing1": "{title}", "character_string2": "{out_trade_no}"}}}`.
//! `{name}` placeholders take the notification's fields. Values are cut to what WeChat
//! takes for the key's type (`thing` 20 characters, `character_string` and `number`
//! 32, `phrase` 5, `name` 10), so a long title does not make WeChat refuse the send.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::WechatConfig;
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

/// `text` with each `{field}` replaced by that field of `fields` (a string as is, a
/// number or boolean as JSON, anything else or a missing field as nothing).
pub fn fill(text: &str, fields: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        match fields.get(&after[..close]) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
            _ => {}
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The most characters WeChat takes for a key of this type (by its name without the
/// digits); `None`: no cut.
fn limit(key: &str) -> Option<usize> {
    match key.trim_end_matches(|c: char| c.is_ascii_digit()) {
        "thing" => Some(20),
        "character_string" | "number" | "letter" | "symbol" => Some(32),
        "phrase" => Some(5),
        "name" => Some(10),
        _ => None,
    }
}

/// The `subscribe/send` body's `data`: `{"key": {"value": "..."}}`, each value filled
/// and cut to its type's limit.
pub fn data(template: &Template, fields: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (key, value) in &template.data {
        let mut v = fill(value, fields);
        if let Some(max) = limit(key) {
            if v.chars().count() > max {
                v = v.chars().take(max).collect();
            }
        }
        out.insert(key.clone(), serde_json::json!({ "value": v }));
    }
    Value::Object(out)
}

/// What WeChat answered a send (or a token request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    /// 40001 / 42001 / 40014: the access token is not (or no longer) valid.
    TokenInvalid,
    /// 43101: the user refused, or has no sends of this template left.
    Refused,
    /// Anything else: an errcode, an HTTP error, a timeout, an unreadable answer.
    Failed(String),
}

/// How long a call to WeChat may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The two calls, for one appid. Cheap to clone.
#[derive(Clone)]
pub struct SubscribeClient {
    http: reqwest::Client,
    config: WechatConfig,
}

impl SubscribeClient {
    pub fn new(config: WechatConfig) -> Self {
        Self {
            http: super::http_client(TIMEOUT),
            config,
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let body = super::answer(request).await?;
        serde_json::from_slice(&body).map_err(|_| "answer is not JSON".to_owned())
    }

    /// A fresh access token and its lifetime: `GET /cgi-bin/token`.
    pub async fn fetch_token(&self) -> Result<(String, Duration), String> {
        let request = self
            .http
            .get(super::endpoint(&self.config.api_base, "/cgi-bin/token"))
            .query(&[
                ("grant_type", "client_credential"),
                ("appid", self.config.appid.as_str()),
                ("secret", self.config.secret.expose_secret()),
            ]);
        let answer = self.call(request).await?;
        match (answer.errcode, answer.access_token, answer.expires_in) {
            (None | Some(0), Some(token), expires_in)
                if !token.is_empty()
                    && token.len() <= 2048
                    && token.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok((token, Duration::from_secs(expires_in.unwrap_or(7200))))
            }
            (Some(code), _, _) if code != 0 => Err(format!("errcode {code}")),
            _ => Err("answer has no usable access_token".into()),
        }
    }

    /// `POST /cgi-bin/message/subscribe/send`.
    pub async fn send(&self, token: &str, body: &Value) -> SendOutcome {
        let request = self
            .http
            .post(super::endpoint(
                &self.config.api_base,
                "/cgi-bin/message/subscribe/send",
            ))
            .query(&[("access_token", token)])
            .json(body);
        match self.call(request).await {
            Ok(answer) => match answer.errcode {
                None | Some(0) => SendOutcome::Sent,
                Some(40001 | 42001 | 40014) => SendOutcome::TokenInvalid,
                Some(43101) => SendOutcome::Refused,
                Some(code) => SendOutcome::Failed(format!("errcode {code}")),
            },
            Err(why) => SendOutcome::Failed(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_file_parses_and_fills() {
        let t = Templates::parse(
            r#"{"order.paid": {"template_id": "TPL_PAID", "page": "pages/order/detail?id={order_id}",
                 "data": {"thing1": "{title}：{content}", "character_string2": "{out_trade_no}", "amount3": "{total_fen}"}}}"#
                .as_bytes(),
        )
        .unwrap();
        let tpl = t.for_event("order.paid").unwrap();
        let fields = json!({"title": "新订单通知", "content": "您有一笔新订单，请尽快处理，谢谢合作", "order_id": 7,
                            "out_trade_no": "LL1", "total_fen": 3600})
        .as_object()
        .unwrap()
        .clone();
        assert_eq!(
            fill(tpl.page.as_ref().unwrap(), &fields),
            "pages/order/detail?id=7"
        );
        let d = data(tpl, &fields);
        assert_eq!(d["thing1"]["value"].as_str().unwrap().chars().count(), 20);
        assert_eq!(d["character_string2"]["value"], "LL1");
        assert_eq!(d["amount3"]["value"], "3600");
        assert_eq!(t.template_ids(), vec!["TPL_PAID".to_owned()]);
    }

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
