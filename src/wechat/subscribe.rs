//! WeChat subscription messages (订阅消息, SPEC §9): a template of
//! `WECHAT_SUBSCRIBE_FILE` ([`crate::config::templates`]) filled from a notification,
//! and the two calls to WeChat that send one (`/cgi-bin/token`,
//! `/cgi-bin/message/subscribe/send`). Values are cut to what WeChat takes for the key's
//! type (`thing` 20 characters, `character_string` and `number` 32, `phrase` 5, `name`
//! 10), so a long title does not make WeChat refuse the send.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::templates::Template;
use crate::config::WechatConfig;

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
    use crate::config::templates::Templates;
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
}
