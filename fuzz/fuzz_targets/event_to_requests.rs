//! Arbitrary bytes through the relay's entry points: parse an event, route it to every
//! destination kind, render each request. Nothing may panic; a request that is rendered must
//! go to the destination's own host.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postback_relay::config::Config;
use postback_relay::{event, partner};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let text = include_str!("../../tests/fixtures/all-kinds.toml");
        Config::from_toml(text, &|_| Some("fuzz-api-key".into())).expect("fixture config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = event::parse(data, 1 << 20) else {
        return;
    };
    for dest in &config().destinations {
        if !dest.matches(&event) {
            continue;
        }
        if let Ok(request) = partner::render(dest, &event) {
            let url = url::Url::parse(&request.url).expect("a rendered URL parses");
            assert!(
                matches!(url.host_str(), Some("a.pwspace.com" | "trackerdomain.com" | "www.publisher-domain.com" | "tracking.affiliate.example")),
                "{}",
                request.url
            );
            let _ = request.redacted();
        }
    }
});
