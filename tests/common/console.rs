//! The console as the operator tests start it: its tokens, its configuration, and the form
//! token its pages carry.

use postback_relay::config::Config;
use postback_relay::config::operators::Operator;

pub const TOKEN: &str = "console-operator-token-51c2e8";
pub const ALICE: &str = "alice-token-0f9d7b3a5c1e";

/// `config` as the console's: on a free loopback port, `console.token` and alice.
pub fn console_config(mut config: Config, metrics: Option<String>) -> Config {
    config.console.listen = "127.0.0.1:0".parse().unwrap();
    config.console.token = Some(TOKEN.into());
    config.console.operators = vec![Operator {
        name: "alice".into(),
        token: ALICE.into(),
    }];
    config.console.relay_metrics_url = metrics;
    config
}

/// The form token of the console's pages.
pub async fn form_token(http: &reqwest::Client, base: &str) -> String {
    let page = http
        .get(format!("{base}/recover"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    page[at..at + 32].to_owned()
}
