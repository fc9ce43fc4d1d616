//! WeChat's servers: mini-program login (`code2Session`) now; WeChat Pay later.

pub mod login;
pub mod pay;

pub use login::{LoginError, WechatLogin};
