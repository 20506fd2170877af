//! Arbitrary bytes through the relay's whole path from a message to what it would send: the
//! content encoding a producer declared (the first byte picks one), decoding, routing to every
//! destination kind (template destinations included: a value in every position, signed), and
//! rendering each request. Nothing may panic; a request that is rendered
//! must go to the destination's own host and be sent as rendered.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postback_relay::config::Config;
use postback_relay::event::{self, Encoding};
use postback_relay::relay::{Plan, plan};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let text = include_str!("../../tests/fixtures/all-kinds.toml");
        Config::from_toml(text, &|_| Some("fuzz-api-key".into())).expect("fixture config")
    })
}

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let encoding = [None, Some("gzip"), Some("deflate"), Some("br"), Some("identity")]
        [usize::from(pick) % 5];
    let Ok(body) = Encoding::named(encoding).and_then(|e| event::inflate(body, e, MAX)) else {
        return;
    };
    let Ok(decoded) = event::decode(&body, MAX) else {
        return;
    };
    let Plan::Send(planned) = plan(&config().destinations, &decoded.event) else {
        return;
    };
    for (_, rendered) in planned {
        if let Ok(request) = rendered {
            let url = url::Url::parse(&request.url).expect("a rendered URL parses");
            assert_eq!(url.as_str(), request.url, "sent as rendered");
            assert!(
                matches!(url.host_str(), Some("a.pwspace.com" | "trackerdomain.com" | "www.publisher-domain.com" | "tracking.affiliate.example" | "hooks.partner.example" | "tracker.example.com")),
                "{}",
                request.url
            );
            let _ = request.shown(&config().secrets);
        }
    }
});
